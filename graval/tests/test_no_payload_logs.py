"""Bodies, ciphertexts, plaintexts, challenges and header values never reach the logs."""

from __future__ import annotations

import base64
import json
import logging
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

if TYPE_CHECKING:
    from conftest import Encrypt, FakeMiner, Keys

PLAIN = "PLAINTEXT-MARKER-4f1c"
CHALLENGE = "CHALLENGE-MARKER-9ab2"


def test_no_payload_in_logs(
    client: TestClient,
    keys: Keys,
    miner: FakeMiner,
    encrypt: Encrypt,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uuid = miner.uuid(0)
    ciphertext = encrypt(11, uuid, PLAIN)
    good = json.dumps({"seed": 11, "ciphertext": {uuid: ciphertext}}).encode()
    corrupt_blob = base64.b64decode(ciphertext)
    corrupt = json.dumps(
        {"seed": 11, "ciphertext": {uuid: base64.b64encode(corrupt_blob[:-1] + b"\0").decode()}}
    ).encode()
    invalid = json.dumps({"seed": PLAIN}).encode()
    signed = keys.body(keys.validator, good)
    with caplog.at_level(logging.DEBUG):
        assert client.post("/prove", content=good, headers=signed).json()["plaintext"] == {
            uuid: PLAIN
        }
        assert client.post("/prove", content=good, headers=signed).status_code == 401  # replay
        for body in (corrupt, invalid):
            response = client.post("/prove", content=body, headers=keys.body(keys.validator, body))
            assert response.status_code in (400, 422)
            assert PLAIN not in response.text
        forged = keys.body(keys.other, good)
        assert client.post("/prove", content=good, headers=forged).status_code == 401
        info_headers = keys.d1(keys.validator, "graval")
        assert client.get(f"/info?challenge={CHALLENGE}", headers=info_headers).status_code == 200
        long_challenge = "/info?challenge=" + CHALLENGE * 300
        fresh = keys.d1(keys.validator, "graval")
        assert client.get(long_challenge, headers=fresh).status_code == 400

    # The "httpx" logger here is the test's own client (the app silences it in main()).
    records = [r for r in caplog.records if r.name != "httpx"]
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in records)
    assert "auth rejected on /prove: replay" in text  # the reasons are logged...
    assert "POST /prove 200" in text  # ...and the access lines, path only
    secrets = [
        PLAIN,
        ciphertext,
        ciphertext[:24],
        CHALLENGE,
        signed["X-Chutes-Signature"],
        forged["X-Chutes-Signature"],
        keys.miner.ss58_address,
        keys.validator.ss58_address,
        keys.other.ss58_address,
        "challenge=",
    ]
    for secret in secrets:
        assert secret not in text
