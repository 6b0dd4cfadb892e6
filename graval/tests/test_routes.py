"""Routes, shapes, limits and the 400 cases of §6, against the FakeMiner stand-in."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from graval_bootstrap.gpu import DEVICE_INFO_KEYS
from httpx import Response

if TYPE_CHECKING:
    from conftest import Encrypt, FakeMiner, Keys


def post(client: TestClient, keys: Keys, path: str, payload: Any) -> Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response: Response = client.post(path, content=body, headers=keys.body(keys.validator, body))
    return response


def test_ping(client: TestClient) -> None:
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.text == "pong"
    assert response.headers["content-type"].startswith("text/plain")


def test_devices_shape(client: TestClient, keys: Keys, miner: FakeMiner) -> None:
    response = client.get("/devices", headers=keys.d1(keys.miner, "graval"))
    devices = response.json()["devices"]
    assert [d["uuid"] for d in devices] == [miner.uuid(0), miner.uuid(1)]
    for device in devices:
        assert tuple(device) == DEVICE_INFO_KEYS  # no work_product, even after a proof
        assert isinstance(device["memory"], int) and isinstance(device["clock_rate"], float)


def test_prove_roundtrip(
    client: TestClient, keys: Keys, miner: FakeMiner, encrypt: Encrypt
) -> None:
    seed = 2**63 + 5
    uuid0, uuid1 = miner.uuid(0), miner.uuid(1)
    payload = {
        "seed": seed,
        "iterations": 3,
        "ciphertext": {
            uuid0: encrypt(seed, uuid0, "secret-0"),
            uuid1: encrypt(seed, uuid1, "秘密"),
        },
    }
    response = post(client, keys, "/prove", payload)
    assert response.status_code == 200, response.text
    out = response.json()
    assert set(out) == {"devices", "seed", "proof", "plaintext"}
    assert out["seed"] == seed
    assert out["plaintext"] == {uuid0: "secret-0", uuid1: "秘密"}
    assert [tuple(d) for d in out["devices"]] == [DEVICE_INFO_KEYS] * 2
    proof = out["proof"][uuid1]
    assert set(proof) == {"device_id", "device_uuid", "device_name", "work_product"}
    assert proof["device_id"] == 1 and proof["device_uuid"] == uuid1
    work = proof["work_product"]
    assert work == miner.get_device_info(1)["work_product"]  # passed through untouched
    assert work["total_iterations"] == 3 and len(work["intermediate_hashes"]) == 6


def test_prove_defaults(client: TestClient, keys: Keys) -> None:
    for payload in ({"seed": 0}, {"seed": 0, "ciphertext": None}, {"seed": 0, "extra": 1}):
        response = post(client, keys, "/prove", payload)
        assert response.status_code == 200, response.text
        assert response.json()["plaintext"] == {}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("case", "detail"),
    [
        ("unknown", "unknown device uuid"),
        ("not-base64", "ciphertext is not base64"),
        ("short", "ciphertext too short"),
        ("too-many", "more ciphertexts than GPUs"),
        ("wrong-seed", "decrypt failed"),
        ("corrupt", "decrypt failed"),
    ],
)
def test_prove_400(
    client: TestClient,
    keys: Keys,
    miner: FakeMiner,
    encrypt: Encrypt,
    case: str,
    detail: str,
) -> None:
    uuid = miner.uuid(0)
    good = encrypt(7, uuid, "hello")
    blob = base64.b64decode(good)
    entries = {
        "unknown": {"f" * 32: good},
        "not-base64": {uuid: "@@@@"},
        "short": {uuid: b64(b"\x00" * 16)},
        "too-many": {miner.uuid(i): good for i in range(3)},
        "wrong-seed": {uuid: encrypt(8, uuid, "hello")},
        "corrupt": {uuid: b64(blob[:-1] + bytes([blob[-1] ^ 1]))},
    }[case]
    response = post(client, keys, "/prove", {"seed": 7, "ciphertext": entries})
    assert (response.status_code, response.json()) == (400, {"detail": detail})


def test_prove_checks_before_gpu_work(client: TestClient, keys: Keys, miner: FakeMiner) -> None:
    post(client, keys, "/prove", {"seed": 1, "ciphertext": {"0" * 32: b64(b"x" * 20)}})
    assert miner.prove_calls == 0


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"seed": -1},
        {"seed": 2**64},
        {"seed": "5"},
        {"seed": 1.5},
        {"seed": 1, "iterations": 0},
        {"seed": 1, "iterations": 11},
        {"seed": 1, "ciphertext": {"a": 1}},
        {"seed": 1, "ciphertext": ["a"]},
        [1, 2],
        b"",
        b"\xff\xfe",
    ],
)
def test_prove_422(client: TestClient, keys: Keys, payload: Any) -> None:
    response = post(client, keys, "/prove", payload)
    assert response.status_code == 422
    assert "input" not in response.text


def test_body_limit(client: TestClient, keys: Keys) -> None:
    body = json.dumps({"seed": 1, "pad": "x" * (1024 * 1024)}).encode()
    response = client.post("/prove", content=body, headers=keys.body(keys.validator, body))
    assert response.status_code == 413
    exact = b" " * (1024 * 1024 - len(b'{"seed":1}')) + b'{"seed":1}'
    assert post(client, keys, "/prove", exact).status_code == 200


def test_body_limit_without_content_length(client: TestClient, keys: Keys) -> None:
    body = b" " * (1024 * 1024 + 1)

    def chunks() -> Any:
        yield body[: len(body) // 2]
        yield body[len(body) // 2 :]

    response = client.post("/prove", content=chunks(), headers=keys.body(keys.validator, body))
    assert response.status_code == 413


def test_info(client: TestClient, keys: Keys, miner: FakeMiner) -> None:
    response = client.get(
        "/info", params={"challenge": "c" * 4096}, headers=keys.d1(keys.validator, "graval")
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == miner.process_device_info_challenge("c" * 4096)
    assert len(response.text) == 64


@pytest.mark.parametrize("challenge", ["", "c" * 4097, "é" * 2049])
def test_info_400(client: TestClient, keys: Keys, challenge: str) -> None:
    headers = keys.d1(keys.validator, "graval")
    response = client.get("/info", params={"challenge": challenge}, headers=headers)
    assert response.status_code == 400


def test_gpu_failure_is_opaque_500(client: TestClient, keys: Keys, miner: FakeMiner) -> None:
    miner._device_count = 1  # device 1 now fails in get_device_info
    response = client.get("/devices", headers=keys.d1(keys.miner, "graval"))
    assert response.status_code == 500
    assert "fake" not in response.text.lower()


def test_no_docs_routes(client: TestClient) -> None:
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert client.get(path).status_code == 404


def test_library_error_in_prove_is_opaque_500(
    client: TestClient, keys: Keys, miner: FakeMiner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graval.structures import GraValError

    def broken(seed: int, iterations: int = 1) -> dict[str, Any]:
        raise GraValError("Failed to generate work product.")

    monkeypatch.setattr(miner, "prove", broken)
    response = post(client, keys, "/prove", {"seed": 3})
    assert (response.status_code, response.json()) == (500, {"detail": "gpu error"})
    # The lock was released: the next GPU call still runs.
    assert client.get("/devices", headers=keys.d1(keys.miner, "graval")).status_code == 200
