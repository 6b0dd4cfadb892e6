"""Filters for ``chutes.miner.preflight`` host checks: the parts that are unreadable in Jinja.

- ``path_parents``: ``/var/snap`` -> ``['/', '/var', '/var/snap']``.
- ``busy_ports``: ports of ``preflight_ports`` held by a process that is not allowed.
- ``sysctl_after``: sysctl files that systemd-sysctl applies after a given drop-in.
- ``preflight_row``: one table line (and, with fixes, the EN/中文 fix under it).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

DOCUMENTATION = r"""
name: preflight_row
author: chutes.miner developers
version_added: 0.1.0
short_description: Helpers for chutes.miner.preflight host checks
description:
  - C(path_parents) lists a path and its parents; C(busy_ports) returns C(port/proto held by
    name[pid]) strings; C(sysctl_after) keeps files ordered after a drop-in; C(preflight_row)
    formats a check as one line.
options:
  _input:
    description: The value to work on.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: report | Show the checks
  ansible.builtin.debug:
    msg: "{{ __preflight_rows | map('chutes.miner.preflight_row') | list }}"
"""

RETURN = r"""
_value:
  description: See the description.
  type: raw
"""

_SYSCTL_CONF = "/etc/sysctl.conf"  # procps applies it after every sysctl.d file


def path_parents(path: str) -> list[str]:
    parts = [p for p in str(path).split("/") if p]
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def busy_ports(
    listening: Mapping[str, Iterable[Mapping[str, Any]]],
    ports: Iterable[str],
    allowed: Iterable[str],
) -> list[str]:
    """``listening`` is ``{'tcp': tcp_listen, 'udp': udp_listen}`` from listen_ports_facts."""
    allowed_names = set(allowed)
    busy: list[str] = []
    for spec in ports:
        port_text, proto = str(spec).split("/")
        for sock in listening.get(proto, []) or []:
            if int(sock.get("port", -1)) != int(port_text):
                continue
            name = str(sock.get("name") or "")
            if name in allowed_names or (proto == "udp" and name in ("", "unknown")):
                continue  # the cluster itself, or a kernel socket (WireGuard)
            line = f"{spec} held by {name or 'unknown'}[{sock.get('pid', '?')}]"
            if line not in busy:
                busy.append(line)
    return busy


def sysctl_after(paths: Iterable[str], dropin: str) -> list[str]:
    """Files whose settings win over ``dropin`` (basename order, /etc/sysctl.conf last)."""
    return sorted(
        p for p in paths if p == _SYSCTL_CONF or posixpath.basename(p) > posixpath.basename(dropin)
    )


def preflight_row(
    row: Mapping[str, Any], fixes: Mapping[str, Mapping[str, str]] | None = None
) -> str:
    mark = "ok  " if row.get("ok") else "FAIL"
    line = f"{mark} {row.get('check', '?'):<11} {str(row.get('detail', '')).strip()}"
    fix = (fixes or {}).get(str(row.get("check")))
    if fix:
        line += f"\n     fix: {fix.get('en', '')}\n     修复: {fix.get('zh', '')}"
    return line


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "path_parents": path_parents,
            "busy_ports": busy_ports,
            "sysctl_after": sysctl_after,
            "preflight_row": preflight_row,
        }
