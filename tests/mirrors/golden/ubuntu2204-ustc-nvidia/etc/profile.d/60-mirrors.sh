# managed-by: chutes.miner.mirrors: mirror settings for login shells.
export HF_ENDPOINT="https://hf-mirror.com"
export HF_HUB_DISABLE_XET="1"
export PIP_INDEX_URL="https://mirrors.ustc.edu.cn/pypi/simple"
export UV_DEFAULT_INDEX="https://mirrors.ustc.edu.cn/pypi/simple"
