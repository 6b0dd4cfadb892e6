"""D1 auth on the bootstrap (§1.3) with real sr25519 keys: window, replay, malformed input."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest
from bittensor_wallet import Keypair
from fastapi.testclient import TestClient
from graval_bootstrap.auth import (
    NONCE_WINDOW_S,
    REPLAY_MAX_ENTRIES,
    REPLAY_TTL_S,
    AuthError,
    ReplayCache,
    Verifier,
    _sr25519_verify,
    sign_headers,
)

if TYPE_CHECKING:
    from conftest import AppFactory, Keys

UNAUTHORIZED = {"detail": "unauthorized"}
NOW = 1_900_000_000


def fixed_client(make_app: AppFactory, now: float = NOW) -> TestClient:
    return TestClient(make_app(clock=lambda: now), raise_server_exceptions=False)


def test_devices_signed_by_miner(client: TestClient, keys: Keys) -> None:
    response = client.get("/devices", headers=keys.d1(keys.miner, "graval"))
    assert response.status_code == 200, response.text


def test_devices_refuses_validator(client: TestClient, keys: Keys) -> None:
    # /devices is for our own API only; a whitelisted validator may not call it.
    response = client.get("/devices", headers=keys.d1(keys.validator, "graval"))
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


def test_info_refuses_miner_not_whitelisted(client: TestClient, keys: Keys) -> None:
    response = client.get("/info?challenge=abc", headers=keys.d1(keys.miner, "graval"))
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("age", "ok"), [(0, True), (29, True), (30, False), (-29, True), (-30, False), (3600, False)]
)
def test_nonce_window(make_app: AppFactory, keys: Keys, age: int, ok: bool) -> None:
    with fixed_client(make_app) as client:
        headers = keys.d1(keys.validator, "graval", nonce=NOW - age)
        response = client.get("/info?challenge=abc", headers=headers)
    assert response.status_code == (200 if ok else 401), response.text


def test_replay_refused_same_second_accepted(client: TestClient, keys: Keys) -> None:
    nonce = int(time.time())
    first = keys.d1(keys.validator, "graval", nonce=nonce)
    assert client.get("/info?challenge=a", headers=first).status_code == 200
    assert client.get("/info?challenge=a", headers=first).json() == UNAUTHORIZED
    # Another request signed in the same second: signing is randomized, so it is distinct.
    second = keys.d1(keys.validator, "graval", nonce=nonce)
    assert second["X-Chutes-Signature"] != first["X-Chutes-Signature"]
    assert client.get("/info?challenge=a", headers=second).status_code == 200
    # The replay key ignores the hex case of the signature.
    upper = dict(first, **{"X-Chutes-Signature": first["X-Chutes-Signature"].upper()})
    assert client.get("/info?challenge=a", headers=upper).status_code == 401


def test_bytes_wrapped_signature_accepted(client: TestClient, keys: Keys) -> None:
    nonce = str(int(time.time()))
    miner, signer = keys.miner.ss58_address, keys.validator.ss58_address
    message = f"<Bytes>{miner}:{signer}:{nonce}:graval</Bytes>".encode()
    headers = {
        "X-Chutes-Miner": miner,
        "X-Chutes-Validator": signer,
        "X-Chutes-Nonce": nonce,
        "X-Chutes-Signature": keys.validator.sign(message).hex(),
    }
    assert client.get("/info?challenge=abc", headers=headers).status_code == 200


def mutate(headers: dict[str, str], key: str, value: str | None) -> dict[str, str]:
    out = dict(headers)
    if value is None:
        del out[key]
    else:
        out[key] = value
    return out


SIG = "X-Chutes-Signature"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("X-Chutes-Miner", None),
        ("X-Chutes-Validator", ""),
        ("X-Chutes-Nonce", None),
        (SIG, None),
        ("X-Chutes-Nonce", "12ab"),
        ("X-Chutes-Nonce", "-5"),
        ("X-Chutes-Nonce", "1" * 13),
        ("X-Chutes-Nonce", " 1700000000"),
        (SIG, "0x" + "a" * 126),
        (SIG, "zz" * 64),
        (SIG, "ab" * 63),
        (SIG, "ab" * 65),
        ("X-Chutes-Miner", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"),
        ("X-Chutes-Validator", "not-an-ss58"),
    ],
)
def test_malformed_headers_fixed_401(
    client: TestClient, keys: Keys, key: str, value: str | None
) -> None:
    headers = mutate(keys.d1(keys.validator, "graval"), key, value)
    response = client.get("/info?challenge=abc", headers=headers)
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert "graval" not in response.text and keys.miner.ss58_address not in response.text


def test_non_ascii_header_bytes_never_500(client: TestClient, keys: Keys) -> None:
    headers = [(k.encode(), v.encode()) for k, v in keys.d1(keys.validator, "graval").items()]
    headers[2] = (b"x-chutes-nonce", b"\xff\xfe1700")
    response = client.get("/info?challenge=abc", headers=dict(headers))
    assert response.status_code == 401


def test_signer_claims_other_key(client: TestClient, keys: Keys) -> None:
    # Signed by the outsider, claiming the whitelisted validator's identity.
    headers = sign_headers(keys.other, keys.miner.ss58_address, "graval")
    forged = dict(headers, **{"X-Chutes-Validator": keys.validator.ss58_address})
    assert client.get("/info?challenge=abc", headers=forged).status_code == 401
    assert client.get("/info?challenge=abc", headers=headers).status_code == 401


def test_wrong_purpose(client: TestClient, keys: Keys) -> None:
    headers = keys.d1(keys.validator, "management")
    assert client.get("/info?challenge=abc", headers=headers).status_code == 401


def test_body_hash_binds_body(client: TestClient, keys: Keys) -> None:
    signed = json.dumps({"seed": 1}).encode()
    sent = json.dumps({"seed": 2}).encode()
    response = client.post("/prove", content=sent, headers=keys.body(keys.validator, signed))
    assert response.status_code == 401


def test_auth_before_body_validation(client: TestClient, keys: Keys) -> None:
    bad_body = b"{not json"
    unsigned = client.post("/prove", content=bad_body, headers=keys.body(keys.other, bad_body))
    assert unsigned.status_code == 401
    signed = client.post("/prove", content=bad_body, headers=keys.body(keys.validator, bad_body))
    assert signed.status_code == 422
    # /info: auth comes before the missing query parameter too.
    assert client.get("/info").status_code == 401
    assert client.get("/info", headers=keys.d1(keys.validator, "graval")).status_code == 422


def test_replay_cache_ttl_and_bound() -> None:
    now = [0.0]
    cache = ReplayCache(ttl_s=61, max_entries=3, clock=lambda: now[0])
    assert cache.add(("a", "1", b"s"))
    assert not cache.add(("a", "1", b"s"))
    now[0] = 60.0
    assert not cache.add(("a", "1", b"s"))
    now[0] = 61.5
    assert cache.add(("a", "1", b"s"))
    for n in range(10):
        cache.add(("b", str(n), b"s"))
    assert len(cache) <= 3


def test_default_replay_bound_is_65536_entries() -> None:
    # Within one TTL the default cache holds REPLAY_MAX_ENTRIES keys; the next add evicts the
    # oldest, which is then accepted again, while a younger key is still refused.
    cache = ReplayCache(clock=lambda: 0.0)
    assert REPLAY_MAX_ENTRIES == 65536
    for n in range(REPLAY_MAX_ENTRIES):
        assert cache.add(("a", str(n), b"s"))
    assert len(cache) == REPLAY_MAX_ENTRIES
    assert not cache.add(("a", "1", b"s"))
    assert cache.add(("a", "0", b"s"))


def _verifier(keys: Keys, now: float = NOW) -> Verifier:
    return Verifier(keys.miner.ss58_address, ReplayCache(), clock=lambda: now)


def _headers(
    keys: Keys, signer: Keypair | None = None, changes: dict[str, str | None] | None = None
) -> dict[str, str]:
    """Lower-case D1 headers (as Starlette presents them) signed for `graval` at NOW."""
    headers = {k.lower(): v for k, v in keys.d1(signer or keys.validator, "graval", NOW).items()}
    for name, value in (changes or {}).items():
        key = "x-chutes-" + name.replace("_", "-")
        if value is None:
            del headers[key]
        else:
            headers[key] = value
    return headers


# The reason is what the log line says: each refusal names the check that failed.
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"miner": None}, "missing header"),
        ({"validator": None}, "missing header"),
        ({"nonce": None}, "missing header"),
        ({"signature": None}, "missing header"),
        ({"signature": ""}, "missing header"),
        ({"nonce": "12ab"}, "malformed nonce"),
        ({"signature": "zz" * 64}, "malformed signature"),
        ({"miner": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"}, "wrong miner"),
        ({"nonce": str(NOW - 30)}, "nonce outside window"),
        ({"nonce": str(NOW + 30)}, "nonce outside window"),
        ({"signature": "ab" * 64}, "bad signature"),
    ],
)
def test_each_refusal_names_its_reason(
    keys: Keys, changes: dict[str, str | None], reason: str
) -> None:
    allowed = {keys.validator.ss58_address}
    with pytest.raises(AuthError) as refused:
        _verifier(keys).verify(_headers(keys, changes=changes), "graval", allowed)
    assert refused.value.reason == reason and str(refused.value) == reason


def test_signer_outside_the_route_and_replay_reasons(keys: Keys) -> None:
    verifier, allowed = _verifier(keys), {keys.validator.ss58_address}
    with pytest.raises(AuthError, match="^signer not allowed$"):
        verifier.verify(_headers(keys, keys.other), "graval", allowed)
    headers = _headers(keys)
    assert verifier.verify(headers, "graval", allowed) == keys.validator.ss58_address
    with pytest.raises(AuthError, match="^replay$"):
        verifier.verify(headers, "graval", allowed)
    with pytest.raises(AuthError, match="^bad signature$"):
        verifier.verify(_headers(keys), "management", allowed)


def test_replay_entry_expires_exactly_at_its_ttl() -> None:
    now = [0.0]
    cache = ReplayCache(ttl_s=61, clock=lambda: now[0])
    assert cache.add(("a", "1", b"s"))
    now[0] = 60.999
    assert not cache.add(("a", "1", b"s"))
    now[0] = 61.0
    assert cache.add(("a", "1", b"s"))


def test_default_replay_ttl_outlives_the_nonce_window() -> None:
    # A nonce is accepted for 2 * NONCE_WINDOW_S - 1 seconds; its entry must last that long.
    now = [0.0]
    cache = ReplayCache(clock=lambda: now[0])
    cache.add(("a", "1", b"s"))
    now[0] = 2 * NONCE_WINDOW_S
    assert not cache.add(("a", "1", b"s"))
    assert REPLAY_TTL_S > 2 * NONCE_WINDOW_S


def test_sr25519_check_fails_closed_on_library_errors() -> None:
    assert not _sr25519_verify("not-an-address", b"message", b"\0" * 64)
    assert not _sr25519_verify(Keypair.create_from_uri("//X").ss58_address, b"m", b"short")
