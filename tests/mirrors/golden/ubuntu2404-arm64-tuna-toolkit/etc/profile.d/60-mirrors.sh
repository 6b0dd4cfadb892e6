# managed-by: chutes.miner.mirrors: mirror settings for login shells.
export HF_ENDPOINT="https://hf-mirror.com"
export HF_HUB_DISABLE_XET="1"
export PIP_INDEX_URL="https://pypi.tuna.tsinghua.edu.cn/simple"
export UV_DEFAULT_INDEX="https://pypi.tuna.tsinghua.edu.cn/simple"
