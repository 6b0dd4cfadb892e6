# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Old import path of the SS58 check, kept until every importer uses module_utils/ss58.py.

Not a test plugin (no TestModule): the test is ``chutes.miner.ss58_valid`` in ss58_valid.py.
"""

from __future__ import annotations

from ansible_collections.chutes.miner.plugins.module_utils.ss58 import (
    b58decode,
    ss58_decode,
    ss58_valid,
)

__all__ = ["b58decode", "ss58_decode", "ss58_valid"]
