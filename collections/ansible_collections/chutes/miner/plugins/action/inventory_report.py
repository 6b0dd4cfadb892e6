# Copyright: chutes.miner developers
# MIT License
"""Action ``chutes.miner.inventory_report``: print the validation report, fail on problems.

Runs on the controller only. The table goes straight to the terminal through Ansible's
display (not through the stdout callback), so it looks the same with the YAML, JSON or any
other result format; the task result holds a one-line summary in the chosen languages.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_report import (
    group,
    languages,
    render,
    text,
)

display = Display()


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("result", "lang"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        outcome: dict[str, Any] = super().run(tmp, task_vars)
        outcome["changed"] = False
        result = self._task.args.get("result")
        result = result if isinstance(result, dict) else {}
        langs = languages(self._task.args.get("lang"))
        report = render(result, langs)
        if report:
            display.display(report)
        problems = group(result.get("problems") or [])
        if problems:
            outcome.update(failed=True, msg=text("failed", langs, count=len(problems)))
        else:
            outcome["msg"] = text("passed", langs, hosts=len(result.get("hosts") or []))
        return outcome
