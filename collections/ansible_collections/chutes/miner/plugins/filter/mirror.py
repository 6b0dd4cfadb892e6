# Copyright: chutes.miner developers
# MIT License
"""Filters of the chutes.miner.mirrors role; the logic lives in module_utils/mirrors.py."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.chutes.miner.plugins.module_utils import mirrors as _m


def mirror_url(url: str, effective: dict[str, Any] | None = None) -> str:
    """``{{ url | chutes.miner.mirror_url(mirrors_effective) }}``: route via the files mirror."""
    try:
        return str(_m.mirror_url(str(url), effective))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def mirror_plan(catalog: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    return dict(_m.build_plan(catalog, **kwargs))


def mirror_select(
    results: list[dict[str, Any]], plan: dict[str, Any], on_failure: str = "fail"
) -> dict[str, Any]:
    return dict(_m.select(plan, results, on_failure))


def mirror_effective(selection: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    return dict(_m.effective(plan, selection))


def mirror_files(
    selection: dict[str, Any], plan: dict[str, Any], microk8s: bool = False
) -> dict[str, Any]:
    return dict(_m.files_plan(plan, selection, microk8s))


def pgp_fingerprints(armored: str) -> list[str]:
    """``{{ lookup('file', key) | chutes.miner.pgp_fingerprints }}``: primary-key fingerprints."""
    try:
        return list(_m.pgp_fingerprints(str(armored)))
    except ValueError as exc:
        raise AnsibleFilterError(f"pgp_fingerprints: {exc}") from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "mirror_url": mirror_url,
            "mirror_plan": mirror_plan,
            "mirror_select": mirror_select,
            "mirror_effective": mirror_effective,
            "mirror_files": mirror_files,
            "pgp_fingerprints": pgp_fingerprints,
        }
