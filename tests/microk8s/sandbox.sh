#!/usr/bin/env bash
# Run a command with test "nodes" that are copy-on-write roots of this machine, so that a role
# can run for real (connection community.general.chroot) without touching the machine.
# Run it through `unshare --mount --net --propagation private` (tests/microk8s/test_role.py):
# every mount and address below disappears with that namespace.
#
# Usage: sandbox.sh WORK PYTHON NODE=IP... -- COMMAND...
#   WORK/upper/NODE  each node's writes (kept between runs: the overlay's upper layer)
#   WORK/roots/NODE  the node's root while COMMAND runs
#   WORK/cluster     shared by every node at /var/lib/standin-cluster (the stand-in cluster)
#   WORK/bundle      served on http://127.0.0.1:8717/ while COMMAND runs
# Each root gets the stand-in snap (/usr/bin/snap) and microk8s (installed by the stand-in
# snap) from tests/microk8s/standins, run by PYTHON; each IP is added to lo, so the nodes see
# their node addresses as their own (they share one network namespace).
set -euo pipefail
work=$1 python=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
nodes=()
while [[ $1 != -- ]]; do
  nodes+=("$1")
  shift
done
shift

ip link set lo up
mkdir -p "$work/cluster" "$work/bundle"
for spec in "${nodes[@]}"; do
  node=${spec%%=*} addr=${spec#*=}
  ip addr add "$addr/32" dev lo
  up=$work/upper/$node ovl=$work/work/$node root=$work/roots/$node
  mkdir -p "$up" "$ovl" "$root"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$up,workdir=$ovl" "$root"
  for fs in proc dev sys; do mount --rbind "/$fs" "$root/$fs"; done
  # /var/lib/snapd/snap: the directory the snapd package ships (the stand-in replaces snapd).
  mkdir -p "$root/var/lib/standin-cluster" "$root/usr/local/share/standin" "$root/var/lib/snapd/snap"
  mount --bind "$work/cluster" "$root/var/lib/standin-cluster"
  sed "1s|.*|#!$python|" "$here/standins/snap" >"$root/usr/bin/snap"
  sed "1s|.*|#!$python|" "$here/standins/microk8s" >"$root/usr/local/share/standin/microk8s"
  chmod 0755 "$root/usr/bin/snap" "$root/usr/local/share/standin/microk8s"
done
"$python" -m http.server --bind 127.0.0.1 --directory "$work/bundle" 8717 >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 50); do
  "$python" -c 'import socket; socket.create_connection(("127.0.0.1", 8717), 1)' 2>/dev/null && break
  sleep 0.1
done
"$@"
