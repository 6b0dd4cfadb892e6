"""playbooks/microk8s-bundle.yml run for real on this machine (local connection), with a
STAND-IN `snap` first on PATH: the Snap Store cannot be reached here. The stand-in answers
`snap download` the way snapd does (NAME.snap and NAME.assert under --target-directory, with
--basename) and logs each call. What this proves: the files the play downloads, their order
and channel, a SHA256SUMS that matches the files and that the microk8s role's own bundle check
accepts, a rerun that downloads nothing and changes nothing, an interrupted download that
leaves no half snap behind, and bad inputs refused before any download. What it cannot prove:
that the real store serves these names (a machine outside China does)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.chutes.miner.plugins.module_utils import microk8s

from tests.ansible_env import REPO, ansible_env, run_playbook

PLAYBOOK = REPO / "playbooks" / "microk8s-bundle.yml"

STANDIN_SNAP = """#!/usr/bin/env python3
# STAND-IN for `snap download` (tests/microk8s/test_bundle_playbook.py): no Snap Store here.
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STANDIN_SNAP_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] != ["download"]:
    sys.exit("stand-in: only `snap download` is served")
name = args[1]
opts = dict(a[2:].split("=", 1) for a in args[2:] if a.startswith("--"))
if name == os.environ.get("STANDIN_SNAP_FAIL"):
    os.makedirs(opts["target-directory"], exist_ok=True)
    open(os.path.join(opts["target-directory"], opts["basename"] + ".snap"), "w").write("half")
    sys.exit("error: cannot download: connection reset")
base = os.path.join(opts["target-directory"], opts["basename"])
open(base + ".snap", "w").write(f"squashfs {name} {opts.get('channel', 'latest/stable')}\\n")
open(base + ".assert", "w").write(f"type: snap-revision\\nsnap-name: {name}\\nsnap-revision: 42\\n")
"""


@pytest.fixture()
def snap_bin(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    snap = bindir / "snap"
    snap.write_text(STANDIN_SNAP)
    snap.chmod(snap.stat().st_mode | stat.S_IXUSR)
    return bindir


def _run(
    tmp_path: Path, snap_bin: Path, variables: dict[str, object], fail: str = ""
) -> tuple[int, dict[str, Any]]:
    env = ansible_env(
        tmp_path,
        PATH=f"{snap_bin}:{os.environ['PATH']}",
        STANDIN_SNAP_LOG=str(tmp_path / "snap.log"),
        STANDIN_SNAP_FAIL=fail,
    )
    extra = {k: str(v) if isinstance(v, Path) else v for k, v in variables.items()}
    extra["ansible_python_interpreter"] = sys.executable
    rc, out = run_playbook(
        PLAYBOOK, Path("localhost,"), extra, "-c", "local", env=env, limit="localhost", timeout=300
    )
    start = out.find("{")
    assert start >= 0, out
    return rc, json.loads(out[start : out.rfind("}") + 1])


def _calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "snap.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _changed(report: dict[str, Any]) -> int:
    return int(report["stats"]["localhost"]["changed"])


def test_bundle_is_complete_checksummed_and_accepted_by_the_role(
    tmp_path: Path, snap_bin: Path
) -> None:
    out = tmp_path / "bundle"
    rc, report = _run(
        tmp_path, snap_bin, {"microk8s_channel": "1.34/stable", "microk8s_bundle_out": out}
    )
    assert rc == 0, report
    calls = _calls(tmp_path)
    assert [c[1] for c in calls] == ["snapd", "core22", "microk8s"]
    assert calls[2][2] == "--channel=1.34/stable" and not any("--channel" in a for a in calls[0])
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["SHA256SUMS"]
        + [f"{s}.{e}" for s in ("snapd", "core22", "microk8s") for e in ("snap", "assert")]
    )
    sums = microk8s.sha256sums((out / "SHA256SUMS").read_text())
    for name, digest in sums.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    plan = microk8s.bundle_files("1.34/stable", sums, {}, True)
    assert plan["problems"] == [] and len(plan["files"]) == 6

    rc, report = _run(
        tmp_path, snap_bin, {"microk8s_channel": "1.34/stable", "microk8s_bundle_out": out}
    )
    assert rc == 0 and _changed(report) == 0
    assert len(_calls(tmp_path)) == 3  # nothing downloaded again


def test_older_channel_takes_core20_and_snapd_can_be_left_out(
    tmp_path: Path, snap_bin: Path
) -> None:
    out = tmp_path / "bundle"
    variables = {
        "microk8s_channel": "1.33/stable",
        "microk8s_bundle_out": out,
        "microk8s_bundle_snapd": False,
    }
    rc, report = _run(tmp_path, snap_bin, variables)
    assert rc == 0, report
    assert [c[1] for c in _calls(tmp_path)] == ["core20", "microk8s"]
    assert set(microk8s.sha256sums((out / "SHA256SUMS").read_text())) == {
        "core20.snap",
        "core20.assert",
        "microk8s.snap",
        "microk8s.assert",
    }


def test_interrupted_download_leaves_no_half_snap_and_a_rerun_finishes(
    tmp_path: Path, snap_bin: Path
) -> None:
    out = tmp_path / "bundle"
    variables: dict[str, object] = {"microk8s_channel": "1.34/stable", "microk8s_bundle_out": out}
    rc, _ = _run(tmp_path, snap_bin, variables, fail="microk8s")
    assert rc != 0
    assert not (out / "microk8s.snap").exists() and not (out / "SHA256SUMS").exists()
    assert (out / "core22.snap").exists() and (out / "core22.assert").exists()
    rc, report = _run(tmp_path, snap_bin, variables)
    assert rc == 0, report
    assert [c[1] for c in _calls(tmp_path)][-1:] == ["microk8s"]
    assert [c[1] for c in _calls(tmp_path)].count("core22") == 1


@pytest.mark.parametrize(
    ("variables", "shown"),
    [
        ({"microk8s_channel": "latest/stable"}, "latest/stable"),
        ({"microk8s_channel": "1.34"}, "1.34"),
        ({"microk8s_bundle_out": "relative/dir"}, "relative/dir"),
    ],
)
def test_bad_inputs_download_nothing(
    tmp_path: Path, snap_bin: Path, variables: dict[str, str], shown: str
) -> None:
    merged = {"microk8s_channel": "1.34/stable", "microk8s_bundle_out": str(tmp_path / "b")}
    rc, report = _run(tmp_path, snap_bin, dict(merged | variables))
    assert rc != 0 and _calls(tmp_path) == []
    text = json.dumps(report, ensure_ascii=False)
    assert shown in text and "未下载任何内容" in text
    assert not (tmp_path / "b").exists()
