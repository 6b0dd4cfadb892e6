"""What counts as clean text in a request: no control character (NUL, C0, DEL, C1) and, for
bytes, strict UTF-8. Shared by the API's guard, its body models and the registry-auth
listener, so all three refuse the same inputs."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

# C0 controls, DEL and C1 controls: never part of a name, an id or a query value here.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def clean_text(value: str) -> bool:
    """True when `value` holds no control character (NUL included)."""
    return _CONTROL.search(value) is None


def _clean_bytes(raw: bytes) -> bool:
    """Percent-decoded bytes that are strict UTF-8 without control characters."""
    try:
        return clean_text(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return False


def clean_target(raw_path: bytes, query: bytes) -> bool:
    """The request target as a router and its handlers would see it, decoded."""
    if not _clean_bytes(unquote_to_bytes(raw_path)):
        return False
    if not query:
        return True
    return all(
        _clean_bytes(unquote_to_bytes(part.replace(b"+", b" ")))
        for part in re.split(rb"[&=]", query)
    )
