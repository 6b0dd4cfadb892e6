#!/usr/bin/python
# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""What the wireguard role needs to know about a host, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: wireguard_host_info
short_description: Read a host's WireGuard packages, kernel support, key pair, files and interface
description:
  - Reports which of O(packages) are not installed, whether the kernel can create a WireGuard
    link (a throwaway C(wgprobe0) link, created and deleted at once), the key pair's state
    and public key, the MTU of the default-route interface, the SHA-1 of each of O(files),
    and how the running interface O(name) differs from the config at O(config_path).
  - With this the caller can tell, without another round trip, whether
    M(chutes.miner.wireguard_interface) has anything to do.
  - Changes nothing else; runs in check mode. The private key is read only to compare it with
    the public key file and the running interface, and is never returned.
options:
  name:
    description: Interface name; its unit is C(wg-quick@<name>).
    type: str
    required: true
  config_path:
    description: The interface's wg-quick config.
    type: path
    required: true
  files:
    description: Files whose SHA-1 to report (the config and the drop-ins the role writes).
    type: list
    elements: path
    default: []
  packages:
    description: Debian packages to look for.
    type: list
    elements: str
    default: []
  probe_kernel:
    description:
      - Whether to probe the kernel for WireGuard support; warns when it has none (the role
        then falls back to wireguard-go).
    type: bool
    default: false
  mtu:
    description: Tunnel MTU; warns when it is above the underlay MTU minus 80 (WireGuard overhead).
    type: int
  key_path:
    description: Private key file.
    type: path
    required: true
  public_key_path:
    description: Public key file.
    type: path
    required: true
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
"""

EXAMPLES = r"""
- name: Inspect the host
  chutes.miner.wireguard_host_info:
    packages: [wireguard-tools, wireguard-go]
    probe_kernel: true
    key_path: /etc/wireguard/wg0.key
    public_key_path: /etc/wireguard/wg0.pub
    name: wg0
    config_path: /etc/wireguard/wg0.conf
    files: [/etc/wireguard/wg0.conf]
  register: __wireguard_host
"""

RETURN = r"""
missing_packages:
  description: Entries of O(packages) that are not installed.
  type: list
  elements: str
  returned: always
kernel:
  description: Whether the kernel created a WireGuard link; null when O(probe_kernel) is false.
  type: bool
  returned: always
kernel_error:
  description: Why the probe failed (the C(ip) error), else empty.
  type: str
  returned: always
key:
  description:
    - C(ok) is true when the key directory is 0700, the private key exists with mode 0600 and
      the public key file holds its public key; C(public_key) is that file's content (empty
      when there is none); C(problems) says what is wrong otherwise.
  type: dict
  returned: always
underlay_mtu:
  description: MTU of the interface of the default route; null when there is no default route.
  type: int
  returned: always
files:
  description: SHA-1 of each of O(files) as Jinja's C(hash('sha1')) gives it; null if missing.
  type: dict
  returned: always
interface:
  description:
    - C(active) and C(enabled) of C(wg-quick@<name>); C(userspace) (wireguard-go rather than the
      kernel; null when not running); C(ip_forward) of the host's network namespace.
    - C(drift) lists how the running interface differs from the config on disk (address, MTU,
      port, key, peers); empty when it matches or is not running.
  type: dict
  returned: always
