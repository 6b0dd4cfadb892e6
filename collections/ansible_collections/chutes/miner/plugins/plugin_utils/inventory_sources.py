# Copyright: chutes.miner developers
# MIT License
"""Inventory files that Ansible read only in part: duplicate keys and skipped sources.

Ansible keeps the last of two equal YAML keys (a repeated host name merges two hosts into
one) and skips an inventory file it cannot parse, both with only a warning. Validation must
not pass on what is left, whatever ``ansible.cfg`` says, so ``source_problems`` reads the
sources again with a strict loader: every duplicate key (inventory files, group_vars,
host_vars) and every file whose hosts are missing from the loaded inventory is a problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_rules import (
    ALL,
    Problem,
    problem,
)
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_schema import kind, show

YAML_SUFFIXES = (".yml", ".yaml", ".json")
# Ansible's default inventory_ignore_extensions.
IGNORED_SUFFIXES = (
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
)  # fmt: skip
_VARS_DIRS = ("group_vars", "host_vars")
_INI_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):  # type: ignore[misc]
    """A safe loader that records duplicate keys and accepts Ansible's tags (!vault...)."""

    duplicates: list[tuple[int, str]]

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key_node, _value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    self.duplicates.append((key_node.start_mark.line + 1, key_node.value))
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _any_tag(loader: Any, suffix: str, node: Any) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_multi_constructor("!", _any_tag)
_StrictLoader.add_multi_constructor("tag:yaml.org,2002:python", _any_tag)


def load_strict(text: str) -> tuple[Any, list[tuple[int, str]]]:
    """Parse YAML; return the data and the (line, key) of every duplicate key."""
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def _declared_hosts_yaml(data: Any) -> set[str]:
    """Host names a YAML inventory declares (under any group's hosts:)."""
    names: set[str] = set()
    stack = [data]
    while stack:
        group = stack.pop()
        if not isinstance(group, dict):
            continue
        for key, value in group.items():
            if key == "hosts" and isinstance(value, dict):
                names.update(str(h) for h in value)
            elif key == "children" and isinstance(value, dict):
                stack.extend(value.values())
            elif key not in ("vars", "hosts", "children") and isinstance(value, dict):
                stack.append(value)
    return names


def _declared_hosts_ini(text: str) -> set[str]:
    names: set[str] = set()
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        match = _INI_SECTION.match(line)
        if match:
            section = match.group(1)
            continue
        if section.endswith((":vars", ":children")):
            continue
        name = line.split()[0]
        if "[" not in name:  # ranges like node[01:20] expand to other names
            names.add(name)
    return names


def ini_duplicates(text: str) -> list[tuple[int, str]]:
    """(line, name) of every host listed twice in one INI group and every variable set twice
    in one [group:vars] section: Ansible keeps the last value without a warning."""
    seen: dict[str, set[str]] = {}
    section = "ungrouped"
    out: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        match = _INI_SECTION.match(line)
        if match:
            section = match.group(1).strip()
            continue
        if section.endswith(":children"):
            continue
        name = line.split("=", 1)[0].strip() if section.endswith(":vars") else line.split()[0]
        names = seen.setdefault(section, set())
        if name in names:
            out.append((number, name))
        names.add(name)
    return out


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    out: list[Path] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _VARS_DIRS)
        out.extend(
            Path(root) / f
            for f in sorted(files)
            if not f.startswith(".") and not f.endswith(IGNORED_SUFFIXES)
        )
    return out


def _vars_files(path: Path) -> list[Path]:
    base = path if path.is_dir() else path.parent
    out: list[Path] = []
    for name in _VARS_DIRS:
        root = base / name
        if root.is_dir():
            out.extend(
                p
                for p in sorted(root.rglob("*"))
                if p.is_file() and (p.suffix in YAML_SUFFIXES or not p.suffix)
            )
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def source_problems(sources: Iterable[Any], loaded_hosts: Iterable[str]) -> list[Problem]:
    """Problems of the inventory sources as files; ``loaded_hosts`` is ``groups['all']``."""
    loaded = {str(h) for h in loaded_hosts}
    problems: list[Problem] = []
    seen: set[Path] = set()
    for source in sources or []:
        if not isinstance(source, str) or not source:
            continue
        path = Path(source).expanduser()
        if not path.exists():
            if "," not in source:  # "host1,host2," is a host list, not a path
                problems.append(problem("missing_source", ALL, "", file=source))
            continue
        for file in _files(path):
            if file in seen or os.access(file, os.X_OK) and file.suffix not in YAML_SUFFIXES:
                continue  # scripts are dynamic inventories: nothing to re-read
            seen.add(file)
            problems.extend(_inventory_file(file, loaded))
        for file in _vars_files(path):
            if file not in seen:
                seen.add(file)
                problems.extend(_duplicates(file))
    return problems


