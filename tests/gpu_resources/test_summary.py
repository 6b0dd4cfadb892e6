"""playbooks/summary.yml's GPU table: per GPU node the driver, CUDA version, GPU count, model
and memory (from a stand-in nvidia-smi on PATH, this machine being the "GPU node"), the
fabric manager's state, and the GPUs Kubernetes may allocate there (a real API server)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.gpu_resources.conftest import REPO, set_gpus
from tests.k8s.controlplane import ControlPlane

STANDINS = Path(__file__).resolve().parent / "standins"


def test_summary_prints_each_gpu_node(cluster: ControlPlane, tmp_path: Path) -> None:
    set_gpus(cluster, "gpu-0", 2)
    inventory = {
        "all": {
            "children": {
                "chutes_primary": {"hosts": {"cpu-0": {"ansible_connection": "local"}}},
                "chutes_gpu": {"hosts": {"gpu-0": {"ansible_connection": "local"}}},
                "chutes_workers": {"children": {"chutes_gpu": {}}},
            }
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    kubectl_dir = cluster.bin_dir
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp_path / "inventory.yml"),
            "-e",
            json.dumps(
                {
                    "ansible_python_interpreter": sys.executable,
                    "chutes_kubeconfig": str(cluster.kubeconfig),
                }
            ),
            str(REPO / "playbooks" / "summary.yml"),
        ],
        cwd=REPO,
        env={
            **os.environ,
            "PATH": f"{STANDINS}:{kubectl_dir}:{os.environ['PATH']}",
            "ANSIBLE_NOCOLOR": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    header = next(line for line in out.splitlines() if "FABRICMANAGER" in line)
    assert header.split()[:4] == ["NODE", "DRIVER", "CUDA", "GPUS"]
    row = next(line for line in out.splitlines() if re.match(r"\s*gpu-0\s+580", line))
    assert re.search(r"gpu-0\s+580\.95\.05\s+13\.0\s+2\s+NVIDIA H200\s+143771 MiB\s+2\s+", row), row
    assert row.rstrip().endswith(("not installed", "inactive")), row
