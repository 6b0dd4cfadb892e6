#!/usr/bin/env bash
# Run Molecule scenarios as separate processes, MOLECULE_JOBS at a time (default 2),
# each with its own log, and print one line per scenario with its wall time.
# Usage: tests/run-molecule.sh [scenario ...]   (default: every molecule/*/molecule.yml)
set -uo pipefail
# shellcheck source=tests/lab/env.sh
source "$(dirname "$0")/lab/env.sh"
cd "$CHUTES_REPO" || exit 1
export NO_COLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0
jobs="${MOLECULE_JOBS:-2}"
limit="${MOLECULE_TIMEOUT:-2400}"
logdir="$CHUTES_LAB_DIR/molecule"
mkdir -p "$logdir"

if (($#)); then
  scenarios=("$@")
else
  mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' |
    xargs -r -n1 basename | sort)
fi

run_one() {
  local s="$1" start end rc
  start=$(date +%s)
  timeout --kill-after=30 "$limit" molecule test -s "$s" >"$logdir/$s.log" 2>&1
  rc=$?
  end=$(date +%s)
  printf '%s %s %s\n' "$s" "$rc" "$((end - start))" >"$logdir/$s.result"
}

rm -f "$logdir"/*.result
running=0
for s in "${scenarios[@]}"; do
  run_one "$s" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n
    running=$((running - 1))
  fi
done
wait

failed=0
printf '%-24s %-6s %s\n' SCENARIO RESULT SECONDS
for s in "${scenarios[@]}"; do
  if [[ -f "$logdir/$s.result" ]]; then
    read -r _ rc secs <"$logdir/$s.result"
  else
    rc=missing secs=-
  fi
  if [[ "$rc" == 0 ]]; then
    printf '%-24s %-6s %s\n' "$s" ok "$secs"
  else
    printf '%-24s %-6s %s   (log: %s)\n' "$s" "FAIL($rc)" "$secs" "$logdir/$s.log"
    failed=1
  fi
done
if ((failed)); then
  for s in "${scenarios[@]}"; do
    if ! grep -q "^$s 0 " "$logdir/$s.result" 2>/dev/null; then
      echo "----- last lines of $s -----"
      grep -v '^\s*$' "$logdir/$s.log" | tail -40
    fi
  done
fi
exit "$failed"
