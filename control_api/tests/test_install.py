"""Installed as an operator installs it (issue #16 item 1): build the wheel, install it into a
fresh venv, and run the migrate command and the API from there, outside the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg2

from tests.conftest import ServiceEnv
from tests.standins import free_port

PROJECT = Path(__file__).resolve().parents[1]


def _wheel(tmp_path: Path) -> Path:
    """`pip wheel` of a copy of the project (the build writes egg-info and build/ beside it)."""
    src = tmp_path / "project"
    shutil.copytree(
        PROJECT,
        src,
        ignore=shutil.ignore_patterns(
            "tests", "benchmarks", "*.egg-info", "__pycache__", "build", "dist", ".*"
        ),
    )
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("chutes_control_api-*.whl")
    return wheel


def _venv_with(wheel: Path, tmp_path: Path) -> Path:
    """A fresh venv holding the wheel; its dependencies come from this interpreter's
    site-packages through a .pth line (no index needed). That directory's own .pth files (the
    editable install of the source tree) are not processed, so `control_api` is the wheel's."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
        + ["--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return venv


def test_wheel_ships_migrations_and_runs_from_a_fresh_venv(
    tmp_path: Path, fresh_db: Callable[[], str], service_env: ServiceEnv
) -> None:
    wheel = _wheel(tmp_path)
    packaged = sorted(
        Path(n).name
        for n in zipfile.ZipFile(wheel).namelist()
        if n.startswith("control_api/migrations/")
    )
    source = sorted(p.name for p in (PROJECT / "src/control_api/migrations").glob("*.sql"))
    assert source and packaged == source

    venv = _venv_with(wheel, tmp_path)
    where = subprocess.run(
        [str(venv / "bin/python"), "-c", "import control_api; print(control_api.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert where.startswith(str(venv)), where  # not the source tree

    dsn = fresh_db()
    api_port = free_port()
    env = {**os.environ, **service_env(POSTGRESQL=dsn)}
    env |= {"API_HOST": "127.0.0.1", "API_PORT": str(api_port), "METRICS_PORT": "0"}
    env |= {"KUBERNETES_REQUIRED": "false", "CONTROL_API_MIGRATE": "false"}
    env.pop("CONTROL_API_MIGRATIONS", None)
    migrate = subprocess.run(
        [str(venv / "bin/python"), "-m", "control_api", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0, migrate.stderr
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM control_api_migrations")
        row = cur.fetchone()
    conn.close()
    assert row == (len(source) // 2,)

    log = tmp_path / "api.log"
    with open(log, "wb") as out:  # the console script, migrating again (a no-op) first
        proc = subprocess.Popen(
            [str(venv / "bin/control-api"), "api"],
            env=env | {"CONTROL_API_MIGRATE": "true"},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                resp = httpx.get(f"http://127.0.0.1:{api_port}/ping", timeout=1)
                if resp.json() == {"message": "pong"}:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
