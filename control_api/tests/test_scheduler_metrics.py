"""The scheduler process serves Prometheus on METRICS_PORT from the start (its Deployment's
probes use it), while it still waits for the database."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ServiceEnv
from tests.standins import free_port


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local http
        return response.status, response.read().decode()


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: unused}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_scheduler_serves_metrics_before_the_schema_exists(
    service_env: ServiceEnv, fresh_db: Callable[[], str], tmp_path: Path
) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)  # read at startup, never called before the schema exists
    # An empty database: the scheduler waits for the migrations, its metrics answer meanwhile.
    env = service_env(
        POSTGRESQL=fresh_db(),
        KUBECONFIG=str(kubeconfig),
        METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
        PATH="/usr/bin:/bin",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_api", "scheduler"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, answer = time.monotonic() + 30, None
        while answer is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = _get(f"http://127.0.0.1:{port}/metrics")
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0]
        assert answer is not None and answer[0] == 200
        assert "python_info" in answer[1]
        time.sleep(1)
        assert proc.poll() is None, proc.communicate()[0]  # still waiting for the schema
    finally:
        proc.kill()
        proc.communicate()
