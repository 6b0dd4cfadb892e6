# Copyright: chutes.miner developers
# MIT License
"""The validation report as one plain-text table (host | variable | problem and fix).

Problems with the same text on several hosts become one row; each language's problem and fix
sit on their own lines, never wrapped by us, in the order of ``chutes_lang``. The action
plugin ``chutes.miner.inventory_report`` prints it straight to the terminal, so it reads the
same under every stdout callback and without the repository's ansible.cfg.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

LANGS = ("en", "zh")
HOST_WIDTH = 28
VAR_WIDTH = 30
HOSTS_SHOWN = 8

_TEXT = {
    "title_fail": {
        "en": "Inventory validation found {count} problem(s); no host was contacted or changed.",
        "zh": "节点清单校验发现 {count} 个问题；未连接也未修改任何主机。",
    },
    "title_notice": {"en": "Inventory notices:", "zh": "节点清单提示："},
    "host": {"en": "HOST", "zh": "主机"},
    "var": {"en": "VARIABLE", "zh": "变量"},
    "text": {"en": "PROBLEM → FIX", "zh": "问题 → 修复"},
    "all": {"en": "all", "zh": "全部"},
    "more": {"en": "+{count} more", "zh": "另 {count} 台"},
    "failed": {
        "en": "inventory validation failed: {count} problem(s), listed above",
        "zh": "节点清单校验失败：{count} 个问题，见上表",
    },
    "passed": {
        "en": "inventory valid: {hosts} host(s) checked",
        "zh": "节点清单校验通过：已检查 {hosts} 台主机",
    },
}


def languages(value: Any) -> list[str]:
    """``chutes_lang`` as an ordered list; anything unusable means both, English first."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    out = [str(i) for i in items if isinstance(i, str) and i in LANGS]
    return list(dict.fromkeys(out)) or list(LANGS)


def text(key: str, langs: list[str], sep: str = " / ", **fields: Any) -> str:
    return sep.join(_TEXT[key][lang].format(**fields) for lang in langs)


def width(value: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in value)


def _pad(value: str, size: int) -> str:
    return value + " " * max(0, size - width(value))


def _hosts(hosts: list[str], langs: list[str]) -> str:
    if hosts == ["all"]:
        return text("all", langs, "/")
    if len(hosts) <= HOSTS_SHOWN:
        return ", ".join(hosts)
    more = text("more", langs, "/", count=len(hosts) - HOSTS_SHOWN)
    return ", ".join(hosts[:HOSTS_SHOWN]) + f" ({more})"


def group(problems: Iterable[Mapping[str, Any]]) -> list[tuple[list[str], Mapping[str, Any]]]:
    """Rows: problems with the same code, variable and text, with every host that has it."""
    rows: dict[tuple[str, ...], tuple[list[str], Mapping[str, Any]]] = {}
    for p in problems:
        key = tuple(str(p.get(k, "")) for k in ("code", "var", "en", "zh", "fix_en", "fix_zh"))
        hosts, _first = rows.setdefault(key, ([], p))
        for host in str(p.get("host", "")).split(", "):
            if host not in hosts:
                hosts.append(host)
    return [(["all"] if "all" in h else sorted(h), p) for h, p in rows.values()]


def table(problems: Iterable[Mapping[str, Any]], langs: list[str]) -> list[str]:
    rows = group(problems)
    cells = [(_hosts(hosts, langs), str(p.get("var", "")) or "-", p) for hosts, p in rows]
    host_w = min(HOST_WIDTH, max([width(text("host", langs))] + [width(c[0]) for c in cells]))
    var_w = min(VAR_WIDTH, max([width(text("var", langs))] + [width(c[1]) for c in cells]))
    indent = " " * (4 + host_w + 2 + var_w + 2)
    out = [
        _pad("", 4)
        + _pad(text("host", langs), host_w)
        + "  "
        + _pad(text("var", langs), var_w)
        + "  "
        + text("text", langs)
    ]
    for number, (host, var, p) in enumerate(cells, 1):
        lines = []
        for lang in langs:
            lines.append(str(p.get(lang, "")))
            lines.append("→ " + str(p.get(f"fix_{lang}", "")))
        lead = _pad(f"{number:>2}. ", 4)
        if width(host) > host_w or width(var) > var_w:
            out.append(lead + host)
            out.append(" " * 4 + _pad("", host_w) + "  " + var)
            out.extend(indent + line for line in lines)
        else:
            out.append(lead + _pad(host, host_w) + "  " + _pad(var, var_w) + "  " + lines[0])
            out.extend(indent + line for line in lines[1:])
    return out


def render(result: Mapping[str, Any], langs: list[str]) -> str:
    """The whole report: title, problem table, notices. Empty when there is nothing to say."""
    problems = list(result.get("problems") or [])
    notices = list(result.get("notices") or [])
    out: list[str] = []
    if problems:
        count = len(group(problems))
        out.extend(_TEXT["title_fail"][lang].format(count=count) for lang in langs)
        out.append("")
        out.extend(table(problems, langs))
    if notices:
        if out:
            out.append("")
        out.append(text("title_notice", langs, " "))
        out.extend(table(notices, langs))
    return "\n".join(out)
