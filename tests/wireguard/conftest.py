"""Shared paths of the wireguard tests (the root conftest puts the in-tree collection on the
import path)."""

from __future__ import annotations

from tests.ansible_env import REPO

COLLECTION = REPO / "collections" / "ansible_collections" / "chutes" / "miner"
ROLE = COLLECTION / "roles" / "wireguard"