"""

import os
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chutes.miner.plugins.module_utils import wireguard as wgu


def missing_packages(module: AnsibleModule, packages: list[str]) -> list[str]:
    if not packages:
        return []
    _rc, out, _err = module.run_command(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", *packages],
        environ_update={"LC_ALL": "C"},
    )
    installed = {
        cols[0].split(":")[0]
        for cols in (line.split() for line in out.splitlines())
        if len(cols) >= 2 and cols[1].startswith("ii")
    }
    return [p for p in packages if p not in installed]


def probe_kernel(module: AnsibleModule) -> tuple[bool, str]:
    # No interface reports this; creating a throwaway link is the only reliable probe.
    rc, _out, err = module.run_command(["ip", "link", "add", "wgprobe0", "type", "wireguard"])
    if rc != 0:
        return False, err.strip()
    module.run_command(["ip", "link", "del", "wgprobe0"])
    return True, ""


def key_state(module: AnsibleModule, key_path: str, pub_path: str) -> dict[str, Any]:
    problems = []
    public_key = ""
    try:
        st = os.stat(os.path.dirname(key_path))
        if stat.S_IMODE(st.st_mode) != 0o700 or st.st_uid != 0:
            problems.append("key directory is not root-owned 0700")
    except FileNotFoundError:
        problems.append("no key directory")
    try:
        st = os.stat(key_path)
        if stat.S_IMODE(st.st_mode) != 0o600 or st.st_uid != 0 or st.st_size == 0:
            problems.append("private key is not a root-owned 0600 file")
    except FileNotFoundError:
        problems.append("no private key")
    try:
        with open(pub_path, encoding="ascii") as fh:
            public_key = fh.read().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        problems.append("no public key file")
    if not problems:
        wg = module.get_bin_path("wg")
        if wg is None:
            problems.append("wg is not installed")
        else:
            rc, out, _err = module.run_command([wg, "pubkey"], data=wgu.read_private_key(key_path))
            if rc != 0 or out.strip() != public_key:
                problems.append("the public key file does not match the private key")
    return {"ok": not problems, "public_key": public_key, "problems": problems}


def underlay_mtu() -> int | None:
    try:
        with open("/proc/net/route", encoding="ascii") as fh:
            rows = [line.split() for line in fh.read().splitlines()[1:]]
    except OSError:
        return None
    defaults = sorted((int(r[6]), r[0]) for r in rows if len(r) > 7 and r[1] == "00000000")
    if not defaults:
        return None
    try:
        with open(f"/sys/class/net/{defaults[0][1]}/mtu", encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def interface_state(
    module: AnsibleModule, name: str, config_path: str, key_path: str
) -> dict[str, Any]:
    run = wgu.runner(module, name)
    live = wgu.read_live(run, name, wgu.HostPaths())
    text = wgu.read_text(config_path)
    drift: list[str] = []
    if live is not None and text is not None:
        try:
            cfg = wgu.parse_config(text)
        except ValueError as exc:
            drift = [f"{config_path}: {exc}"]
        else:
            drift = wgu.restart_reasons(None, cfg, live, live.userspace) + wgu.sync_reasons(
                cfg, live, wgu.read_private_key(key_path), False
            )
    enabled = run("systemctl", "is-enabled", "--quiet", f"wg-quick@{name}", check=False)[0] == 0
    return {
        "active": live is not None,
        "enabled": enabled,
        "userspace": None if live is None else live.userspace,
        "ip_forward": wgu.ip_forward(wgu.HostPaths()),
        "drift": drift,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "list", "elements": "str", "default": []},
            "probe_kernel": {"type": "bool", "default": False},
            "mtu": {"type": "int"},
            "key_path": {"type": "path", "required": True},
            "public_key_path": {"type": "path", "required": True},
            "name": {"type": "str", "required": True},
            "config_path": {"type": "path", "required": True},
            "files": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    kernel, kernel_error = None, ""
    if module.params["probe_kernel"]:
        kernel, kernel_error = probe_kernel(module)
        if not kernel:
            module.warn(
                f"the kernel cannot create a WireGuard link ({kernel_error}): falling back to"
                " wireguard-go, which is slower. Install the module (linux-modules-extra) or set"
                " wireguard_userspace: true to silence this. / 内核无法创建 WireGuard 网卡"
                f"（{kernel_error}），改用较慢的 wireguard-go。"
                "请安装内核模块（linux-modules-extra），"
                "或设置 wireguard_userspace: true 以不再显示此提示。"
            )
    underlay = underlay_mtu()
    mtu = module.params["mtu"]
    if mtu is not None and underlay is not None and mtu > underlay - 80:
        module.warn(
            f"wireguard_mtu {mtu} is above the underlay MTU {underlay} minus 80;"
            " large packets will fragment or drop. / wireguard_mtu"
            f" {mtu} 大于底层网络 MTU {underlay} 减 80，"
            "大数据包会被分片或丢弃；请调小 wireguard_mtu。"
        )
    module.exit_json(
        changed=False,
        missing_packages=missing_packages(module, module.params["packages"]),
        kernel=kernel,
        kernel_error=kernel_error,
        key=key_state(module, module.params["key_path"], module.params["public_key_path"]),
        underlay_mtu=underlay,
        files={path: wgu.sha1_of(wgu.read_text(path)) for path in module.params["files"]},
        interface=interface_state(
            module, module.params["name"], module.params["config_path"], module.params["key_path"]
        ),
    )


if __name__ == "__main__":
    main()
