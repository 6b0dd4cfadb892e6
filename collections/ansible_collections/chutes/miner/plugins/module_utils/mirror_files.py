# Copyright: chutes.miner developers
# MIT License
"""JSON state files of the chutes.miner.mirrors modules (mirror_state, mirror_snap)."""

from __future__ import annotations

import json
import os
from typing import Any


def load_json(path: str, default: Any) -> Any:
    """The parsed file, or ``default`` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def save_json(path: str, data: Any) -> None:
    """Write atomically (sorted keys, trailing newline); the directory is created 0700."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
