"""Golden-file render tests: every file the role writes, per platform and profile.

Lab nodes are Debian 12 only; Ubuntu 22.04/24.04 outputs are proven here.
Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/mirrors/test_render.py``
and review the diff.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible_collections.chutes.miner.plugins.module_utils import mirrors as m
from ansible_collections.chutes.miner.plugins.module_utils import mirrors_common, mirrors_files
from ansible_collections.chutes.miner.plugins.module_utils.mirrors_plan import (
    PlanRequest,
    build_plan,
)

from tests.mirrors.conftest import ROLE
from tests.mirrors.hosts import HOSTS

GOLDEN = Path(__file__).parent / "golden"
LAB_CUSTOM = {
    "apt": [
        {
            "url": "http://lab-mirror:3142/debian/",
            "security_url": "http://lab-mirror:3142/debian-security/",
        }
    ],
    "pypi": ["http://lab-mirror:8081/simple/"],
    "registries": {
        "docker.io": ["http://lab-mirror:5000"],
        "registry.k8s.io": ["http://lab-mirror:5000"],
    },
    "ntp": ["lab-mirror"],
    "dns": ["10.89.0.2"],
}
CASES: dict[str, dict[str, Any]] = {
    "debian12-ustc": {"host": "debian12", "profile": "ustc"},
    "debian12-custom-lab": {"host": "debian12", "profile": "custom", "custom": LAB_CUSTOM},
    "ubuntu2204-tuna": {"host": "ubuntu2204", "profile": "tuna"},
    "ubuntu2404-aliyun-cuda": {
        "host": "ubuntu2404",
        "profile": "aliyun",
        "overrides": {"cuda_apt": {"enabled": True}},
    },
    "ubuntu2404-arm64-huawei": {"host": "ubuntu2404_arm64", "profile": "huawei"},
    # CUDA and the container toolkit repo together: the toolkit's packages pinned to its repo
    "ubuntu2204-ustc-nvidia": {
        "host": "ubuntu2204",
        "profile": "ustc",
        "overrides": {"cuda_apt": {"enabled": True}, "nct_apt": {"enabled": True}},
    },
    "ubuntu2404-arm64-tuna-toolkit": {
        "host": "ubuntu2404_arm64",
        "profile": "tuna",
        "overrides": {"nct_apt": {"enabled": True}},
    },
    "ubuntu2404-tencent-digests": {
        "host": "ubuntu2404",
        "profile": "tencent",
        "digests": True,
        "overrides": {
            "registries": {"upstream_fallback": False},
            "apt": {"security": "upstream", "backports": False},
        },
    },
}


def render_case(
    case: dict[str, Any], catalog: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, str]:
    host = HOSTS[case["host"]]
    plan = build_plan(
        PlanRequest(
            catalog["__mirrors_catalog"],
            profiles=catalog["__mirrors_profiles"],
            upstream=catalog["__mirrors_upstream"],
            defaults=defaults,
            profile=case["profile"],
            overrides=case.get("overrides", {}),
            custom=case.get("custom", {}),
            host=host,
            require_digests=case.get("digests", False),
        )
    )
    assert plan["errors"] == []
    results = [
        {"key": s["key"], "healthy": True, "status": "HTTP 200", "latency_ms": 1}
        for s in plan["probes"]
    ]
    selection = m.select(plan, results)
    effective = m.effective(plan, selection)
    files = mirrors_files.files_plan(plan, selection)
    out: dict[str, str] = {}
    for item in files["write"]:
        if not item["src"]:
            continue
        variables = {
            "ansible_facts": {
                "distribution": host["distribution"],
                "distribution_release": host["codename"],
            },
            "mirrors_effective": effective,
            "mirrors_state_dir": "/var/lib/chutes-miner/mirrors",
            "mirrors_require_digests": case.get("digests", False),
            "__mirrors_plan": plan,
            "__mirrors_selection": selection,
            "__mirrors_marker": mirrors_common.MARKER,
            "item": item,
        }
        source = (ROLE / "templates" / item["src"]).read_text()
        text = Templar(loader=DataLoader(), variables=variables).template(trust_as_template(source))
        out[item["dest"]] = str(text).rstrip("\n") + "\n"
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_render_matches_golden(
    name: str, catalog: dict[str, Any], resource_defaults: dict[str, Any]
) -> None:
    rendered = render_case(CASES[name], catalog, resource_defaults)
    base = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(base, ignore_errors=True)
        for dest, text in rendered.items():
            target = base / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        # Regenerating is never a pass: review the diff, then rerun without it.
        pytest.fail(f"{name}: golden files rewritten; review `git diff {base}`, rerun without it")
    expected = {
        "/" + str(p.relative_to(base)): p.read_text()
        for p in sorted(base.rglob("*"))
        if p.is_file()
    }
    assert sorted(rendered) == sorted(expected), "set of written files changed"
    for dest, text in rendered.items():
        assert text == expected[dest], f"{name}: {dest} differs from golden"


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_written_file_carries_the_marker(
    name: str, catalog: dict[str, Any], resource_defaults: dict[str, Any]
) -> None:
    for dest, text in render_case(CASES[name], catalog, resource_defaults).items():
        assert mirrors_common.MARKER in text[:4096], dest
        assert "{{" not in text and "{%" not in text, dest
