#!/usr/bin/env bash
# Prepare this machine to run lab nodes: host packages, a project-owned
# containers.conf (CONTAINERS_CONF, /etc/containers is never edited) and the
# lab SSH key. Idempotent; prints nothing to do when everything is in place.
set -euo pipefail
# shellcheck source=tests/lab/env.sh
source "$(dirname "$0")/env.sh"

packages=(podman runc crun netavark aardvark-dns fuse-overlayfs slirp4netns uidmap
  catatonit iptables nftables debootstrap wireguard-tools wireguard-go iputils-ping
  openssh-client shellcheck wrk gcc libc6-dev
  dpkg-dev python3-apt) # the nvidia role's test node: a stand-in apt repository, the apt module
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

mkdir -p "$CHUTES_LAB_DIR"
chmod 0700 "$CHUTES_LAB_DIR"
# Rootful podman's default ulimits exceed this machine's hard limits, and crun
# refuses hybrid cgroups here: derive the ulimits, select runc (docs/testing.md §5).
nofile="$(ulimit -Hn)"
nproc="$(ulimit -Hu)"
[[ "$nproc" == unlimited || "$nproc" -gt 32768 ]] && nproc=32768
[[ "$nofile" == unlimited || "$nofile" -gt 1048576 ]] && nofile=1048576
conf="$(cat <<CONF
# Managed by chutes.miner tests/lab/setup-host.sh; selected with CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
default_sysctls = ["net.ipv4.ping_group_range=0 0"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"
CONF
)"
if [[ ! -f "$CONTAINERS_CONF" ]] || [[ "$(cat "$CONTAINERS_CONF")" != "$conf" ]]; then
  printf '%s\n' "$conf" >"$CONTAINERS_CONF"
fi
# Every root process of every container shares this kernel's inotify instance limit
# (128 by default): systemd, containerd, kubelet and kube-proxy in each lab node use
# several, and kube-proxy dies with "too many open files" when they run out
# (tests/lab/README.md, "Kubernetes nodes"). Raise the limits, never lower them.
for kv in fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=524288; do
  if (($(sysctl -n "${kv%=*}") < ${kv#*=})); then
    echo "setup-host: sysctl $kv"
    sysctl -q -w "$kv"
  fi
done
if [[ ! -f "$CHUTES_LAB_KEY" ]]; then
  ssh-keygen -q -t ed25519 -N '' -C chutes-miner-lab -f "$CHUTES_LAB_KEY"
fi
