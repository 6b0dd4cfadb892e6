"""Every inbound auth failure mode is a fixed 401 (never 500, never the signing string)."""

from __future__ import annotations

import asyncio
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
from control_api.clients.events import EventPublisher, RedisReplayStore
from control_api.core.signing import body_hash, d1_headers
from control_api.main import create_app
from control_api.services.auth import (
    HEADERS,
    REPLAY_TTL_S,
    AuthError,
    Verified,
    authenticate,
    check_headers,
)

from tests.conftest import REDIS_URL, Api, LiveServer, SettingsFactory
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


def test_each_failure_has_its_reason(miner_key: Keypair, validator_key: Keypair) -> None:
    """The reason in the log names the step that refused (the client sees one fixed text)."""
    now = int(time.time())
    good = d1_headers(miner_key, "management", nonce=now)
    sig = good["X-Chutes-Signature"]
    cases: dict[str, tuple[dict[str, str], str]] = {
        **{
            f"no {h}": ({k: v for k, v in good.items() if k != h}, "missing header")
            for h in HEADERS
        },
        "empty nonce": ({**good, "X-Chutes-Nonce": ""}, "missing header"),
        "nonce text": ({**good, "X-Chutes-Nonce": "12a"}, "malformed nonce"),
        "nonce 13 digits": ({**good, "X-Chutes-Nonce": "1" * 13}, "malformed nonce"),
        "sig short": ({**good, "X-Chutes-Signature": sig[:-1]}, "malformed signature"),
        "sig non-hex": ({**good, "X-Chutes-Signature": "g" + sig[1:]}, "malformed signature"),
        "other miner": ({**good, "X-Chutes-Miner": validator_key.ss58_address}, "wrong miner"),
        "other signer": (d1_headers(validator_key, "management", nonce=now), "wrong miner"),
        "signer not allowed": (
            {**good, "X-Chutes-Validator": validator_key.ss58_address},
            "signer not allowed",
        ),
        "stale": (d1_headers(miner_key, "management", nonce=now - 30), "nonce outside window"),
        "bad signature": ({**good, "X-Chutes-Signature": "00" * 64}, "bad signature"),
        "other purpose": (d1_headers(miner_key, "kubeconfig", nonce=now), "bad signature"),
    }
    allowed = frozenset({miner_key.ss58_address})
    for name, (headers, reason) in cases.items():
        with pytest.raises(AuthError) as refused:
            check_headers(
                headers,
                x="management",
                miner_ss58=miner_key.ss58_address,
                allowed_signers=allowed,
                now=now,
            )
        assert refused.value.reason == reason, name
        assert str(refused.value) == reason, name


def test_verified_identity_and_replay_key(miner_key: Keypair, validator_key: Keypair) -> None:
    """A validator's request (miner = us, signer = the validator) yields the signer and nonce;
    the replay key ignores the signature's letter case (the same signature twice is a replay)."""
    now = int(time.time())
    me, them = miner_key.ss58_address, validator_key.ss58_address
    sig = validator_key.sign(f"{me}:{them}:{now - 3}:management".encode()).hex()
    headers = {
        "X-Chutes-Miner": me,
        "X-Chutes-Validator": them,
        "X-Chutes-Nonce": str(now - 3),
        "X-Chutes-Signature": sig.upper(),
    }
    verified, key = check_headers(
        headers, x="management", miner_ss58=me, allowed_signers=frozenset({them}), now=now
    )
    assert verified == Verified(them, now - 3)
    _, same = check_headers(
        {**headers, "X-Chutes-Signature": sig.lower()},
        x="management",
        miner_ss58=me,
        allowed_signers=frozenset({them}),
        now=now,
    )
    assert key == same and them in key and str(now - 3) in key


def test_authenticate_keeps_replay_keys_for_the_ttl(miner_key: Keypair, redis_prefix: str) -> None:
    """Through the real Redis replay store: first use passes and the key lives REPLAY_TTL_S
    (61 s: longer than the +-30 s nonce window); the same headers again are `replayed`."""
    now = int(time.time())
    headers = d1_headers(miner_key, "management", nonce=now)
    me = miner_key.ss58_address

    async def twice() -> tuple[Verified, AuthError]:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        store = RedisReplayStore(client, redis_prefix)
        signers = frozenset({me})

        async def use() -> Verified:
            return await authenticate(
                headers,
                x="management",
                miner_ss58=me,
                allowed_signers=signers,
                now=now,
                replay=store,
            )

        try:
            first = await use()
            with pytest.raises(AuthError) as second:
                await use()
            return first, second.value
        finally:
            await client.aclose()

    verified, replayed = asyncio.run(twice())
    assert verified == Verified(me, now)
    assert replayed.reason == "replayed"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        [key] = list(client.scan_iter(redis_prefix + "*"))
        assert REPLAY_TTL_S == 61
        assert REPLAY_TTL_S - 2 <= client.ttl(key) <= REPLAY_TTL_S
    finally:
        client.close()


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
