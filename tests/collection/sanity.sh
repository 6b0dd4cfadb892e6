#!/usr/bin/env bash
# The collection as Galaxy receives it: build the tarball, install it into a scratch directory
# and run, on that installed copy, `ansible-test sanity`, `ansible-test units` and Galaxy's own
# importer (galaxy-importer, configured by galaxy-importer.cfg here). No Docker, no Galaxy.
#
# ansible-test runs each sanity test in a virtual environment of its own with the tool versions
# ansible-core pins (pylint, yamllint, voluptuous, ...). The first run installs them from the
# package index pip is configured for and keeps them in ~/.ansible/test/venv; later runs are
# offline.
#
# Modules run on the managed hosts, under any Python ansible-core supports there (3.8 and newer),
# so the compile and import tests run once per Python version: every python3.X installed by pyenv
# is used, and ansible-test names each supported version it could not find as skipped.
#
# Usage: tests/collection/sanity.sh [VENV]   (default: .venv of the repository)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
venv=$(cd "${1:-$repo/.venv}" && pwd)
collection=$repo/collections/ansible_collections/chutes/miner

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# pyenv's shims start only the versions a pyenv setting selects; link the interpreters directly.
mkdir "$work/python"
for exe in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python3.*; do
  name=${exe##*/}
  if [[ $name =~ ^python3\.[0-9]+$ && -x $exe && ! -e $work/python/$name ]]; then
    ln -s "$exe" "$work/python/$name"
  fi
done
export PATH="$venv/bin:$work/python:$PATH"
# Not the repository's ansible.cfg: it puts the source tree on the collections path.
: >"$work/ansible.cfg"
export ANSIBLE_CONFIG="$work/ansible.cfg"
# Nor tests/lab/env.sh's collections path: with the source tree on it, `collection install`
# finds chutes.miner already installed and installs nothing.
unset ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS

ansible-galaxy collection build --output-path "$work/dist" "$collection" >/dev/null
tarball=$(echo "$work"/dist/chutes-miner-*.tar.gz)
ansible-galaxy collection install --force --offline --no-deps -p "$work/installed" "$tarball" >/dev/null
installed=$work/installed/ansible_collections/chutes/miner

pip_version=$(python -c 'import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="3"))["pip"])')
bootstrap=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [[ ! -f $bootstrap ]]; then
  mkdir -p "$(dirname "$bootstrap")"
  cp "$repo/tests/collection/get_pip_offline.py" "$bootstrap"
fi

# Every check runs; the script fails at the end when any of them failed.
failed=()
cd "$installed"
echo "== ansible-test sanity (installed tarball)"
ansible-test sanity --local --color no || failed+=("ansible-test sanity")
echo "== ansible-test units"
# With the venv's Python only: pytest and its plugins are installed there, not in pyenv's Pythons.
py_version=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ansible-test units --local --python "$py_version" --color no || failed+=("ansible-test units")

echo "== galaxy-importer"
cd "$work"
if GALAXY_IMPORTER_CONFIG="$repo/tests/collection/galaxy-importer.cfg" \
  python -m galaxy_importer.main "$tarball" >"$work/importer.log" 2>&1; then
  python "$repo/tests/collection/importer_check.py" "$work/importer.log" \
    "$work/importer_result.json" || failed+=("galaxy-importer")
else
  cat "$work/importer.log"
  failed+=("galaxy-importer")
fi

if ((${#failed[@]})); then
  printf 'collection checks failed: %s\n' "${failed[*]}" >&2
  exit 1
fi
echo "collection checks passed: ansible-test sanity, ansible-test units, galaxy-importer"
