# Copyright: chutes.miner developers
# MIT License
"""OpenPGP, as much as checking a repository key needs: ASCII armor (with its CRC-24) and the
fingerprints of the primary keys (RFC 4880), in pure Python without gpg.
"""

from __future__ import annotations

import base64
import hashlib
import re

_ARMOR = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY BLOCK-----", re.S
)


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _bit in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(text: str) -> bytes:
    """The binary key of one ASCII-armored OpenPGP public key block (RFC 4880 §6)."""
    match = _ARMOR.search(text)
    if not match:
        raise ValueError("not an ASCII-armored OpenPGP public key block")
    lines = [line.strip() for line in match.group(1).splitlines()]
    if "" in lines:  # armor headers (Version:, Comment:) end at the first blank line
        lines = lines[lines.index("") + 1 :]
    lines = [line for line in lines if line]
    checksum = lines.pop()[1:] if lines and lines[-1].startswith("=") else None
    data = base64.b64decode("".join(lines), validate=True)
    if checksum is not None and base64.b64decode(checksum) != _crc24(data).to_bytes(3, "big"):
        raise ValueError("armor checksum (CRC-24) does not match the key data")
    return data


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i < len(data):
        head = data[i]
        i += 1
        if not head & 0x80:
            raise ValueError(f"not an OpenPGP packet at offset {i - 1}")
        if head & 0x40:  # new format
            tag, first = head & 0x3F, data[i]
            i += 1
            if first < 192:
                length = first
            elif first < 224:
                length, i = ((first - 192) << 8) + data[i] + 192, i + 1
            elif first == 255:
                length, i = int.from_bytes(data[i : i + 4], "big"), i + 4
            else:
                raise ValueError("partial-length packets are not expected in a public key")
        else:  # old format
            tag, size = (head >> 2) & 0x0F, head & 0x03
            if size == 3:
                raise ValueError("indeterminate-length packets are not expected in a public key")
            width = (1, 2, 4)[size]
            length, i = int.from_bytes(data[i : i + width], "big"), i + width
        if i + length > len(data):
            raise ValueError("truncated OpenPGP packet")
        out.append((tag, data[i : i + length]))
        i += length
    return out


def pgp_fingerprints(armored: str) -> list[str]:
    """Fingerprints of the primary keys (not subkeys) in an armored key file, in order.

    v4 fingerprint: SHA-1 over 0x99, the two-byte length and the public-key packet body
    (RFC 4880 §12.2). A pinned key file must yield exactly one, the pinned one.
    """
    prints = []
    for tag, body in _packets(dearmor(armored)):
        if tag == 6:
            if not body or body[0] != 4:
                raise ValueError("only version 4 OpenPGP keys are supported")
            digest = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body)  # noqa: S324  # RFC 4880 fingerprint
            prints.append(digest.hexdigest().upper())
    return prints
