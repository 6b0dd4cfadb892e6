#!/usr/bin/env bash
# Run a command with test "nodes" that are copy-on-write roots of this machine, so that a role
# can run for real (connection community.general.chroot) without changing the machine.
# Run it through `unshare --mount --net --propagation private` (tests/sandbox/__init__.py):
# every mount and address below disappears with that namespace, and the namespace has no
# network but its loopback.
#
# Usage: run.sh WORK NODE=IP... -- COMMAND...
#   WORK/upper/NODE     each node's writes (kept between runs: the overlay's upper layer)
#   WORK/roots/NODE     the node's root while COMMAND runs
#   WORK/setup/all/     copied into every root before COMMAND (stand-in commands, files)
#   WORK/setup/NODE/    copied into that node's root
#   WORK/setup/prepare  if present, run as `prepare ROOT NODE` for each node after the copies
#   WORK/shared         mounted in every root at /var/lib/standin-shared
#   WORK/www            served on http://127.0.0.1:8717/ while COMMAND runs
# Each IP is added to lo, so every node sees its address as its own (one network namespace).
set -euo pipefail
work=$1
shift
nodes=()
while [[ $1 != -- ]]; do
  nodes+=("$1")
  shift
done
shift

ip link set lo up
mkdir -p "$work/shared" "$work/www"
for spec in "${nodes[@]}"; do
  node=${spec%%=*} addr=${spec#*=}
  ip addr add "$addr/32" dev lo
  up=$work/upper/$node ovl=$work/work/$node root=$work/roots/$node
  mkdir -p "$up" "$ovl" "$root"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$up,workdir=$ovl" "$root"
  for fs in proc dev sys; do mount --rbind "/$fs" "$root/$fs"; done
  mkdir -p "$root/var/lib/standin-shared"
  mount --bind "$work/shared" "$root/var/lib/standin-shared"
  for tree in all "$node"; do
    if [[ -d $work/setup/$tree ]]; then cp -a "$work/setup/$tree/." "$root/"; fi
  done
  if [[ -x $work/setup/prepare ]]; then "$work/setup/prepare" "$root" "$node"; fi
done
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" 8717 >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 50); do
  python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8717), 1)' 2>/dev/null && break
  sleep 0.1
done
"$@"
