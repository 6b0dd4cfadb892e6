"""The wireguard role compares file hashes from chutes.miner.wireguard_host_info with
``hash('sha1')`` on the controller. Controller code (the filter) is importable only in the
controller's unit tests, so this check of module_utils/wireguard.py lives here."""

from __future__ import annotations

from ansible.plugins.filter.core import get_hash
from ansible_collections.chutes.miner.plugins.module_utils import wireguard as wgu


def test_sha1_matches_the_hash_filter() -> None:
    # configure skips the module when these agree with `hash('sha1')` on the controller.
    text = "[Interface]\nAddress = 192.168.0.1/20 # \u00e9\n"
    assert wgu.sha1_of(text) == get_hash(text, "sha1")
    assert wgu.sha1_of(None) is None
