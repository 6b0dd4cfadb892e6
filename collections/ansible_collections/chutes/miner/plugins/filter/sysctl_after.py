# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.sysctl_after``: sysctl files applied after a given drop-in."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import Any

DOCUMENTATION = r"""
name: sysctl_after
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: The sysctl files systemd-sysctl applies after a given drop-in
description:
  - systemd-sysctl applies C(sysctl.d) files in the order of their base names, whatever
    directory they are in, and procps applies C(/etc/sysctl.conf) last. A file ordered after
    the drop-in wins over it. Used by C(chutes.miner.preflight) to find a file that would turn
    IPv4 forwarding off again.
options:
  _input:
    description: Paths of sysctl files.
    type: list
    elements: str
    required: true
  dropin:
    description: The base name of our drop-in, for example C(60-chutes-miner.conf).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Files that would override our drop-in
  ansible.builtin.debug:
    msg: >-
      {{ ['/etc/sysctl.d/10-a.conf', '/usr/lib/sysctl.d/99-b.conf', '/etc/sysctl.conf']
         | chutes.miner.sysctl_after('60-chutes-miner.conf') }}
"""

RETURN = r"""
_value:
  description: The paths ordered after the drop-in, sorted.
  type: list
  elements: str
"""

_SYSCTL_CONF = "/etc/sysctl.conf"  # procps applies it after every sysctl.d file


def sysctl_after(paths: Iterable[str], dropin: str) -> list[str]:
    """Files whose settings win over ``dropin`` (basename order, /etc/sysctl.conf last)."""
    return sorted(
        p for p in paths if p == _SYSCTL_CONF or posixpath.basename(p) > posixpath.basename(dropin)
    )


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"sysctl_after": sysctl_after}
