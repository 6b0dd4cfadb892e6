"""setup_logging: one JSON line per record, secrets redacted, per-request client chatter off
unless LOG_LEVEL is DEBUG."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from control_api.log import setup_logging


@pytest.fixture()
def restore() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    httpx_level = logging.getLogger("httpx").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(httpx_level)


def test_json_lines_with_secrets_redacted(
    restore: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("INFO")
    logging.getLogger("x").info("thing.happened", extra={"token": "s3cret", "node": "gpu-0"})
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event"] == "thing.happened" and line["level"] == "info"
    assert line["token"] == "<redacted>" and line["node"] == "gpu-0"


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("DEBUG", True)])
def test_httpx_requests_only_at_debug(
    restore: None, capsys: pytest.CaptureFixture[str], level: str, shown: bool
) -> None:
    setup_logging(level)
    logging.getLogger("httpx").info('HTTP Request: GET http://v/miner/metrics/ "200 OK"')
    assert ("miner/metrics" in capsys.readouterr().out) is shown
