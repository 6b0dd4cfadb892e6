"""Inventory files Ansible would read only in part: duplicate keys (a repeated host name
merges two hosts) and files it skips with a warning are problems, not warnings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
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


# Shapes Ansible's YAML inventory plugin skips with a warning or refuses (dropping the file);
# each text holds a host "lost-0" or a variable "lost_var" that Ansible does not load.
SHAPES = {
    "group-is-a-list": ("all:\n  children:\n    g: [lost-0]\n", "group g is a list"),
    "unknown-group-key": ("all:\n  host:\n    lost-0: {}\n", "group all has the key 'host'"),
    "vars-typo": ("all:\n  var:\n    lost_var: 1\n  hosts:\n    h: {}\n", "has the key 'var'"),
    "hosts-is-a-list": ("all:\n  hosts:\n  - lost-0\n", "hosts of group all is a list"),
    "host-vars-a-string": (
        "all:\n  hosts:\n    lost-0: 10.0.0.1\n",
        "the variables of host lost-0 in group all are a string",
    ),
    "host-name-a-number": ("all:\n  hosts:\n    12345: {}\n    lost-0: {}\n", "host name 12345"),
    "file-is-a-list": ("- all:\n    hosts: {lost-0: {}}\n", "the file is a list"),
}


def _ansible_loads(path: Path) -> tuple[set[str], set[str]]:
    """Host names and the variable names of host h as Ansible's own loader sees them."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    inventory = InventoryManager(loader=DataLoader(), sources=[str(path)])
    hosts = {h.name for h in inventory.get_hosts()}
    h = inventory.get_host("h")
    return hosts, set(h.get_vars()) | set(inventory.groups["all"].get_vars()) if h else set()


@pytest.mark.parametrize("case", sorted(SHAPES))
def test_inventory_shapes_ansible_skips_are_problems(tmp_path: Path, case: str) -> None:
    text, fragment = SHAPES[case]
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    hosts, host_vars = _ansible_loads(path)
    assert "lost-0" not in hosts and "lost_var" not in host_vars  # Ansible really loses it
    problems = [
        p for p in source_problems([str(path)], sorted(hosts)) if p.code == "inventory_shape"
    ]
    assert len(problems) == 1 and fragment in problems[0].en, [p.en for p in problems]
    assert str(path) in problems[0].zh and "丢失" in problems[0].zh


def test_inventory_shapes_accepted_as_ansible_accepts_them(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(
        "all:\n  vars:\n  hosts: h\n  children:\n    g:\n    k:\n      hosts: {h: }\n"
        "      children: {g: {vars: {a: 1}}}\n"
    )
    assert _ansible_loads(path)[0] == {"h"}
    assert source_problems([str(path)], ["h"]) == []


def test_ini_entries_given_twice_are_problems(tmp_path: Path) -> None:
    """INI keeps the last of two lines for one host in one group, or of one variable in one
    [group:vars] section, without a warning; a host in two groups is fine."""
    path = tmp_path / "hosts"
    path.write_text(
        "[g]\nh1 a=1\nh2\n# h1 again, commented\n[k]\nh1\n[g:vars]\nb=1\n[g]\nh1 a=2\n"
        "[g:vars]\nb = 2\n[k:children]\ng\ng\n"
    )
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    assert InventoryManager(loader=DataLoader(), sources=[str(path)]).get_host("h1").vars["a"] == 2
    problems = source_problems([str(path)], ["h1", "h2"])
    assert [(p.code, p.en.split(": ", 1)[0]) for p in problems] == [
        ("duplicate_ini_entry", f"{path}:10"),
        ("duplicate_ini_entry", f"{path}:12"),
    ], [p.en for p in problems]
    assert "'h1' appears twice in one group" in problems[0].en
    assert "'b'" in problems[1].en and "只保留最后一个" in problems[1].zh
