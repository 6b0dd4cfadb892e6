#!/usr/bin/env bash
# Show that each layer of `make test` catches a deliberately broken role.
# Each breakage is applied in a throwaway git worktree of HEAD; the layer's own
# command must then FAIL. Prints one line per layer; exits non-zero if a layer
# let its breakage through. Slow part: the Molecule layer (~3 min).
set -uo pipefail
# shellcheck source=tests/lab/env.sh
source "$(dirname "$0")/lab/env.sh"
cd "$CHUTES_REPO" || exit 1
role=collections/ansible_collections/chutes/miner/roles/base
status=0

worktree() {
  local dir
  dir="$(mktemp -d /tmp/chutes-breakage.XXXXXX)"
  git worktree add -q --detach "$dir" HEAD
  echo "$dir"
}

expect_failure() { # layer dir command...
  local layer="$1" dir="$2"
  shift 2
  if (cd "$dir" && ANSIBLE_COLLECTIONS_PATH="$dir/collections" "$@") >"$CHUTES_LAB_DIR/breakage-$layer.log" 2>&1; then
    echo "$layer: NOT caught (log: $CHUTES_LAB_DIR/breakage-$layer.log)"
    status=1
  else
    echo "$layer: caught (log: $CHUTES_LAB_DIR/breakage-$layer.log)"
  fi
  git worktree remove --force "$dir"
}

# 1. lint: a short module name instead of its FQCN.
dir="$(worktree)"
sed -i 's/^  ansible.builtin.hostname:$/  hostname:/' "$dir/$role/tasks/hostname.yml"
expect_failure lint "$dir" ansible-lint --offline -q "$role"

# 2. pytest: a new input documented nowhere but argument_specs.
dir="$(worktree)"
cat >>"$dir/$role/meta/argument_specs.yml" <<'YAML'
      base_undocumented_knob:
        type: bool
        default: false
        description: Added without a default or README row.
YAML
expect_failure pytest "$dir" python -m pytest -q -p no:cacheprovider tests/collection/test_role_interfaces.py

# 3. molecule idempotence: a task that reports a change on every run.
dir="$(worktree)"
cat >>"$dir/$role/tasks/hostname.yml" <<'YAML'

- name: hostname | Touch a marker on every run (deliberate breakage)
  ansible.builtin.command: touch /etc/chutes-breakage
  changed_when: true
YAML
expect_failure molecule-idempotence "$dir" molecule test -s base
exit "$status"
