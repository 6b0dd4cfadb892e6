"""Inventory files Ansible would read only in part: duplicate keys (a repeated host name
merges two hosts) and files it skips with a warning are problems, not warnings."""

from __future__ import annotations

import os
from pathlib import Path

from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_sources import (
    load_strict,
    source_problems,
)

INVENTORY = """\
all:
  children:
    chutes_primary:
      hosts:
        cpu-0: {ansible_host: 10.0.0.1}
    chutes_gpu:
      hosts:
        gpu-0: {ansible_host: 10.0.0.2}
"""


def _codes(problems: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(p.code, p.en) for p in problems]


def test_clean_inventory_directory(tmp_path: Path) -> None:
    (tmp_path / "inventory.yml").write_text(INVENTORY)
    (tmp_path / "group_vars/all").mkdir(parents=True)
    (tmp_path / "group_vars/all/main.yml").write_text("a: 1\nb: !vault |\n  $ANSIBLE_VAULT\n")
    (tmp_path / "README.md").write_text("# not an inventory\n")
    assert source_problems([str(tmp_path)], ["cpu-0", "gpu-0"]) == []


def test_duplicate_host_key_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY + "        gpu-0: {ansible_host: 10.0.0.3}\n")
    (problem,) = source_problems([str(path)], ["cpu-0", "gpu-0"])
    assert problem.code == "duplicate_key"
    assert problem.en.startswith(f"{path}:9: key 'gpu-0' appears twice")
    assert "重复的主机名" in problem.fix_zh


def test_duplicate_key_in_group_vars(tmp_path: Path) -> None:
    (tmp_path / "inventory.yml").write_text(INVENTORY)
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars/all.yml").write_text(
        "wireguard_network: 10.8.0.0/24\nwireguard_network: 10.9.0.0/24\n"
    )
    problems = source_problems([str(tmp_path / "inventory.yml")], ["cpu-0", "gpu-0"])
    assert [(p.code, "group_vars/all.yml:2" in p.en) for p in problems] == [("duplicate_key", True)]


def test_merge_keys_are_not_duplicates() -> None:
    data, duplicates = load_strict("base: &b {a: 1}\nhost: {<<: *b, a: 2}\n")
    assert duplicates == [] and data["host"] == {"a": 2}


def test_unparsable_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    cpu-0: {ansible_host: 10.0.0.1\n")
    (problem,) = source_problems([str(path)], [])
    assert problem.code == "unparsed_source" and "line 4" in problem.en


def test_file_whose_hosts_were_not_loaded(tmp_path: Path) -> None:
    """Valid YAML that Ansible's yaml plugin refused (hosts as a list): its hosts are missing."""
    good = tmp_path / "a.yml"
    bad = tmp_path / "b.yml"
    good.write_text(INVENTORY)
    bad.write_text("extra:\n  hosts:\n    gpu-7:\n    gpu-8:\n")
    (problem,) = source_problems([str(tmp_path)], ["cpu-0", "gpu-0"])
    assert problem.code == "ignored_source"
    assert str(bad) in problem.en and "gpu-7, gpu-8" in problem.en


def test_ini_inventory(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(
        "[chutes_primary]\ncpu-0 ansible_host=10.0.0.1\n[chutes_gpu]\ngpu-[0:3]\n[all:vars]\nx=1\n"
    )
    assert source_problems([str(path)], ["cpu-0"]) == []
    assert [p.code for p in source_problems([str(path)], [])] == ["ignored_source"]


def test_scripts_host_lists_and_missing_sources(tmp_path: Path) -> None:
    script = tmp_path / "dynamic.py"
    script.write_text("#!/bin/sh\necho '{}'\n")
    os.chmod(script, 0o755)
    problems = source_problems([str(script), "cpu-0,gpu-0,", str(tmp_path / "nope.yml")], [])
    assert [p.code for p in problems] == ["missing_source"]
