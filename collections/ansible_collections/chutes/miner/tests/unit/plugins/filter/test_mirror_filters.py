"""The mirrors role's filters: thin wrappers over module_utils/mirrors*.py and pgp.py (tested in
depth by the repository's tests/mirrors) that turn its ValueError into a filter error with the
input named."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.chutes.miner.plugins.filter.mirror_url import mirror_url
from ansible_collections.chutes.miner.plugins.filter.pgp_fingerprints import pgp_fingerprints

EFFECTIVE = {"profile": "tuna", "files_prefix": "https://p"}


def test_mirror_url_routes_through_the_files_prefix() -> None:
    assert mirror_url("https://github.com/x", EFFECTIVE) == "https://p/github.com/x"


def test_mirror_url_without_a_mirror_keeps_the_url() -> None:
    assert mirror_url("https://github.com/x") == "https://github.com/x"
    assert mirror_url("https://github.com/x", {"profile": "none"}) == "https://github.com/x"


def test_mirror_url_rejects_a_non_url() -> None:
    with pytest.raises(AnsibleFilterError, match="not an http"):
        mirror_url("github.com/x", EFFECTIVE)


def test_pgp_fingerprints_rejects_text_that_is_no_key() -> None:
    with pytest.raises(AnsibleFilterError, match="^pgp_fingerprints: "):
        pgp_fingerprints("not a key")
