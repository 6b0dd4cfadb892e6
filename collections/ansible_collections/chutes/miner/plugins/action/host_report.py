# Copyright: chutes.miner developers
# MIT License
"""Action ``chutes.miner.host_report``: one report for all hosts of a play, printed once.

A role that reports a result per host (a table, a list of failures) runs this once
(``run_once: true``) with every host's text; hosts with the same text share one block headed by
their names, the whole written straight to the terminal (not through the stdout callback, so
the YAML and JSON result formats print it the same and never wrap it). With ``fail`` it then
fails with a one-line summary. The report is not part of the result: a failed result is
printed by ansible-core (twice), which would print the report again.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

HOSTS_SHOWN = 8


def group(texts: dict[str, str]) -> list[tuple[list[str], str]]:
    """(hosts, text) per distinct text, in the order of the first host that has it."""
    out: dict[str, list[str]] = {}
    for host, text in texts.items():
        if text:
            out.setdefault(text, []).append(host)
    return [(sorted(hosts), text) for text, hosts in out.items()]


def hosts_line(hosts: list[str]) -> str:
    shown = ", ".join(hosts[:HOSTS_SHOWN])
    more = len(hosts) - HOSTS_SHOWN
    return shown + (f" (+{more} / 另 {more} 台)" if more > 0 else "")


def render(title: str, texts: dict[str, str]) -> str:
    lines = [title] if title else []
    for hosts, text in group(texts):
        lines.append("")
        lines.append(f"[{len(hosts)}] {hosts_line(hosts)}")
        lines.extend("    " + line for line in text.splitlines())
    return "\n".join(lines)


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("texts", "title", "fail", "msg"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        outcome: dict[str, Any] = super().run(tmp, task_vars)
        outcome["changed"] = False
        raw = self._task.args.get("texts")
        texts = {str(h): str(t or "") for h, t in raw.items()} if isinstance(raw, dict) else {}
        report = render(str(self._task.args.get("title") or ""), texts)
        if any(texts.values()):
            display.display(report)
        outcome["msg"] = str(self._task.args.get("msg") or "")
        if self._task.args.get("fail") and any(texts.values()):
            outcome["failed"] = True
        return outcome
