"""What the operator reads for every rule case: the full English and Chinese text of each problem
and notice, compared with golden/messages.json, and checked for the right language and no
missing values.

test_inventory_rules.py proves which problems each case raises; this file proves what they say
(the value shown, the variable named, the default noted). Regenerate the golden file after an
intended wording change with ``UPDATE_GOLDEN=1 pytest tests/inventory/test_inventory_messages.py``
and review the diff; a run that rewrites it fails.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.inventory.conftest import check, upstream, valid
from tests.inventory.test_inventory_rules import CASES, _run

GOLDEN = Path(__file__).parent / "golden" / "messages.json"
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
# A value the code failed to fill in, or a mutation testing marker.
MISSING = re.compile(r"\bNone\b|XX|\{[a-z_]+\}")


def _narrow_nodeports() -> Any:
    """A cluster whose NodePort range leaves out the default API port (32000)."""
    return check(valid(), nodeport_range=(30000, 31000))


# Beyond the rule cases: the upstream format (notices and the variables it maps, in `changes`)
# and a NodePort range other than Kubernetes' default.
EXTRA = {"upstream-format": lambda: check(upstream()), "nodeport-range": _narrow_nodeports}


def messages() -> dict[str, dict[str, list[Any]]]:
    out: dict[str, dict[str, list[Any]]] = {}
    for case in CASES:
        inv = valid()
        case.mutate(inv)
        result = _run(inv)
        out[case.id] = {
            "problems": [p.as_dict() for p in result.problems],
            "notices": [p.as_dict() for p in result.notices],
        }
    for name, run in EXTRA.items():
        result = run()
        out[name] = {
            "problems": [p.as_dict() for p in result.problems],
            "notices": [p.as_dict() for p in result.notices],
            "changes": result.changes,
        }
    return out


@pytest.fixture(scope="module")
def current() -> dict[str, dict[str, list[Any]]]:
    return messages()


def test_messages_match_golden(current: dict[str, Any]) -> None:
    text = json.dumps(current, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
        # Regenerating is never a pass: review the diff, then rerun without it.
        pytest.fail(f"{GOLDEN} rewritten; review `git diff {GOLDEN}`, rerun without it")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert sorted(current) == sorted(golden), "set of cases changed: regenerate the golden file"
    for case_id, found in current.items():
        assert found == golden[case_id], case_id


@pytest.mark.parametrize("case", [c.id for c in CASES] + list(EXTRA))
def test_each_language_is_complete(case: str, current: dict[str, Any]) -> None:
    for item in current[case]["problems"] + current[case]["notices"]:
        for field in ("en", "fix_en"):
            assert item[field] and not CJK.search(item[field]), (field, item)
        for field in ("zh", "fix_zh"):
            assert CJK.search(item[field]), (field, item)
        for field in ("en", "zh", "fix_en", "fix_zh", "var", "host"):
            assert not MISSING.search(item[field]), (field, item)
