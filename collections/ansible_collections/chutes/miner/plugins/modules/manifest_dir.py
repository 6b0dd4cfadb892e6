#!/usr/bin/python
# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Write one directory of rendered Kubernetes manifests in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: manifest_dir
short_description: Write a directory of rendered manifests, and only those
version_added: 0.1.0
author: chutes.miner developers (!UNKNOWN)
description:
  - Writes each of O(files) into O(path) (created 0700) whole and atomically, mode 0600, only
    where the content differs, and removes every other C(*.yaml) file there, so the directory
    holds exactly what was rendered. One call for all files (the render-only mode of the
    C(miner_*) roles).
options:
  path:
    description: The directory.
    type: path
    required: true
  files:
    description: File name (no directory part, ending in C(.yaml)) -> content.
    type: dict
    required: true
attributes:
  check_mode:
    support: full
    description: Reports what would be written or removed, changes nothing.
  diff_mode:
    support: none
    description: The contents may be secret; no diff is shown.
"""

EXAMPLES = r"""
- name: Write the PostgreSQL manifests
  chutes.miner.manifest_dir:
    path: /srv/gitops/chutes/10-miner_postgres
    files:
      service.yaml: "{{ lookup('ansible.builtin.template', 'service.yaml.j2') }}"
"""

RETURN = r"""
written:
  description: Files written (new or changed).
  type: list
  elements: str
  returned: always
removed:
  description: C(*.yaml) files removed because they were not in O(files).
  type: list
  elements: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chutes.miner.plugins.module_utils.files import replace_file


def _current(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def write_dir(
    module: AnsibleModule, directory: str, files: dict[str, str], check: bool = False
) -> tuple[list[str], list[str]]:
    """Write ``files`` into ``directory`` where they differ, remove other ``*.yaml`` files;
    return (written, removed). ``check`` changes nothing. A name that is not a plain
    ``*.yaml`` file name raises ValueError before anything is written."""
    for name in files:
        if "/" in name or not name.endswith(".yaml") or name.startswith("."):
            raise ValueError(f"file name {name!r} is not a plain *.yaml name")
    written = []
    for name, content in sorted(files.items()):
        dest = os.path.join(directory, name)
        data = str(content).encode("utf-8")
        if _current(dest) == data and (os.stat(dest).st_mode & 0o777) == 0o600:
            continue
        written.append(name)
        if not check:
            replace_file(module, dest, data, 0o600, dir_mode=0o700)
    removed = []
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            if name.endswith(".yaml") and name not in files:
                removed.append(name)
                if not check:
                    os.unlink(os.path.join(directory, name))
    return written, removed


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "files": {"type": "dict", "required": True, "no_log": True},
        },
        supports_check_mode=True,
    )
    try:
        written, removed = write_dir(
            module, module.params["path"], module.params["files"], module.check_mode
        )
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(written or removed), written=written, removed=removed)


if __name__ == "__main__":
    main()
