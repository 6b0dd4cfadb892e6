#!/usr/bin/env bash
# No-change rerun of playbooks/wireguard.yml on 3 and on 6 lab nodes.
# Starts 9 lab containers on their own podman network and joins them into two separate
# WireGuard networks, wgb-1..3 and wgb-4..9, converges both, then times N no-change reruns
# of each (each must report changed=0), alternating between the two so that load from
# elsewhere on a shared machine hits both sizes alike. Prints the medians and their ratio
# (target: 6-node / 3-node <= 1.3). For scale it also times the floor on the same nodes: one
# no-op Python module task (`ansible all -m command`), which no play with a module can beat.
# Cleans up on exit.
# Usage: benchmarks/wireguard_rerun.sh [N]   (default N=5; RATIO_MAX=1.3 fails above it;
#        PYTHON=/usr/bin/python3 sets ansible_python_interpreter instead of discovering it)
set -euo pipefail
# shellcheck source=tests/lab/env.sh
source "$(dirname "$0")/../tests/lab/env.sh"
# shellcheck source=benchmarks/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$CHUTES_REPO"
runs="${1:-5}"
ratio_max="${RATIO_MAX:-1.3}"
net=wgb-bench
work="$(mktemp -d "${CHUTES_LAB_DIR}/wgb.XXXXXX")"
nodes=(wgb-1 wgb-2 wgb-3 wgb-4 wgb-5 wgb-6 wgb-7 wgb-8 wgb-9)
declare -A members=([3]="wgb-1 wgb-2 wgb-3" [6]="wgb-4 wgb-5 wgb-6 wgb-7 wgb-8 wgb-9")
export ANSIBLE_NOCOLOR=1

cleanup() {
  for n in "${nodes[@]}"; do podman rm -f -t 2 "$n" >/dev/null 2>&1 || true; done
  podman network rm -f "$net" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

podman network exists "$net" || podman network create "$net" >/dev/null
for n in "${nodes[@]}"; do
  podman run -d --name "$n" --hostname "$n" --network "$net" --privileged --systemd always \
    -v "$CHUTES_LAB_DIR/id_ed25519.pub:/root/.ssh/authorized_keys:ro" \
    --label chutes-miner-lab=benchmark "$CHUTES_LAB_IMAGE" >/dev/null
done
declare -A ip
for n in "${nodes[@]}"; do
  ip[$n]="$(node_ip "$n" "$net")"
  wait_ssh "${ip[$n]}"
done

# The lab image ships without apt lists (as in molecule/shared/prepare.yml).
for n in "${nodes[@]}"; do podman exec "$n" apt-get update -qq >/dev/null & done
wait

inventory() { # $1 = node count (3 or 6)
  local i=0 n
  echo "all:"
  echo "  vars: {ansible_user: root, ansible_ssh_private_key_file: $CHUTES_LAB_KEY, wireguard_topology: mesh, wireguard_userspace: true${PYTHON:+, ansible_python_interpreter: $PYTHON}}"
  echo "  children:"
  for n in ${members[$1]}; do
    i=$((i + 1))
    if ((i == 1)); then echo "    chutes_primary:"; echo "      hosts:"; fi
    if ((i == 2)); then echo "    chutes_workers:"; echo "      hosts:"; fi
    echo "        $n: {ansible_host: ${ip[$n]}, chutes_external_ip: ${ip[$n]}, wireguard_address: 192.168.0.$i}"
  done
}

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

timed() { # $1 = file to append the seconds to; the rest is the command
  local out="$1" start end
  shift
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l >>"$out"
}

rerun() { # $1 = node count; one timed no-change rerun
  local log="$work/run-$1.log"
  timed "$work/times-$1" ansible-playbook -i "$work/inventory-$1.yml" playbooks/wireguard.yml >"$log" 2>&1 ||
    { tail -40 "$log" >&2; return 1; }
  if grep -E 'changed=[1-9]' "$log" >&2; then echo "wireguard_rerun: a rerun on $1 nodes changed something" >&2; return 1; fi
  echo "  $1 nodes: $(tail -1 "$work/times-$1") s" >&2
}

for count in 3 6; do
  inventory "$count" >"$work/inventory-$count.yml"
  ansible-playbook -i "$work/inventory-$count.yml" playbooks/wireguard.yml >"$work/converge-$count.log" 2>&1 ||
    { tail -40 "$work/converge-$count.log" >&2; echo "wireguard_rerun: converge on $count nodes failed" >&2; exit 1; }
done
# Warm-up (SSH connections, caches), not counted.
rerun 3
rerun 6
rm -f "$work/times-3" "$work/times-6"
for _ in $(seq 1 "$runs"); do
  rerun 3
  rerun 6
  for count in 3 6; do
    timed "$work/floor-$count" ansible all -i "$work/inventory-$count.yml" -m ansible.builtin.command -a true >/dev/null 2>&1
  done
done

m3="$(median <"$work/times-3")" m6="$(median <"$work/times-6")"
f3="$(median <"$work/floor-3")" f6="$(median <"$work/floor-6")"
ratio="$(echo "$m6 / $m3" | bc -l)"
printf 'wireguard no-change rerun, median of %d: 3 nodes %.2f s, 6 nodes %.2f s, ratio %.2f (target <= %s), %.2f s per added node\n' \
  "$runs" "$m3" "$m6" "$ratio" "$ratio_max" "$(echo "($m6 - $m3) / 3" | bc -l)"
printf 'floor, one no-op module task: 3 nodes %.2f s, 6 nodes %.2f s, ratio %.2f\n' \
  "$f3" "$f6" "$(echo "$f6 / $f3" | bc -l)"
(($(echo "$ratio <= $ratio_max" | bc -l)))
