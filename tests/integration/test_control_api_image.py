"""The control service image as the lab builds it (tests/lab/build-miner-images.sh, cached: a
no-op when current): a normal install of the built wheel, not an editable one, with its
migrations and the Kubernetes client, no pip or compiler, under 250 MB, and it migrates and
serves against this machine's PostgreSQL and Redis (tests/services.sh)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg2
import pytest
from control_api.core.signing import keypair_from_seed

from tests.ansible_env import REPO

BUILD = REPO / "tests" / "lab" / "build-miner-images.sh"
MIGRATIONS = sorted(p.name for p in (REPO / "control_api/src/control_api/migrations").glob("*.sql"))
SIZE_LIMIT = 250_000_000  # bytes, as podman counts them (issue 12: under 250 MB)

# Run inside the image: where control_api comes from and how it was installed.
PROBE = r"""
import importlib.metadata as md, importlib.resources as res, importlib.util, json, os, pathlib, sys
import control_api, kubernetes.client
# every native extension, after the build stripped them
import aiohttp, bittensor_wallet, httptools, orjson, psycopg2, pydantic_core, uvloop, yaml
dist = md.distribution("chutes-control-api")
site = pathlib.Path(control_api.__file__).parents[1]
print(json.dumps({
    "file": control_api.__file__,
    "direct_url": json.loads(dist.read_text("direct_url.json") or "null"),
    "migrations": sorted(p.name for p in res.files("control_api").joinpath("migrations").iterdir()
                         if p.name.endswith(".sql")),
    "kubernetes": kubernetes.__version__,
    "uid": os.getuid(),
    "pip": importlib.util.find_spec("pip") is not None,
    "pth": sorted(p.name for p in site.glob("*.pth")),
}))
"""


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], check=check, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def image() -> dict[str, object]:
    """The control_api entry of miner-images.json after a build (or none needed)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: the images need it (tests/lab/setup-host.sh)")
    built = subprocess.run(
        [str(BUILD), "control_api"], capture_output=True, text=True, timeout=1800, check=False
    )
    assert built.returncode == 0, built.stdout + built.stderr
    lab_dir = Path(os.environ.get("CHUTES_LAB_DIR", "/tmp/chutes-miner-lab"))
    entry: dict[str, object] = json.loads((lab_dir / "miner-images.json").read_text())["images"][
        "control_api"
    ]
    return entry


def test_help_lists_every_command(image: dict[str, object]) -> None:
    out = podman("run", "--rm", "--network", "none", str(image["local"]), "--help").stdout
    for command in ("api", "migrate", "registry-auth", "relay", "scheduler"):
        assert f"\n  {command} " in out, out


def test_a_normal_install_of_the_wheel(image: dict[str, object]) -> None:
    ref = str(image["local"])
    run = ["run", "--rm", "--network", "none", "--entrypoint", "python", ref, "-c", PROBE]
    found = json.loads(podman(*run).stdout)
    assert found["file"] == "/opt/venv/lib/python3.11/site-packages/control_api/__init__.py"
    # pip records how it installed: from a wheel file, and not as an editable project.
    direct = found["direct_url"]
    assert direct["url"].endswith(".whl") and "archive_info" in direct, direct
    assert not direct.get("dir_info", {}).get("editable"), direct
    assert not [p for p in found["pth"] if "editable" in p or "control" in p], found["pth"]
    assert found["migrations"] == MIGRATIONS
    assert found["kubernetes"].split(".")[0].isdigit()
    assert found["uid"] == 10001 and found["pip"] is False
    tools = podman("run", "--rm", "--network", "none", "--entrypoint", "sh", ref, "-c",
                   "for t in gcc cc c++ pip pip3; do command -v $t; done; true")  # fmt: skip
    assert tools.stdout == "", tools.stdout  # no compiler, no pip


def test_under_250_mb(image: dict[str, object]) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", str(image["local"])).stdout)
    assert size == image["size_bytes"] and size < SIZE_LIMIT, size


def _pgpass_password() -> str:
    for line in (Path.home() / ".pgpass").read_text().splitlines():
        host, port, _db, user, password = line.split(":", 4)
        if (host, port, user) == ("127.0.0.1", "5432", "postgres"):
            return password
    raise AssertionError("no 127.0.0.1:5432 postgres entry in ~/.pgpass: run tests/services.sh")


def _sql(database: str, sql: str) -> list[tuple[object, ...]]:
    """One statement, autocommitted (CREATE/DROP DATABASE need it), as root's ~/.pgpass allows."""
    conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture
def database() -> Iterator[str]:
    name = f"control_api_image_{uuid.uuid4().hex[:10]}"
    _sql("postgres", f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _sql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_migrates_and_serves(image: dict[str, object], database: str, tmp_path: Path) -> None:
    seed = secrets.token_hex(32)
    hotkey = keypair_from_seed(seed).ss58_address
    validator = keypair_from_seed(secrets.token_hex(32)).ss58_address
    port = _free_port()
    validators = {
        "defaultRegistry": "r",
        "defaultApi": "http://127.0.0.1:9",
        "supported": [
            {
                "hotkey": validator,
                "registry": "r",
                "api": "http://127.0.0.1:9",
                "socket": "http://127.0.0.1:9",
            }
        ],  # fmt: skip
    }
    env = {
        "POSTGRESQL": f"postgresql://postgres:{_pgpass_password()}@127.0.0.1:5432/{database}",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "MINER_SS58": hotkey,
        "MINER_SEED": seed,
        "VALIDATORS": json.dumps(validators),
        "REGISTRY_AUTH_TOKEN": secrets.token_hex(16),
        "KUBERNETES_REQUIRED": "false",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "METRICS_PORT": "0",
    }
    env_file = tmp_path / "env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    name = f"control-api-image-test-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "--network", "host", "--env-file", str(env_file),
           str(image["local"]), "api")  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).json() == {
                    "message": "pong"
                }:
                    break
            except httpx.HTTPError:
                pass
            running = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            if running != "true" or time.monotonic() > deadline:
                logs = podman("logs", name, check=False)
                pytest.fail(f"the API did not serve:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.2)
        rows = _sql(database, "SELECT count(*) FROM control_api_migrations")
        assert rows == [(len(MIGRATIONS) // 2,)]  # one row per up/down pair
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)
