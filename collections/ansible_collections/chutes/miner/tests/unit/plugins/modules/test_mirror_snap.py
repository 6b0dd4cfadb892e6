"""chutes.miner.mirror_snap: set what the snap mode needs, undo only what the role set."""

from __future__ import annotations

import http.server
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chutes.miner.plugins.modules.mirror_snap import Snap, reconcile

ASSERTIONS = b"type: account-key\nauthority-id: canonical\n\nsig\n"
PROXY = {"system": {"proxy.http": "http://p.lan:3128", "proxy.https": "http://p.lan:3128"}}


class FakeSnap:
    def __init__(self, options: dict[str, str] | None = None) -> None:
        self.options = dict(options or {})
        self.acked: list[str] = []

    def get(self, snap: str, option: str) -> str:
        return self.options.get(f"{snap}.{option}", "")

    def set(self, snap: str, option: str, value: str) -> None:
        self.options[f"{snap}.{option}"] = value

    def unset(self, snap: str, option: str) -> None:
        self.options.pop(f"{snap}.{option}", None)

    def ack(self, url: str) -> None:
        self.acked.append(url)


def test_set_is_recorded_and_idempotent() -> None:
    snap = FakeSnap()
    record, done = reconcile(snap, {}, PROXY)
    assert done["set"] == ["system.proxy.http", "system.proxy.https"]
    assert snap.options == {
        "system.proxy.http": "http://p.lan:3128",
        "system.proxy.https": "http://p.lan:3128",
    }
    again, done = reconcile(snap, record, PROXY)
    assert again == record and done == {"set": [], "unset": [], "kept": []}


def test_undo_restores_the_operators_values_and_unsets_only_the_roles() -> None:
    operator = {"system.proxy.https": "http://operator:8080", "system.proxy.ftp": "x"}
    snap = FakeSnap(operator)
    record, _done = reconcile(snap, {}, PROXY)
    assert record["system.proxy.https"]["previous"] == "http://operator:8080"
    record, done = reconcile(snap, record, {})
    assert record == {} and done["unset"] == ["system.proxy.http"]
    assert done["set"] == ["system.proxy.https"]
    assert snap.options == operator


def test_a_value_the_operator_already_had_is_never_undone() -> None:
    snap = FakeSnap({"system.proxy.http": "http://p.lan:3128"})
    record, done = reconcile(snap, {}, {"system": {"proxy.http": "http://p.lan:3128"}})
    assert record == {} and done["set"] == []
    _record, done = reconcile(snap, record, {})
    assert snap.options == {"system.proxy.http": "http://p.lan:3128"}


def test_a_value_changed_since_is_left_alone() -> None:
    snap = FakeSnap()
    record, _done = reconcile(snap, {}, PROXY)
    snap.options["system.proxy.http"] = "http://someone-else:3128"
    record, done = reconcile(snap, record, {})
    assert done["kept"] == ["system.proxy.http"] and done["unset"] == ["system.proxy.https"]
    assert snap.options == {"system.proxy.http": "http://someone-else:3128"}


def test_check_mode_changes_nothing() -> None:
    snap = FakeSnap()
    _record, done = reconcile(snap, {}, PROXY, check=True)
    assert done["set"] and snap.options == {}


def test_store_proxy_acks_its_assertions_before_setting_the_store() -> None:
    snap = FakeSnap()
    url = "http://snaps.lan/v2/auth/store/assertions"
    record, _done = reconcile(snap, {}, {"core": {"proxy.store": "AbC123"}}, assertions_url=url)
    assert snap.acked == [url] and snap.options == {"core.proxy.store": "AbC123"}
    reconcile(snap, record, {"core": {"proxy.store": "AbC123"}}, assertions_url=url)
    assert snap.acked == [url]  # already set: no second ack


def test_switching_mode_undoes_the_previous_modes_options() -> None:
    snap = FakeSnap()
    record: dict[str, Any]
    record, _done = reconcile(snap, {}, PROXY)
    record, done = reconcile(snap, record, {"core": {"proxy.store": "AbC123"}})
    assert sorted(done["unset"]) == ["system.proxy.http", "system.proxy.https"]
    assert snap.options == {"core.proxy.store": "AbC123"} and list(record) == ["core.proxy.store"]


@pytest.fixture
def store_proxy() -> Iterator[str]:
    """A stand-in Snap Store Proxy on 127.0.0.1 that serves its assertions."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  # http.server's name
            body = ASSERTIONS if self.path == "/v2/auth/store/assertions" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _snap_cli(tmp_path: Path) -> Path:
    """A `snap` that copies the file given to `snap ack` next to itself."""
    cli = tmp_path / "snap"
    cli.write_text(f'#!/bin/sh\n[ "$1" = ack ] && cp "$2" {tmp_path}/acked\n')
    cli.chmod(0o755)
    return cli


def test_ack_downloads_the_assertions_and_hands_them_to_snap(
    tmp_path: Path, module: AnsibleModule, store_proxy: str
) -> None:
    Snap(module, str(_snap_cli(tmp_path))).ack(store_proxy + "/v2/auth/store/assertions")
    assert (tmp_path / "acked").read_bytes() == ASSERTIONS


def test_ack_fails_on_an_http_error_and_acks_nothing(
    tmp_path: Path, module: AnsibleModule, store_proxy: str
) -> None:
    with pytest.raises(urllib.error.HTTPError):
        Snap(module, str(_snap_cli(tmp_path))).ack(store_proxy + "/nothing-here")
    assert not (tmp_path / "acked").exists()
