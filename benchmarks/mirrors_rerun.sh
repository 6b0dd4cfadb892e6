#!/usr/bin/env bash
# No-change rerun of the mirrors play (molecule/mirrors/converge.yml, the lab custom
# profile) on 1 and on 3 lab nodes. Starts a lab mirror host and 3 nodes (mrb-*) on their
# own podman network, prepares them as molecule/mirrors_shared/prepare.yml does, converges,
# then times N reruns that reuse the recorded choice (each must report changed=0) against N
# runs of the same play without the role (facts + the same pre-task), and prints medians.
# "Role adds" = rerun median - baseline median; per host = that / nodes (the hosts run in
# parallel, forks=20). Target: the role adds < 3 s per host. Cleans up on exit.
# Usage: benchmarks/mirrors_rerun.sh [N]   (default N=5; take the heavy lock, quiet machine)
set -euo pipefail
# shellcheck source=tests/lab/env.sh
source "$(dirname "$0")/../tests/lab/env.sh"
# shellcheck source=benchmarks/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$CHUTES_REPO"
runs="${1:-5}"
net=mrb-bench
mirror=mrb-mirror
nodes=(mrb-1 mrb-2 mrb-3)
work="$(mktemp -d "${CHUTES_LAB_DIR}/mrb.XXXXXX")"
mirror_image="${CHUTES_LAB_MIRROR_IMAGE:-localhost/chutes-miner-lab-mirror:bookworm}"
export ANSIBLE_NOCOLOR=1 ANSIBLE_INJECT_FACT_VARS=False MOLECULE_PROJECT_DIRECTORY="$CHUTES_REPO"

cleanup() {
  for n in "$mirror" "${nodes[@]}"; do podman rm -f -t 2 "$n" >/dev/null 2>&1 || true; done
  podman network rm -f "$net" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

podman network exists "$net" || podman network create "$net" >/dev/null
start() { # name image
  podman run -d --name "$1" --hostname "$1" --network "$net" --privileged --systemd always \
    -v "$CHUTES_LAB_DIR/id_ed25519.pub:/root/.ssh/authorized_keys:ro" \
    --label chutes-miner-lab=benchmark "$2" >/dev/null
}
start "$mirror" "$mirror_image"
for n in "${nodes[@]}"; do start "$n" "$CHUTES_LAB_IMAGE"; done
declare -A ip
for n in "$mirror" "${nodes[@]}"; do
  ip[$n]="$(node_ip "$n" "$net")"
  wait_ssh "${ip[$n]}"
done

inventory() { # $1 = node count
  echo "all:"
  echo "  vars: {ansible_user: root, ansible_ssh_private_key_file: $CHUTES_LAB_KEY}"
  echo "  children:"
  echo "    lab_mirror:"
  echo "      hosts:"
  echo "        $mirror: {ansible_host: ${ip[$mirror]}}"
  echo "    nodes:"
  echo "      hosts:"
  for n in "${nodes[@]:0:$1}"; do echo "        $n: {ansible_host: ${ip[$n]}}"; done
}

cat >"$work/baseline.yml" <<'EOF'
---
# The converge play without the role: what any play on these hosts costs anyway.
- name: Baseline
  hosts: nodes
  gather_facts: true
  vars_files:
    - MIRRORS_SHARED/group_vars/lab.yml
  tasks:
    - name: Look up the lab mirror's address
      ansible.builtin.command: getent ahostsv4 {{ __lab_mirror }}
      changed_when: false
EOF
sed -i "s|MIRRORS_SHARED|$CHUTES_REPO/molecule/mirrors_shared|" "$work/baseline.yml"

inventory 3 >"$work/inventory-3.yml"
ansible-playbook -i "$work/inventory-3.yml" molecule/mirrors_shared/prepare.yml >"$work/prepare.log" 2>&1 ||
  { tail -40 "$work/prepare.log" >&2; echo "mirrors_rerun: prepare failed" >&2; exit 1; }

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

timed() { # inventory playbook log -> seconds; fails on changed>0
  local start end
  start=$(date +%s.%N)
  ansible-playbook -i "$1" "$2" >"$3" 2>&1 || { tail -40 "$3" >&2; return 1; }
  end=$(date +%s.%N)
  if grep -E 'changed=[1-9]' "$3" >&2; then echo "mirrors_rerun: $2 changed something" >&2; return 1; fi
  echo "$end - $start" | bc -l
}

measure() { # $1 = node count; prints "rerun_median baseline_median"
  local count="$1" inv="$work/inventory-$1.yml" log="$work/run-$1.log" i
  inventory "$count" >"$inv"
  ansible-playbook -i "$inv" molecule/mirrors/converge.yml >"$log" 2>&1 ||
    { tail -40 "$log" >&2; echo "mirrors_rerun: converge on $count nodes failed" >&2; return 1; }
  for i in $(seq 1 "$runs"); do
    timed "$inv" molecule/mirrors/converge.yml "$log" >>"$work/rerun-$count"
    timed "$inv" "$work/baseline.yml" "$log" >>"$work/base-$count"
    printf '  %s node(s), run %s: rerun %.2f s, baseline %.2f s\n' "$count" "$i" \
      "$(tail -1 "$work/rerun-$count")" "$(tail -1 "$work/base-$count")" >&2
  done
  echo "$(median <"$work/rerun-$count") $(median <"$work/base-$count")"
}

declare -A rerun base
for c in 1 3; do read -r "rerun[$c]" "base[$c]" <<<"$(measure "$c")"; done
printf 'mirrors no-change rerun, median of %d (load %s):\n' "$runs" "$(cut -d' ' -f1-3 /proc/loadavg)"
for c in 1 3; do
  added="$(echo "${rerun[$c]} - ${base[$c]}" | bc -l)"
  printf '  %d node(s): play %.2f s, baseline %.2f s, role adds %.2f s = %.2f s per host (target < 3)\n' \
    "$c" "${rerun[$c]}" "${base[$c]}" "$added" "$(echo "$added / $c" | bc -l)"
done
