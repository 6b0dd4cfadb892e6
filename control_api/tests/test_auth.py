"""Every inbound auth failure mode is a fixed 401 (never 500, never the signing string)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import psycopg2.extensions
import pytest
import redis
from bittensor_wallet import Keypair
from control_api.clients.events import EventPublisher
from control_api.main import create_app
from control_api.services.auth import AuthError, check_headers
from control_api.services.signing import body_hash, d1_headers

from tests.conftest import Api, LiveServer, SettingsFactory
from tests.test_routes import seed_inventory


def _check(key: Keypair, headers: dict[str, str], now: int) -> None:
    check_headers(
        headers,
        x="management",
        miner_ss58=key.ss58_address,
        allowed_signers=frozenset({key.ss58_address}),
        now=now,
    )


@pytest.mark.parametrize(
    ("age", "ok"),
    [(0, True), (29, True), (30, False), (-29, True), (-30, False), (3600, False), (-3600, False)],
)
def test_nonce_window(miner_key: Keypair, age: int, ok: bool) -> None:
    now = int(time.time())
    headers = d1_headers(miner_key, "management", nonce=now - age)
    if ok:
        _check(miner_key, headers, now)
    else:
        with pytest.raises(AuthError, match="window"):
            _check(miner_key, headers, now)


def test_bytes_wrapped_signature_accepted(miner_key: Keypair) -> None:
    now = int(time.time())
    me = miner_key.ss58_address
    msg = f"{me}:{me}:{now}:management".encode()
    sig = miner_key.sign(b"<Bytes>" + msg + b"</Bytes>").hex()
    headers = {
        "X-Chutes-Miner": me,
        "X-Chutes-Validator": me,
        "X-Chutes-Nonce": str(now),
        "X-Chutes-Signature": sig,
    }
    _check(miner_key, headers, now)


def _variants(key: Keypair, other: Keypair) -> dict[str, dict[str, str]]:
    good = d1_headers(key, "management")
    sig = good["X-Chutes-Signature"]
    out = {
        "missing": {k: v for k, v in good.items() if k != "X-Chutes-Signature"},
        "empty": {**good, "X-Chutes-Nonce": ""},
        "nonce-text": {**good, "X-Chutes-Nonce": "abc"},
        "nonce-huge": {**good, "X-Chutes-Nonce": "9" * 40},
        "nonce-negative": {**good, "X-Chutes-Nonce": "-5"},
        "sig-0x": {**good, "X-Chutes-Signature": "0x" + sig[2:]},
        "sig-nonhex": {**good, "X-Chutes-Signature": "zz" + sig[2:]},
        "sig-short": {**good, "X-Chutes-Signature": sig[:-2]},
        "sig-wrong": {**good, "X-Chutes-Signature": "00" * 64},
        "miner-other": {**good, "X-Chutes-Miner": other.ss58_address},
        "signer-bad-ss58": {**good, "X-Chutes-Validator": "not-an-ss58"},
        "signer-other": d1_headers(other, "management"),
        "stale": d1_headers(key, "management", nonce=int(time.time()) - 31),
        "future": d1_headers(key, "management", nonce=int(time.time()) + 31),
        "wrong-purpose": d1_headers(key, "kubeconfig"),
    }
    return out


def test_failures_are_fixed_401(api: Api, validator_key: Keypair) -> None:
    for name, headers in _variants(api.signer, validator_key).items():
        resp = api.http.get("/servers/", headers=headers)
        assert resp.status_code == 401, name
        assert resp.json() == {"detail": "unauthorized"}, name
        assert api.signer.ss58_address not in resp.text


def test_replay_rejected_but_same_second_requests_pass(api: Api) -> None:
    headers = api.headers()
    assert api.http.get("/servers/", headers=headers).status_code == 200
    assert api.http.get("/servers/", headers=headers).status_code == 401
    # preflight and DELETE in the same second: same nonce, different signatures (randomized)
    nonce = int(time.time())
    a = d1_headers(api.signer, "management", nonce=nonce)
    b = d1_headers(api.signer, "management", nonce=nonce)
    assert api.http.get("/servers/", headers=a).status_code == 200
    assert api.http.get("/servers/", headers=b).status_code == 200


def test_bad_auth_wins_over_bad_body(api: Api) -> None:
    resp = api.http.post("/servers/", content=b"{not json", headers={"X-Chutes-Nonce": "1"})
    assert resp.status_code == 401
    body = b"{not json"
    assert (
        api.http.post("/servers/", content=body, headers=api.headers(body=body)).status_code == 422
    )
    body = json.dumps(
        {"name": "n", "validator": "v", "hourly_cost": -1, "gpu_short_ref": "h200"}
    ).encode()
    assert (
        api.http.post("/servers/", content=body, headers=api.headers(body=body)).status_code == 422
    )


AUTHENTICATED = [
    ("GET", "/servers/", "management"),
    ("POST", "/servers/", "body"),
    ("GET", "/servers/node-0/lock", "management"),
    ("GET", "/servers/node-0/unlock", "management"),
    ("GET", "/servers/node-0/delete_preflight", "management"),
    ("DELETE", "/servers/node-0", "management"),
    ("DELETE", "/servers/node-0/deployments", "management"),
    ("DELETE", "/deployments/purge", "management"),
    ("DELETE", "/deployments/00000000-0000-4000-8000-000000000000", "management"),
    ("GET", "/servers/kubeconfig", "kubeconfig"),
]


def test_redis_down_is_503(make_settings: SettingsFactory, miner_key: Keypair, db: object) -> None:
    """Every authenticated route: no replay cache, no request (§1.3 step 7)."""
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    from tests.standins import StandinKube

    app = create_app(settings, kube=StandinKube(devices_url="http://127.0.0.1:1"))
    body = b'{"name": "gpu-0", "validator": "v", "hourly_cost": 1, "gpu_short_ref": "h200"}'
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=10) as http:
        for method, path, purpose in AUTHENTICATED:
            content = body if purpose == "body" else None
            x = body_hash(body) if purpose == "body" else purpose
            resp = http.request(method, path, content=content, headers=d1_headers(miner_key, x))
            assert resp.status_code == 503, (method, path)
        assert http.get("/ping").status_code == 200


def test_event_bus_down_after_auth_is_503(api: Api, db: psycopg2.extensions.connection) -> None:
    """Redis lost between the replay check and the publish: 503, never 500, nothing done."""
    seed_inventory(db, api.validator.hotkey, servers=1)
    res = api.app.state.res
    res.events = EventPublisher(redis.Redis(port=1, socket_connect_timeout=1), api.prefix)
    for path in (
        "/servers/node-0",
        "/servers/node-0/deployments",
        "/deployments/purge",
        f"/deployments/{api.get('/servers/').json()[0]['deployments'][0]['deployment_id']}",
    ):
        resp = api.delete(path)
        assert resp.status_code == 503, path
        assert resp.json() == {"detail": "event bus unavailable"}


def test_substrate_interface_signatures_verify(api: Api, tmp_path: Path, cli_venv: Path) -> None:
    """Cross-library vector: the CLI's own sign_request (substrate-interface) against us."""
    cli_python = cli_venv / "bin" / "python"
    hotkey = tmp_path / "hotkey.json"
    seed = "0x" + os.urandom(32).hex()
    script = (
        "import json,sys;from substrateinterface import Keypair;"
        f"k=Keypair.create_from_seed('{seed}');"
        "print(k.ss58_address)"
    )
    ss58 = subprocess.run(
        [cli_python, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    hotkey.write_text(json.dumps({"ss58Address": ss58, "secretSeed": seed}))
    sign = (
        "import json,sys;from chutes_miner_cli.util import sign_request;"
        f"h,_=sign_request('{hotkey}',purpose='management');print(json.dumps(h))"
    )
    headers = json.loads(
        subprocess.run([cli_python, "-c", sign], capture_output=True, text=True, check=True).stdout
    )
    now = int(time.time())
    check_headers(
        headers, x="management", miner_ss58=ss58, allowed_signers=frozenset({ss58}), now=now
    )
