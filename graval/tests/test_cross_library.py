"""Cross-library vectors: validators sign with substrate-interface, we verify with bittensor-wallet.

substrate-interface lives in the chutes-miner-cli venv (Python ≥ 3.12 tool, separate venv), so
the signing runs there in a subprocess; skipped when that venv is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from graval_bootstrap.config import Settings

if TYPE_CHECKING:
    from conftest import AppFactory, Keys

# The venv control_api/tests/cli_venv.py builds once per machine (skipped until it exists).
CLI_VENV = os.environ.get("CHUTES_MINER_CLI_VENV", "/var/cache/chutes-miner/cli-venv-0.9.0")
CLI_PYTHON = Path(CLI_VENV) / "bin" / "python"

SIGN = """
import json, sys
from substrateinterface import Keypair, KeypairType
seed, miner, nonce, purpose, wrap = sys.argv[1:]
k = Keypair.create_from_seed(seed, crypto_type=KeypairType.SR25519)
msg = f"{miner}:{k.ss58_address}:{nonce}:{purpose}"
if wrap == "1":
    msg = f"<Bytes>{msg}</Bytes>"
print(json.dumps({"ss58": k.ss58_address, "sig": k.sign(msg).hex()}))
"""


@pytest.mark.skipif(not CLI_PYTHON.exists(), reason="substrate-interface venv not installed")
@pytest.mark.parametrize("wrap", ["0", "1"])
def test_substrate_interface_signature(
    make_app: AppFactory, settings: Settings, keys: Keys, wrap: str
) -> None:
    seed = "0x" + os.urandom(32).hex()
    nonce = str(int(time.time()))
    miner = keys.miner.ss58_address
    out = subprocess.run(
        [str(CLI_PYTHON), "-c", SIGN, seed, miner, nonce, "graval", wrap],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    signed = json.loads(out.stdout)
    headers = {
        "X-Chutes-Miner": miner,
        "X-Chutes-Validator": signed["ss58"],
        "X-Chutes-Nonce": nonce,
        "X-Chutes-Signature": signed["sig"],
    }
    app = make_app(settings_=replace(settings, validator_whitelist=(signed["ss58"],)))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/info", params={"challenge": "abc"}, headers=headers)
    assert response.status_code == 200, response.text
