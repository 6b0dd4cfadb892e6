#!/usr/bin/python
# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Put a wg-quick config in place and bring the running interface in line without cutting it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: wireguard_interface
short_description: Write a wg-quick config and apply it with wg syncconf, never restarting for peers
description:
  - Writes O(config) to O(config_path) (root, 0600), the wireguard-go drop-in of
    C(wg-quick@.service) (present only with O(userspace)) and the forwarding sysctl drop-in
    (present only when O(sysctl_content) is not empty, loaded with C(sysctl -p)).
  - Enables C(wg-quick@<name>) and starts it when it is not running.
  - On a running interface, compares the running state with the config. Peer or key
    differences (from the file or from the kernel) are applied with C(wg syncconf), which
    leaves existing sessions alone. Interface-level differences (address, MTU, listen port,
    kernel or wireguard-go, PostUp/PostDown) are only reported in RV(restart_required); the
    caller restarts the unit, one host at a time.
  - The private key is read from O(private_key_path) and streamed to C(wg syncconf) on stdin;
    it never appears in arguments, files or results.
options:
  name:
    description: Interface name (C(wg0)); the unit is C(wg-quick@<name>).
    type: str
    required: true
  config:
    description: Full text of the wg-quick config.
    type: str
    required: true
  config_path:
    description: Where the config lives.
    type: path
    required: true
  private_key_path:
    description: The interface's private key file.
    type: path
    required: true
  userspace:
    description: Run the interface on wireguard-go (through the drop-in), not the kernel module.
    type: bool
    required: true
  dropin_path:
    description: Path of the wireguard-go drop-in of C(wg-quick@.service).
    type: path
    required: true
  dropin_content:
    description: Text of the drop-in, written when O(userspace) is true.
    type: str
    default: ""
  sysctl_path:
    description: Path of the forwarding sysctl drop-in.
    type: path
    required: true
  sysctl_content:
    description: Text of the sysctl drop-in; empty removes the file.
    type: str
    default: ""
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
"""

EXAMPLES = r"""
- name: Apply the tunnel config
  chutes.miner.wireguard_interface:
    name: wg0
    config: "{{ lookup('ansible.builtin.template', 'etc/wireguard/wg.conf.j2') }}"
    config_path: /etc/wireguard/wg0.conf
    private_key_path: /etc/wireguard/wg0.key
    userspace: false
    dropin_path: /etc/systemd/system/wg-quick@.service.d/userspace.conf
    sysctl_path: /etc/sysctl.d/60-chutes-miner-wireguard.conf
  register: __wireguard_apply
"""

RETURN = r"""
written:
  description: Files written or removed.
  type: list
  elements: str
  returned: always
started:
  description: Whether the unit was started (it was not running).
  type: bool
  returned: always
synced:
  description: Whether C(wg syncconf) applied peer or key changes.
  type: bool
  returned: always
sync_reasons:
  description: Why peers or the key were synced.
  type: list
  elements: str
  returned: always
restart_required:
  description: Whether an interface-level setting differs from the running interface.
  type: bool
  returned: always
restart_reasons:
  description: Which interface-level settings differ.
  type: list
  elements: str
  returned: always
"""

import os
from typing import TYPE_CHECKING, Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chutes.miner.plugins.module_utils import wireguard as wgu
from ansible_collections.chutes.miner.plugins.module_utils.files import replace_file

if TYPE_CHECKING:  # a type alias only (Python 3.8 hosts cannot subscript Callable at run time)
    from collections.abc import Callable

    # write(path, content, file mode, mode of missing parent directories)
    Writer = Callable[[str, str, int, int], None]


def reconcile(
    p: dict[str, Any],
    run: wgu.Runner,
    write: Writer,
    check_mode: bool = False,
    paths: wgu.HostPaths | None = None,
) -> dict[str, Any]:
    """Bring files and interface in line with ``p`` (the module's parameters); the result.

    Raises ValueError for a config that does not parse.
    """
    paths = paths or wgu.HostPaths()
    unit = f"wg-quick@{p['name']}"
    new = wgu.parse_config(p["config"])
    old_text = wgu.read_text(p["config_path"])
    old = wgu.parse_config(old_text) if old_text is not None else None

    # (path, wanted content or None for absent, file mode, directory mode)
    files = [
        (p["config_path"], p["config"], 0o600, 0o700),
        (p["dropin_path"], p["dropin_content"] if p["userspace"] else None, 0o644, 0o755),
        (p["sysctl_path"], p["sysctl_content"] or None, 0o644, 0o755),
    ]
    to_write = [f for f in files if wgu.read_text(f[0]) != f[1]]
    written = [f[0] for f in to_write]
    config_changed = p["config_path"] in written

    live = wgu.read_live(run, p["name"], paths)
    enabled = run("systemctl", "is-enabled", "--quiet", unit, check=False)[0] == 0
    private_key = wgu.read_private_key(p["private_key_path"])
    restart = wgu.restart_reasons(old, new, live, p["userspace"])
    sync = [] if restart else wgu.sync_reasons(new, live, private_key, config_changed)
    # Only our drop-in: forwarding is per network namespace; also after a reset of the value.
    load_sysctl = bool(p["sysctl_content"]) and (
        p["sysctl_path"] in written or not wgu.ip_forward(paths)
    )
    result: dict[str, Any] = {
        "changed": bool(to_write or load_sysctl or live is None or not enabled or sync or restart),
        "written": written,
        "started": live is None,
        "synced": bool(sync),
        "sync_reasons": sync,
        "restart_required": bool(restart),
        "restart_reasons": restart,
        "diff": {
            "before_header": p["config_path"],
            "after_header": p["config_path"],
            "before": old_text or "",
            "after": p["config"],
        },
    }
    if check_mode:
        return result

    for path, content, mode, dir_mode in to_write:
        if content is None:
            os.unlink(path)
        else:
            write(path, content, mode, dir_mode)
    if p["dropin_path"] in written:
        run("systemctl", "daemon-reload")
    if load_sysctl:
        run("sysctl", "-p", p["sysctl_path"])
    if not enabled:
        run("systemctl", "enable", "--quiet", unit)
    if live is None:
        run("systemctl", "start", unit)
    elif sync:
        run("wg", "syncconf", p["name"], "/dev/stdin", data=wgu.syncconf_input(new, private_key))
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "config": {"type": "str", "required": True},
            "config_path": {"type": "path", "required": True},
            "private_key_path": {"type": "path", "required": True},
            "userspace": {"type": "bool", "required": True},
            "dropin_path": {"type": "path", "required": True},
            "dropin_content": {"type": "str", "default": ""},
            "sysctl_path": {"type": "path", "required": True},
            "sysctl_content": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    try:
        result = reconcile(
            module.params,
            wgu.runner(module, module.params["name"]),
            lambda path, text, mode, dir_mode: replace_file(
                module, path, text.encode("utf-8"), mode, dir_mode
            ),
            module.check_mode,
        )
    except ValueError as exc:
        module.fail_json(msg=f"{module.params['config_path']}: {exc}")
    if not (module._diff and module.params["config_path"] in result["written"]):
        del result["diff"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
