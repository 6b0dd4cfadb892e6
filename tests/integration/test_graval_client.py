"""The API's GraVal client against the real bootstrap app (graval/), over HTTP.

The bootstrap is started the way its container starts it (`graval_bootstrap.__main__.run`)
from the environment the API writes into the bootstrap Job, with graval's own stand-in for
`graval.Miner` (graval/tests/conftest.py: no GPU needed) and served by uvicorn on a free port.
Nothing here shares code between the two sides: the API signs with its own code, the bootstrap
verifies with its own, and the validator's part (the proof challenge) is signed by hand from
the runtime contract.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn
from bittensor_wallet import Keypair
from control_api.clients.graval import GravalError, HttpGravalClient
from control_api.clients.k8s import GravalSpec, RealKubeClient, build_kubeconfig
from control_api.schemas.nodes import DeviceInfo
from graval_bootstrap.__main__ import run as bootstrap_run
from graval_bootstrap.gpu import MinerBackend

from tests.ansible_env import REPO

MINER = Keypair.create_from_uri("//IntegrationMiner")
VALIDATOR = Keypair.create_from_uri("//IntegrationValidator")
OUTSIDER = Keypair.create_from_uri("//IntegrationOutsider")
GPUS = 2


def graval_standins() -> ModuleType:
    """graval/tests/conftest.py as a plain module: its FakeMiner and fake_encrypt."""
    path = REPO / "graval" / "tests" / "conftest.py"
    spec = importlib.util.spec_from_file_location("graval_bootstrap_standins", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STANDINS = graval_standins()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_job_container(tmp_path: Path) -> Any:
    """The bootstrap container exactly as the API's Kubernetes client renders it."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            build_kubeconfig(
                server="https://127.0.0.1:1",
                ca_pem=None,
                namespace="chutes",
                user="test",
                token="unused",
            )
        )
    )
    spec = GravalSpec(
        node="gpu-0",
        nice="gpu-0",
        image="graval-bootstrap:test",
        validator=VALIDATOR.ss58_address,
        miner_ss58=MINER.ss58_address,
        gpu_count=GPUS,
        cpu=8,
        memory_gi=32,
        remote_token_hosts="api.chutes.test",
        runtime_class="nvidia",
    )
    client = RealKubeClient("chutes", kubeconfig=str(kubeconfig))
    _service, job = client._graval_objects(spec)  # the objects create_graval sends
    return job.spec.template.spec.containers[0]


@dataclass
class Bootstrap:
    url: str
    probe_path: str
    miner: Any  # graval's FakeMiner


