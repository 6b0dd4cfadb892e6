"""Vendored apt signing keys: each file is exactly the key its pinned fingerprint names.

GnuPG reads the files as apt would (``gpg --show-keys --with-colons``); the role's own
controller-side check (``chutes.miner.pgp_fingerprints``, pure Python) must agree with it,
and both must reject an altered file.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.chutes.miner.plugins.module_utils import mirrors_common, pgp

from tests.mirrors.conftest import ROLE

KEYS = ROLE / "files" / "keys"
PINNED = {
    res: (s["key_file"], s["key_fingerprint"])
    for res, s in yaml.safe_load((ROLE / "vars" / "main.yml").read_text())[
        "__mirrors_resource_defaults"
    ].items()
    if "key_file" in s
}
GPG = shutil.which("gpg")


def gpg_primary_fingerprints(path: Path, home: Path) -> list[str]:
    """Fingerprints of the primary keys only (the fpr line after each pub line)."""
    out = subprocess.run(
        [
            GPG or "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--show-keys",
            "--with-colons",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    prints, after_pub = [], False
    for line in out.splitlines():
        kind = line.split(":", 1)[0]
        if kind == "fpr" and after_pub:
            prints.append(line.split(":")[9])
        after_pub = kind == "pub"
    return prints


def test_every_flat_repo_pins_a_vendored_key() -> None:
    assert set(PINNED) == set(mirrors_common.FLAT_APT)
    assert PINNED["cuda_apt"] == (
        "cuda-archive-keyring.asc",
        "EB693B3035CD5710E231E123A4B469963BF863CC",
    )
    assert PINNED["nct_apt"] == (
        "nvidia-container-toolkit-keyring.asc",
        "C95B321B61E88C1809C4F759DDCAE044F796ECB0",
    )
    assert sorted(p.name for p in KEYS.glob("*.asc")) == sorted(f for f, _ in PINNED.values())


@pytest.mark.skipif(GPG is None, reason="gpg is not installed")
@pytest.mark.parametrize("resource", sorted(PINNED))
def test_gpg_reads_exactly_the_pinned_key(resource: str, tmp_path: Path) -> None:
    key_file, fingerprint = PINNED[resource]
    assert gpg_primary_fingerprints(KEYS / key_file, tmp_path) == [fingerprint]


@pytest.mark.parametrize("resource", sorted(PINNED))
def test_the_role_check_agrees(resource: str) -> None:
    key_file, fingerprint = PINNED[resource]
    assert pgp.pgp_fingerprints((KEYS / key_file).read_text()) == [fingerprint]


def _altered(text: str, offset: int) -> str:
    """The same armor with one bit of the key data flipped and a matching CRC-24."""
    data = bytearray(pgp.dearmor(text))
    data[offset] ^= 0x01
    body = base64.b64encode(bytes(data)).decode()
    crc = base64.b64encode(pgp._crc24(bytes(data)).to_bytes(3, "big")).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n"
        + "\n".join(lines)
        + f"\n={crc}\n-----END PGP PUBLIC KEY BLOCK-----\n"
    )


@pytest.mark.parametrize("resource", sorted(PINNED))
def test_an_altered_key_no_longer_matches(resource: str, tmp_path: Path) -> None:
    key_file, fingerprint = PINNED[resource]
    altered = _altered((KEYS / key_file).read_text(), 40)  # inside the RSA modulus
    assert pgp.pgp_fingerprints(altered) != [fingerprint]
    if GPG:
        path = tmp_path / key_file
        path.write_text(altered)
        home = tmp_path / "gnupg"
        home.mkdir(mode=0o700)
        assert fingerprint not in gpg_primary_fingerprints(path, home)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not a key", "ASCII-armored"),
        (
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGJYmlEB\n=AAAA\n"
            "-----END PGP PUBLIC KEY BLOCK-----\n",
            "CRC-24",
        ),
    ],
)
def test_malformed_armor_is_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        pgp.pgp_fingerprints(text)


def test_a_second_key_in_the_file_is_seen() -> None:
    """A file holding the pinned key plus another yields two fingerprints: the role refuses it."""
    cuda, nct = (pgp.dearmor((KEYS / f).read_text()) for f, _ in PINNED.values())
    both = base64.b64encode(cuda + nct).decode()
    text = (
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + both + "\n-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    assert pgp.pgp_fingerprints(text) == [fp for _, fp in PINNED.values()]


def test_key_files_name_no_host(catalog: dict[str, Any]) -> None:
    """Base64 has no dots, so armor cannot spell a host; the README line names none either."""
    for path in KEYS.glob("*.asc"):
        text = path.read_text()
        for host in catalog["__mirrors_blocked_hosts"]:
            assert host not in text, (path.name, host)
