# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.preflight_row``: one line of the preflight report table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DOCUMENTATION = r"""
name: preflight_row
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: One line of the chutes.miner.preflight report table
description:
  - Formats one host check as C(ok) or C(FAIL), the check name and its detail. With O(fixes),
    a failed check gets its fix in English and Chinese on the two lines below.
options:
  _input:
    description: One check, with C(check) (name), C(ok) (bool) and C(detail).
    type: dict
    required: true
  fixes:
    description: "Check name to C({en: ..., zh: ...})."
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Show the checks
  ansible.builtin.debug:
    msg: "{{ __preflight_rows | map('chutes.miner.preflight_row') | list }}"

- name: Show the failed checks with their fixes
  ansible.builtin.debug:
    msg: "{{ __preflight_failed | map('chutes.miner.preflight_row', __preflight_fixes) | list }}"
"""

RETURN = r"""
_value:
  description: The line (three lines when a fix is shown).
  type: str
"""


def preflight_row(
    row: Mapping[str, Any], fixes: Mapping[str, Mapping[str, str]] | None = None
) -> str:
    """``ok   os          Debian 12``, or a ``FAIL`` line followed by the fix."""
    mark = "ok  " if row.get("ok") else "FAIL"
    line = f"{mark} {row.get('check', '?'):<11} {str(row.get('detail', '')).strip()}"
    fix = (fixes or {}).get(str(row.get("check")))
    if fix:
        line += f"\n     fix: {fix.get('en', '')}\n     修复: {fix.get('zh', '')}"
    return line


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"preflight_row": preflight_row}
