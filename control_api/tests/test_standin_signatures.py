"""The stand-ins refuse what a real validator or bootstrap would refuse.

Their signature checks (tests/contract_sig.py) are an independent implementation of the
contract; these tests prove they can say no (wrong key, wrong purpose, changed body, stale or
malformed nonce, upper-case hex) over HTTP and socket.io, and that they agree with the API's
own signing code on well-formed requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import socketio
from bittensor_wallet import Keypair
from control_api.core.signing import d1_headers, d2_headers

from tests.contract_sig import d1_valid, d2_valid, sha256_hex
from tests.sched_validator import MinerApiStandin
from tests.standins import StandinValidator

MINER = Keypair.create_from_uri("//StandinMiner")
OTHER = Keypair.create_from_uri("//StandinOutsider")
VALIDATOR = Keypair.create_from_uri("//StandinValidator")


def d2(
    signer: Keypair, x: str, hotkey: str | None = None, nonce: int | None = None
) -> dict[str, str]:
    """D2 headers built by hand from the contract; `hotkey` may claim another key."""
    claimed = hotkey or signer.ss58_address
    n = str(int(time.time()) if nonce is None else nonce)
    sig = signer.sign(f"{claimed}:{n}:{x}".encode()).hex()
    return {"X-Chutes-Hotkey": claimed, "X-Chutes-Nonce": n, "X-Chutes-Signature": sig}


def d1(signer: Keypair, x: str, miner: str) -> dict[str, str]:
    n = str(int(time.time()))
    me = signer.ss58_address
    sig = signer.sign(f"{miner}:{me}:{n}:{x}".encode()).hex()
    return {
        "X-Chutes-Miner": miner,
        "X-Chutes-Validator": me,
        "X-Chutes-Nonce": n,
        "X-Chutes-Signature": sig,
    }


# --- the checker on its own ------------------------------------------------------------------


def test_d2_accepts_a_contract_signature_and_the_apis() -> None:
    m = MINER.ss58_address
    assert d2_valid(d2(MINER, "nodes"), m, "nodes")
    assert d2_valid(d2_headers(MINER, "nodes"), m, "nodes")
    wrapped = dict(d2(MINER, "nodes"))
    n = wrapped["X-Chutes-Nonce"]
    wrapped["X-Chutes-Signature"] = MINER.sign(f"<Bytes>{m}:{n}:nodes</Bytes>".encode()).hex()
    assert d2_valid(wrapped, m, "nodes")  # what bittensor-wallet itself accepts


@pytest.mark.parametrize(
    "case",
    [
        "other-key",
        "claims-miner-signed-by-other",
        "purpose",
        "stale",
        "future",
        "nonce-not-digits",
        "upper-hex",
        "short-signature",
        "missing",
    ],
)
def test_d2_refuses(case: str) -> None:
    m = MINER.ss58_address
    now = int(time.time())
    headers = {
        "other-key": d2(OTHER, "nodes"),
        "claims-miner-signed-by-other": d2(OTHER, "nodes", hotkey=m),
        "purpose": d2(MINER, "graval"),
        "stale": d2(MINER, "nodes", nonce=now - 601),
        "future": d2(MINER, "nodes", nonce=now + 601),
        "nonce-not-digits": {**d2(MINER, "nodes"), "X-Chutes-Nonce": f"{now}.0"},
        "upper-hex": {
            **d2(MINER, "nodes"),
            "X-Chutes-Signature": d2(MINER, "nodes")["X-Chutes-Signature"].upper(),
        },
        "short-signature": {
            **d2(MINER, "nodes"),
            "X-Chutes-Signature": d2(MINER, "nodes")["X-Chutes-Signature"][:-2],
        },
        "missing": {"X-Chutes-Hotkey": m, "X-Chutes-Nonce": str(now)},
    }[case]
    assert not d2_valid(headers, m, "nodes", now=now)


def test_d2_window_edges() -> None:
    m, now = MINER.ss58_address, int(time.time())
    assert d2_valid(d2(MINER, "x", nonce=now - 600), m, "x", now=now)
    assert d2_valid(d2(MINER, "x", nonce=now + 600), m, "x", now=now)


def test_d1_accepts_the_apis_headers_and_refuses_other_signers() -> None:
    m = MINER.ss58_address
    assert d1_valid(d1_headers(MINER, "graval"), m, m, "graval")
    assert d1_valid(d1(MINER, "graval", m), m, m, "graval")
    assert not d1_valid(d1(OTHER, "graval", m), m, m, "graval")  # honest header, wrong signer
    forged = {**d1(OTHER, "graval", m), "X-Chutes-Validator": m}
    assert not d1_valid(forged, m, m, "graval")
    assert not d1_valid(d1(MINER, "devices", m), m, m, "graval")
    assert not d1_valid(d1(MINER, "graval", OTHER.ss58_address), m, m, "graval")


# --- over the wire ---------------------------------------------------------------------------


@pytest.fixture()
def standin() -> Iterator[StandinValidator]:
    v = StandinValidator(VALIDATOR.ss58_address, MINER.ss58_address).start()
    yield v
    v.stop()


def test_validator_standin_refuses_a_wrongly_signed_registration(
    standin: StandinValidator,
) -> None:
    body = json.dumps({"nodes": [{"uuid": "0" * 32}]}).encode()
    url = f"{standin.url}/nodes/"
    tampered = json.dumps({"nodes": [{"uuid": "1" * 32}]}).encode()
    for headers, sent in [
        (d2(OTHER, sha256_hex(body), hotkey=MINER.ss58_address), body),  # forged
        (d2(MINER, sha256_hex(body)), tampered),  # body changed after signing
        (d2(MINER, "nodes"), body),  # a purpose where the body hash belongs
    ]:
        r = httpx.post(url, content=sent, headers=headers, trust_env=False)
        assert r.status_code == 401, r.text
    assert standin.state.registered == []
    assert standin.state.auth_errors == ["/nodes/"] * 3
    good = httpx.post(url, content=body, headers=d2(MINER, sha256_hex(body)), trust_env=False)
    assert good.status_code == 202 and len(standin.state.registered) == 1


def test_validator_standin_refuses_wrong_d2_on_get_and_delete(standin: StandinValidator) -> None:
    status = f"{standin.url}/nodes/verification_status"
    assert httpx.get(status, headers=d2(MINER, "nodes"), trust_env=False).status_code == 401
    gone = f"{standin.url}/nodes/gpu-1"
    assert httpx.delete(gone, headers=d2(OTHER, "nodes"), trust_env=False).status_code == 401
    assert standin.state.poll_count == 0 and standin.state.deleted == []
    assert httpx.get(status, headers=d2(MINER, "graval"), trust_env=False).status_code == 200
    assert httpx.delete(gone, headers=d2(MINER, "nodes"), trust_env=False).status_code == 200


def test_bootstrap_standin_devices_needs_the_miners_d1(standin: StandinValidator) -> None:
    url, m = f"{standin.url}/devices", MINER.ss58_address
    assert httpx.get(url, headers=d1(OTHER, "graval", m), trust_env=False).status_code == 401
    assert httpx.get(url, headers=d1(MINER, "nodes", m), trust_env=False).status_code == 401
    assert standin.state.auth_errors == ["/devices", "/devices"]
    ok = httpx.get(url, headers=d1(MINER, "graval", m), trust_env=False)
    assert ok.status_code == 200 and len(ok.json()["devices"]) == 2


def test_socket_standin_refuses_a_wrong_signature(standin: StandinValidator) -> None:
    answers: list[str] = []
    tries = (d2(OTHER, "sockets", hotkey=MINER.ss58_address), d2(MINER, "sockets"))
    for i, headers in enumerate(tries, start=1):
        client = socketio.Client(reconnection=False)
        client.on("auth_success", lambda _data: answers.append("ok"))
        client.on("auth_failed", lambda _data: answers.append("refused"))
        client.connect(standin.url, transports=["websocket"])
        try:
            client.emit("authenticate", headers)
            deadline = time.monotonic() + 5
            while len(answers) < i and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            client.disconnect()
    assert answers == ["refused", "ok"]


def test_scheduler_standin_refuses_a_wrong_signature() -> None:
    s = MinerApiStandin(MINER.ss58_address).start()
    try:
        s.add_chute("c1")
        url = f"{s.url}/miner/chutes/c1/1"
        forged = d2(OTHER, "miner", hotkey=MINER.ss58_address)
        assert httpx.get(url, headers=forged, trust_env=False).status_code == 401
        assert httpx.get(url, headers=d2(MINER, "launch"), trust_env=False).status_code == 401
        assert s.state.bad_signatures == ["/miner/chutes/c1/1"] * 2
        assert httpx.get(url, headers=d2(MINER, "miner"), trust_env=False).json()["chute_id"]
    finally:
        s.stop()