def _duplicates(file: Path) -> list[Problem]:
    text = _read(file)
    if text is None:
        return []
    try:
        duplicates = load_strict(text)[1]
    except yaml.YAMLError:
        return []  # Ansible itself stops on an unparsable vars file
    return [
        problem("duplicate_key", ALL, "", file=file, line=line, shown=show(key))
        for line, key in duplicates
    ]


def _inventory_file(file: Path, loaded: set[str]) -> list[Problem]:
    text = _read(file)
    if text is None:
        return [problem("unparsed_source", ALL, "", file=file, error="unreadable")]
    try:
        data, duplicates = load_strict(text)
    except yaml.YAMLError as exc:
        if file.suffix not in YAML_SUFFIXES:  # an INI inventory is not YAML
            return _ini(file, text, loaded)
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        reason = getattr(exc, "problem", None) or type(exc).__name__
        return [problem("unparsed_source", ALL, "", file=file, error=f"{where}{reason}")]
    if not isinstance(data, dict) and file.suffix not in YAML_SUFFIXES:
        return _ini(file, text, loaded)
    out = [
        problem("duplicate_key", ALL, "", file=file, line=line, shown=show(key))
        for line, key in duplicates
    ]
    if isinstance(data, dict) and "plugin" not in data:
        out.extend(_shape(file, data))
        out.extend(_missing(file, _declared_hosts_yaml(data), loaded))
    elif data is not None and not isinstance(data, dict):
        en, zh = kind(data)
        out.append(
            problem(
                "inventory_shape",
                ALL,
                "",
                file=file,
                part_en=f"the file is {en}, not a mapping of groups",
                part_zh=f"文件内容是{zh}，不是以组为键的字典",
            )
        )
    return out


_SECTIONS = ("vars", "hosts", "children")


def _shape(file: Path, data: dict[Any, Any]) -> list[Problem]:
    """What Ansible's YAML inventory plugin skips or refuses: every group must be a mapping
    (or empty) with only vars, hosts and children, each a mapping, and string host names."""
    parts: list[tuple[str, str]] = []
    stack = [(str(name), value) for name, value in data.items()]
    while stack:
        group, body = stack.pop(0)
        if body is None:
            continue
        if not isinstance(body, dict):
            en, zh = kind(body)
            parts.append((f"group {group} is {en}, not a mapping", f"组 {group} 是{zh}，不是字典"))
            continue
        for key, value in body.items():
            name = show(key)
            if key not in _SECTIONS:
                parts.append(
                    (
                        f"group {group} has the key {name}, which is none of vars, hosts, children",
                        f"组 {group} 含有键 {name}，它不是 vars、hosts、children 之一",
                    )
                )
            elif value is not None and not isinstance(value, dict | str):
                en, zh = kind(value)
                parts.append(
                    (
                        f"{key} of group {group} is {en}, not a mapping",
                        f"组 {group} 的 {key} 是{zh}，不是字典",
                    )
                )
            elif key == "children" and isinstance(value, dict):
                stack.extend((str(child), sub) for child, sub in value.items())
            elif key == "hosts" and isinstance(value, dict):
                parts.extend(_host_shape(group, value))
    return [
        problem("inventory_shape", ALL, "", file=file, part_en=en, part_zh=zh) for en, zh in parts
    ]


def _host_shape(group: str, hosts: dict[Any, Any]) -> list[tuple[str, str]]:
    parts = []
    for host, host_vars in hosts.items():
        if not isinstance(host, str):
            en, zh = kind(host)
            parts.append(
                (
                    f"host name {show(host)} in group {group} is {en}, not a string",
                    f"组 {group} 中的主机名 {show(host)} 是{zh}，不是字符串（请加引号）",
                )
            )
        elif host_vars is not None and not isinstance(host_vars, dict):
            en, zh = kind(host_vars)
            parts.append(
                (
                    f"the variables of host {host} in group {group} are {en}, not a mapping",
                    f"组 {group} 中主机 {host} 的变量是{zh}，不是字典",
                )
            )
    return parts


def _ini(file: Path, text: str, loaded: set[str]) -> list[Problem]:
    out = [
        problem("duplicate_ini_entry", ALL, "", file=file, line=line, shown=show(name))
        for line, name in ini_duplicates(text)
    ]
    return out + _missing(file, _declared_hosts_ini(text), loaded)


def _missing(file: Path, declared: set[str], loaded: set[str]) -> list[Problem]:
    missing = sorted(declared - loaded)
    if not missing:
        return []
    names = ", ".join(missing[:5]) + (f" (+{len(missing) - 5})" if len(missing) > 5 else "")
    return [problem("ignored_source", ALL, "", file=file, hosts=names)]
