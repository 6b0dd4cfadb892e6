"""Write the lab's miner hotkey file (bittensor wallet format) once; print its ss58 address.

The lab needs a hotkey for the miner's Secrets (playbooks/deploy.yml reads miner_hotkey_path on
the controller). A fresh sr25519 key per lab directory, mode 0600, never in the repository; an
existing file is kept, so reruns leave the cluster's stored hotkey unchanged.

    python tests/lab/make-hotkey.py PATH
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from bittensor_wallet import Keypair


def ensure_hotkey(path: Path) -> str:
    if path.exists():
        return str(json.loads(path.read_text())["ss58Address"])
    seed = secrets.token_bytes(32)
    key = Keypair.create_from_seed(seed.hex())
    body = {
        "accountId": "0x" + bytes(key.public_key).hex(),
        "publicKey": "0x" + bytes(key.public_key).hex(),
        "secretSeed": "0x" + seed.hex(),
        "ss58Address": key.ss58_address,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(body, out)
    tmp.replace(path)
    return str(key.ss58_address)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.stdout.write(ensure_hotkey(Path(sys.argv[1])) + "\n")
