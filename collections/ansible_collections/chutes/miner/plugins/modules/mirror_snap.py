#!/usr/bin/python
# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""snapd proxy settings of chutes.miner.mirrors, undone without touching the operator's."""

from __future__ import annotations

DOCUMENTATION = r"""
module: mirror_snap
short_description: Set or undo the snapd proxy options chosen by chutes.miner.mirrors
description:
  - C(present) sets every O(config) option (C(snap set <snap> <option>=<value>)) that differs,
    and records in C(<state_dir>/snap.json) the value each option had before. Options the
    host already had at the wanted value are not recorded, so they are never undone.
  - Recorded options that O(config) no longer names are undone as with C(absent).
  - C(absent) undoes what the record names. An option still at the value the role set gets
    its previous value back (or is unset when there was none). An option someone changed
    since is left alone. Nothing else is touched.
  - With C(proxy.store) in O(config) and O(assertions_url) set, the Snap Store Proxy's
    assertions are fetched from the node and acknowledged (C(snap ack)) before the option is set.
  - Without snapd on the host (no C(snap) command) nothing happens; C(snapd) is reported false.
options:
  state:
    description: Apply or undo.
    type: str
    choices: [present, absent]
    default: present
  config:
    description: 'Snap name to option to value, for example C({system: {proxy.http: "http://p:3128"}}).'
    type: dict
    default: {}
  state_dir:
    description: Directory of the record C(snap.json).
    type: path
    required: true
  assertions_url:
    description: Snap Store Proxy assertions (C(<store_url>/v2/auth/store/assertions)).
    type: str
    default: ""
  snap_command:
    description: The snap CLI, a name looked up in C(PATH) (and C(/snap/bin)) or a full path.
    type: str
    default: snap
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
"""

EXAMPLES = r"""
- name: Send snapd through an HTTP proxy
  chutes.miner.mirror_snap:
    config: {system: {proxy.http: "http://proxy.lan:3128", proxy.https: "http://proxy.lan:3128"}}
    state_dir: /var/lib/chutes-miner/mirrors
"""

RETURN = r"""
snapd:
  description: Whether the C(snap) command exists on the host.
  type: bool
  returned: always
set:
  description: C(<snap>.<option>) names set (or, undoing, set back).
  type: list
  returned: always
unset:
  description: C(<snap>.<option>) names unset.
  type: list
  returned: always
kept:
  description: Recorded options left alone because someone changed them since.
  type: list
  returned: always
"""

import os
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.chutes.miner.plugins.module_utils.files import load_json, save_json

RECORD = "snap.json"


class Snap:
    def __init__(self, module: AnsibleModule, command: str) -> None:
        self.module = module
        self.command = command

    def get(self, snap: str, option: str) -> str:
        rc, out, _err = self.module.run_command([self.command, "get", snap, option])
        return out.strip() if rc == 0 else ""  # an unset option exits non-zero

    def set(self, snap: str, option: str, value: str) -> None:
        self.module.run_command([self.command, "set", snap, f"{option}={value}"], check_rc=True)

    def unset(self, snap: str, option: str) -> None:
        self.module.run_command([self.command, "unset", snap, option], check_rc=True)

    def ack(self, url: str) -> None:
        with tempfile.NamedTemporaryFile(suffix=".assert") as tmp:
            with open_url(url, timeout=30) as resp:  # the operator's Snap Store Proxy
                tmp.write(resp.read())
            tmp.flush()
            self.module.run_command([self.command, "ack", tmp.name], check_rc=True)


def _load(path: str) -> dict[str, Any]:
    data = load_json(path, {})
    return data if isinstance(data, dict) else {}


def _save(module: AnsibleModule, path: str, data: dict[str, Any]) -> None:
    if data:
        save_json(module, path, data)
    elif os.path.exists(path):
        os.unlink(path)


def reconcile(
    snap: Any,
    record: dict[str, Any],
    config: dict[str, dict[str, str]],
    *,
    assertions_url: str = "",
    check: bool = False,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Apply ``config`` (empty: undo everything recorded); return the new record and a summary."""
    record = {k: dict(v) for k, v in record.items()}
    done: dict[str, list[str]] = {"set": [], "unset": [], "kept": []}
    wanted = {
        f"{s}.{o}": (s, o, str(v))
        for s, opts in sorted(config.items())
        for o, v in sorted(opts.items())
    }
    for name in sorted(set(record) - set(wanted)):
        rec = record.pop(name)
        snap_name, option = rec["snap"], rec["option"]
        if snap.get(snap_name, option) != rec["set"]:
            done["kept"].append(name)  # changed since the role set it: theirs now
            continue
        if rec["previous"]:
            done["set"].append(name)
            if not check:
                snap.set(snap_name, option, rec["previous"])
        else:
            done["unset"].append(name)
            if not check:
                snap.unset(snap_name, option)
    for name, (snap_name, option, value) in wanted.items():
        current = snap.get(snap_name, option)
        if current == value:
            if name in record and record[name]["set"] != value:
                record[name]["set"] = value
            continue
        done["set"].append(name)
        previous = record[name]["previous"] if name in record else current
        record[name] = {"snap": snap_name, "option": option, "set": value, "previous": previous}
        if check:
            continue
        if option == "proxy.store" and assertions_url:
            snap.ack(assertions_url)
        snap.set(snap_name, option, value)
    return record, done


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "config": {"type": "dict", "default": {}},
            "state_dir": {"type": "path", "required": True},
            "assertions_url": {"type": "str", "default": ""},
            "snap_command": {"type": "str", "default": "snap"},
        },
        supports_check_mode=True,
    )
    p = module.params
    # PATH first; the usual snap locations when the module's PATH lacks them (non-login shells)
    command = module.get_bin_path(p["snap_command"]) or module.get_bin_path(
        p["snap_command"], opt_dirs=["/usr/bin", "/snap/bin", "/usr/local/bin"]
    )
    if not command:
        module.exit_json(changed=False, snapd=False, set=[], unset=[], kept=[])
    path = os.path.join(p["state_dir"], RECORD)
    config = p["config"] if p["state"] == "present" else {}
    record, done = reconcile(
        Snap(module, command),
        _load(path),
        config,
        assertions_url=p["assertions_url"],
        check=module.check_mode,
    )
    changed = bool(done["set"] or done["unset"])
    if not module.check_mode and (changed or done["kept"] or record != _load(path)):
        _save(module, path, record)
    module.exit_json(changed=changed, snapd=True, **done)


if __name__ == "__main__":
    main()
