"""Shared paths of the wireguard tests; puts the in-tree collection on the import path."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "collections" / "ansible_collections" / "chutes" / "miner"
ROLE = COLLECTION / "roles" / "wireguard"
sys.path.insert(0, str(REPO / "collections"))
