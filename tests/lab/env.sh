# shellcheck shell=bash
# Source me: the environment every lab and test command runs in.
# Podman reads only the project-owned containers.conf (never /etc/containers),
# Ansible finds the in-tree collection, and the lab SSH key has a fixed home.
_lab_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CHUTES_REPO="${_lab_root}"
export CHUTES_LAB_DIR="${CHUTES_LAB_DIR:-/tmp/chutes-miner-lab}"
export CONTAINERS_CONF="${CHUTES_LAB_DIR}/containers.conf"
export CHUTES_LAB_KEY="${CHUTES_LAB_DIR}/id_ed25519"
export CHUTES_LAB_IMAGE="${CHUTES_LAB_IMAGE:-localhost/chutes-miner-lab:bookworm}"
export ANSIBLE_COLLECTIONS_PATH="${_lab_root}/collections:${HOME}/.ansible/collections"
export ANSIBLE_CONFIG="${_lab_root}/ansible.cfg"
export PATH="${_lab_root}/.venv/bin:${PATH}"
# The lab's Kubernetes binaries (tests/lab/k8s/build.sh; built by `make k8s-bin`).
if [[ -z "${CHUTES_K8S_DIR:-}" ]] && command -v go >/dev/null; then
  CHUTES_K8S_DIR="$("${_lab_root}/tests/lab/k8s/build.sh" --print-dir)"
  export CHUTES_K8S_DIR
fi
unset _lab_root
