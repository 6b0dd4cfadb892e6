# managed-by: chutes.miner.mirrors: mirror settings for login shells.
export PIP_INDEX_URL="http://lab-mirror:8081/simple/"
export PIP_TRUSTED_HOST="lab-mirror"
export UV_DEFAULT_INDEX="http://lab-mirror:8081/simple/"
