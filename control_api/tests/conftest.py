"""Fixtures: a fresh PostgreSQL database per xdist worker, unique Redis key prefixes per test,
a stand-in validator (HTTP + socket.io + /devices) and a live API under uvicorn; a real
Kubernetes API server per worker (`control_plane`, `cluster`: tests/kube_real.py)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
import redis
import uvicorn
from bittensor_wallet import Keypair
from control_api.clients.graval import HttpGravalClient
from control_api.core.config import Settings
from control_api.core.signing import body_hash, d1_headers, keypair_from_seed
from control_api.db.migrate import migrate
from control_api.guard import uvicorn_config
from control_api.main import create_app

from tests import kube_real
from tests.cli_venv import NoInterpreter, ensure_cli_venv
from tests.controlplane import ControlPlane, session_fixture
from tests.standins import StandinKube, StandinValidator, free_port

PG_ADMIN = os.environ.get("CONTROL_API_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CONTROL_API_TEST_REDIS", "redis://127.0.0.1:6379/0")
TOKEN = "test-registry-token-0123456789"


def _admin(sql: str) -> None:
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def dsn_for(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def fresh_db() -> Generator[Callable[[], str], None, None]:
    """Factory of empty databases with unique names, all dropped at the end of the session."""
    made: list[str] = []

    def make() -> str:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        name = f"control_api_test_{worker}_{uuid.uuid4().hex[:10]}"
        _admin(f'CREATE DATABASE "{name}"')
        made.append(name)
        return dsn_for(name)

    yield make
    for name in made:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_dsn(fresh_db: Callable[[], str]) -> str:
    dsn = fresh_db()
    migrate(dsn)
    return dsn


@pytest.fixture()
def db(database_dsn: str) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(database_dsn, options="-c TimeZone=UTC")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM gpus; DELETE FROM deployments; DELETE FROM deployment_audit;"
            " DELETE FROM servers; DELETE FROM chutes;"
        )
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def miner_seed() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="session")
def miner_key(miner_seed: str) -> Keypair:
    return keypair_from_seed(miner_seed)


@pytest.fixture(scope="session")
def validator_key() -> Keypair:
    return keypair_from_seed(secrets.token_hex(32))


@pytest.fixture(scope="session")
def validator(miner_key: Keypair, validator_key: Keypair) -> Iterator[StandinValidator]:
    v = StandinValidator(validator_key.ss58_address, miner_key.ss58_address).start()
    yield v
    v.stop()


@pytest.fixture()
def redis_prefix() -> Iterator[str]:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


SettingsFactory = Callable[..., Settings]


@pytest.fixture()
def make_settings(
    miner_key: Keypair,
    miner_seed: str,
    validator_key: Keypair,
    validator: StandinValidator,
    database_dsn: str,
) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        validator.state.__init__()  # type: ignore[misc]  # reset the stand-in between tests
        values: dict[str, Any] = {
            "miner_ss58": miner_key.ss58_address,
            "miner_seed": miner_seed,
            "validators": json.dumps(
                {
                    "defaultRegistry": "registry.example",
                    "defaultApi": validator.url,
                    "supported": [
                        {
                            "hotkey": validator_key.ss58_address,
                            "registry": "r.example",
                            "api": validator.url,
                            "socket": validator.url,
                        }
                    ],
                }
            ),
            "postgresql": database_dsn,
            "redis_url": REDIS_URL,
            "registry_auth_token": TOKEN,
            "sse_heartbeat_s": 0.5,
            "verification_poll_s": 0.05,
            "graval_bootstrap_timeout": 10,
        }
        values.update(overrides)
        return Settings(**values)

    return make


class LiveServer:
    """The app under uvicorn in a thread; with `settings`, configured exactly as
    `python -m control_api api` serves it (head limits and timeouts)."""

    def __init__(self, app: Any, settings: Settings | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if settings is not None:
            config = uvicorn_config(app, settings, "127.0.0.1", self.port)
        else:
            config = uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 15
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("API did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class Api:
    url: str
    http: httpx.Client
    kube: StandinKube
    validator: StandinValidator
    settings: Settings
    signer: Keypair
    prefix: str
    app: Any

    def headers(self, purpose: str = "management", body: bytes | None = None) -> dict[str, str]:
        return d1_headers(self.signer, body_hash(body) if body is not None else purpose)

    def get(self, path: str, purpose: str = "management") -> httpx.Response:
        return self.http.get(path, headers=self.headers(purpose))

    def delete(self, path: str) -> httpx.Response:
        return self.http.delete(path, headers=self.headers())


@contextmanager
def serve_api(
    settings: Settings, miner_key: Keypair, validator: StandinValidator, redis_prefix: str
) -> Iterator[Api]:
    """The API with a stand-in Kubernetes, served as in production, and a client for it."""
    kube = StandinKube(devices_url=validator.url)
    app = create_app(
        settings,
        kube=kube,
        graval=HttpGravalClient(miner_key, tries=2, pause_s=0.05),
        redis_prefix=redis_prefix,
    )
    with LiveServer(app, settings) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        yield Api(live.url, http, kube, validator, settings, miner_key, redis_prefix, app)


ApiFactory = Callable[..., AbstractContextManager[Api]]


@pytest.fixture()
def api_with(
    make_settings: SettingsFactory,
    miner_key: Keypair,
    validator: StandinValidator,
    redis_prefix: str,
    db: psycopg2.extensions.connection,
) -> ApiFactory:
    """`with api_with(**setting_overrides) as api:` on an emptied database."""
    return lambda **overrides: serve_api(
        make_settings(**overrides), miner_key, validator, redis_prefix
    )


@pytest.fixture()
def api(api_with: ApiFactory) -> Iterator[Api]:
    with api_with() as api:
        yield api


ServiceEnv = Callable[..., dict[str, str]]


@pytest.fixture()
def service_env(
    miner_key: Keypair, miner_seed: str, validator_key: Keypair, validator: StandinValidator
) -> ServiceEnv:
    """The environment (upstream names) of a `python -m control_api ...` process against the
    stand-in validator; keyword overrides win."""

    def make(**overrides: str) -> dict[str, str]:
        supported = {"hotkey": validator_key.ss58_address, "registry": "r"}
        supported |= {"api": validator.url, "socket": validator.url}
        validators = {"defaultRegistry": "r", "defaultApi": validator.url}
        env = {
            "MINER_SS58": miner_key.ss58_address,
            "MINER_SEED": miner_seed,
            "VALIDATORS": json.dumps({**validators, "supported": [supported]}),
            "POSTGRESQL": "postgresql://control_api@127.0.0.1:1/unused",
            "REDIS_URL": REDIS_URL,
            "REGISTRY_AUTH_TOKEN": TOKEN,
            # no Prometheus port unless a test asks: two processes of one test must not
            # both bind the default port (nor a developer's running service)
            "METRICS_PORT": "0",
        }
        return {**env, **overrides}

    return make


@dataclass
class Cli:
    """The real `chutes-miner` with a hotkey file for our miner key, against `url`."""

    venv: Path
    hotkey: Path
    url: str

    def __call__(self, *args: str, stdin: str = "y\n") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HOTKEY": str(self.hotkey), "MINER_API": self.url}
        env.pop("KUBECONFIG", None)
        return subprocess.run(
            [str(self.venv / "bin" / "chutes-miner"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            input=stdin,
        )


@pytest.fixture()
def cli_for(
    cli_venv: Path, miner_key: Keypair, miner_seed: str, tmp_path: Path
) -> Callable[[str], Cli]:
    hotkey = tmp_path / "hotkey.json"
    seed = "0x" + miner_seed.removeprefix("0x")
    hotkey.write_text(json.dumps({"ss58Address": miner_key.ss58_address, "secretSeed": seed}))
    return lambda url: Cli(cli_venv, hotkey, url)


@pytest.fixture(scope="session")
def cli_venv() -> Path:
    """Venv with the real chutes-miner CLI (tests/cli_venv.py); built once per machine."""
    try:
        return ensure_cli_venv()
    except NoInterpreter as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager, RBAC on, for this worker.
    tests/controlplane.py links to the launcher in the repository's tests/k8s/ (its README
    says what runs); it fails, never skips, without the binaries (`make k8s-bin`)."""
    yield from session_fixture()


@pytest.fixture(scope="session")
def cluster(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> kube_real.Cluster:
    """The namespace, RuntimeClass and control_api/k8s/rbac.yaml applied; a kubeconfig for
    the control service's ServiceAccount."""
    return kube_real.set_up(control_plane, tmp_path_factory.mktemp("k8s"))
