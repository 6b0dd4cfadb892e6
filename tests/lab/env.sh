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
unset _lab_root