@pytest.fixture()
def bootstrap(tmp_path: Path) -> Iterator[Bootstrap]:
    container = api_job_container(tmp_path)
    port = free_port()
    env = {e.name: e.value for e in container.env}
    env |= {
        "HOST": "127.0.0.1",
        "PORT": str(port),  # the Job's 8000 would collide between test workers
        "TERMINATION_LOG_PATH": str(tmp_path / "termination-log"),
    }
    miner = STANDINS.FakeMiner(GPUS)
    served: dict[str, Any] = {}

    def serve(app: Any, **kwargs: Any) -> None:
        served["app"], served["kwargs"] = app, kwargs

    code = bootstrap_run(env, open_backend=lambda _n: MinerBackend(miner), serve=serve)
    assert code == 0, (tmp_path / "termination-log").read_text()
    assert served["kwargs"]["host"] == "127.0.0.1" and served["kwargs"]["port"] == port
    config = uvicorn.Config(
        served["app"], host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "bootstrap did not start"
        time.sleep(0.02)
    probe = container.readiness_probe.http_get
    assert probe.port == container.ports[0].container_port == 8000
    yield Bootstrap(f"http://127.0.0.1:{port}", probe.path, miner)
    server.should_exit = True
    thread.join(10)


def validator_d1(body: bytes, purpose: str | None = None) -> dict[str, str]:
    """A whitelisted validator's D1 headers for a body (or a purpose), built from the contract
    by hand."""
    nonce = str(int(time.time()))
    x = hashlib.sha256(body).hexdigest() if purpose is None else purpose
    me = VALIDATOR.ss58_address
    signature = VALIDATOR.sign(f"{MINER.ss58_address}:{me}:{nonce}:{x}".encode()).hex()
    return {
        "X-Chutes-Miner": MINER.ss58_address,
        "X-Chutes-Validator": me,
        "X-Chutes-Nonce": nonce,
        "X-Chutes-Signature": signature,
        "Content-Type": "application/json",
    }


def test_readiness_probe_path_answers(bootstrap: Bootstrap) -> None:
    r = httpx.get(bootstrap.url + bootstrap.probe_path, trust_env=False)
    assert (r.status_code, r.text) == (200, "pong")


def test_api_client_reads_devices_then_a_validator_proves_them(bootstrap: Bootstrap) -> None:
    client = HttpGravalClient(MINER, tries=1, pause_s=0)
    devices = client.devices(bootstrap.url)
    expected = [STANDINS.FakeMiner.uuid(i) for i in range(GPUS)]
    assert [d.uuid for d in devices] == expected
    assert all(d.name == "NVIDIA H200" and d.memory > 0 for d in devices)
    # Twice in the same second: sr25519 signatures are randomised, the replay cache lets it be.
    assert [d.uuid for d in client.devices(bootstrap.url)] == expected

    # What the API registers is what the validator challenges: one ciphertext per uuid.
    registered = [d.model_dump() for d in devices]
    seed = 42
    secrets = {d["uuid"]: f"secret-{d['uuid'][:6]}" for d in registered}
    body = json.dumps(
        {
            "seed": seed,
            "iterations": 1,
            "ciphertext": {u: STANDINS.fake_encrypt(seed, u, s) for u, s in secrets.items()},
        }
    ).encode()
    r = httpx.post(
        bootstrap.url + "/prove", content=body, headers=validator_d1(body), trust_env=False
    )
    assert r.status_code == 200, r.text
    proof = r.json()
    assert proof["seed"] == seed and proof["plaintext"] == secrets
    assert sorted(proof["proof"]) == sorted(secrets)
    # The bootstrap's device infos parse with the API's schema into what the API registered.
    assert [DeviceInfo.model_validate(d).model_dump() for d in proof["devices"]] == registered
    assert bootstrap.miner.prove_calls == 1


def test_api_client_with_another_key_is_refused(bootstrap: Bootstrap) -> None:
    with pytest.raises(GravalError, match="bootstrap answered 401"):
        HttpGravalClient(OUTSIDER, tries=1, pause_s=0).devices(bootstrap.url)
    with pytest.raises(GravalError, match="bootstrap unreachable"):
        HttpGravalClient(MINER, tries=1, pause_s=0).devices(f"http://127.0.0.1:{free_port()}")


def test_miner_key_cannot_prove_and_a_validator_cannot_read_devices(bootstrap: Bootstrap) -> None:
    body = json.dumps({"seed": 1}).encode()
    headers = validator_d1(body)
    miner_signed = {**headers, "X-Chutes-Validator": MINER.ss58_address}
    x = hashlib.sha256(body).hexdigest()
    n, m = headers["X-Chutes-Nonce"], MINER.ss58_address
    miner_signed["X-Chutes-Signature"] = MINER.sign(f"{m}:{m}:{n}:{x}".encode()).hex()
    r = httpx.post(bootstrap.url + "/prove", content=body, headers=miner_signed, trust_env=False)
    assert r.status_code == 401  # /prove takes whitelisted validators only
    forged = dict(validator_d1(body))
    forged["X-Chutes-Signature"] = base64.b16encode(OUTSIDER.sign(b"x")).decode().lower()
    r = httpx.post(bootstrap.url + "/prove", content=body, headers=forged, trust_env=False)
    assert r.status_code == 401
    assert bootstrap.miner.prove_calls == 0
    devices = httpx.get(
        bootstrap.url + "/devices", headers=validator_d1(b"", "graval"), trust_env=False
    )
    assert devices.status_code == 401  # /devices takes the miner's own key only
