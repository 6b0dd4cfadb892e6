"""The mirrors role's probe report through ansible-playbook: one copy for all hosts.

Sixty local hosts stand in for a cluster; each carries the facts probe.yml leaves
(its probe table, its failure table, its failed resources) in one of two variants. The
report tasks (roles/mirrors/tasks/report.yml) must print each distinct table once, headed by
its hosts, with and without the repository's ansible.cfg, and stop the play with one one-line
message when one has no healthy mirror (a debug and a fail per host printed 60 and 120
copies).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOSTS = [f"gpu-{i:02d}" for i in range(60)]
GOOD = "resource  candidate  status\\napt  mirrors.tuna  ok *\\npypi  mirrors.tuna  ok *"
BAD = "resource  candidate  status\\napt  mirror-a:8403  HTTP 403\\napt  mirror-b:8408  timeout"


def _run(
    tmp_path: Path, *, failing: set[str], repo_config: bool
) -> subprocess.CompletedProcess[str]:
    lines = ["[nodes]"]
    for host in HOSTS:
        bad = host in failing
        lines.append(
            f"{host} ansible_connection=local ansible_python_interpreter={sys.executable}"
            f" table_kind={'bad' if bad else 'good'}"
        )
    (tmp_path / "hosts").write_text("\n".join(lines) + "\n")
    (tmp_path / "play.yml").write_text(
        f"""\
- hosts: nodes
  gather_facts: false
  tasks:
    - ansible.builtin.set_fact:
        __mirrors_probe_table: "{{{{ 'probe mode: full, 12 ms\\n' ~ ('{BAD}' if table_kind == 'bad'
          else '{GOOD}') }}}}"
        __mirrors_failure: "{{{{ '{BAD}' if table_kind == 'bad' else '' }}}}"
        __mirrors_fail_text: "{{{{ 'apt (HTTP 403, timeout)' if table_kind == 'bad' else '' }}}}"
    - ansible.builtin.include_role:
        name: chutes.miner.mirrors
        tasks_from: report
    - name: After the report
      ansible.builtin.set_fact:
        after_report: true
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORKS="10", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))  # fmt: skip
    if repo_config:
        env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts"),
         str(tmp_path / "play.yml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("repo_config", [True, False], ids=["repo-cfg", "no-cfg"])
def test_probe_tables_print_once_for_all_hosts(tmp_path: Path, repo_config: bool) -> None:
    proc = _run(tmp_path, failing=set(), repo_config=repo_config)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.count("apt  mirrors.tuna  ok *") == 1
    assert proc.stdout.count("镜像探测结果") == 1
    assert "TASK [After the report]" in proc.stdout
    assert (
        "[60] gpu-00, gpu-01, gpu-02, gpu-03, gpu-04, gpu-05, gpu-06, gpu-07 (+52 / 另 52 台)"
        in proc.stdout
    )


def test_no_healthy_mirror_one_table_every_host_stops(tmp_path: Path) -> None:
    failing = {"gpu-03", "gpu-41"}
    proc = _run(tmp_path, failing=failing, repo_config=False)
    out = proc.stdout
    assert proc.returncode == 2, out[-3000:] + proc.stderr[-2000:]
    assert (
        out.count("apt  mirror-a:8403  HTTP 403") == 2
    )  # the probe table and the failure, once each
    assert out.count("[2] gpu-03, gpu-41") == 2 and out.count("[58] ") == 1
    assert out.count("没有可用的镜像，未做任何更改") == 1
    assert "no healthy mirror for apt (HTTP 403, timeout), table above" in out
    assert out.count("fatal: ") == 1  # one short line for the run, not one table per host
    assert "TASK [After the report]" not in out  # no host goes on after the report
