"""Probes against real local servers (tests/lab/fault_server.py on 127.0.0.1)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ansible_collections.chutes.miner.plugins.module_utils import mirror_probing as p

from tests.lab import fault_server as fs

BLOCKED = ["huggingface.co", "hf.co", "docker.io", "github.com"]


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    servers = fs.serve("127.0.0.1", [(mode, 0) for mode in fs.MODES], hang_s=4)
    yield {mode: f"http://127.0.0.1:{srv.server_address[1]}" for mode, srv in servers}
    for _, srv in servers:
        srv.shutdown()
        srv.server_close()


def spec(kind: str, url: str, **kw: Any) -> dict[str, Any]:
    return {"key": f"{kind}/{url}", "kind": kind, "url": url, "blocked": BLOCKED, **kw}


@pytest.mark.parametrize(
    ("mode", "healthy", "reason"),
    [
        ("ok", True, ""),
        ("forbidden", False, "403"),
        ("ratelimit", False, "429"),
        ("stale", False, "stale"),
        ("hang", False, "timeout"),
        ("redirect", False, "redirect"),
    ],
)
def test_apt_probe(urls: dict[str, str], mode: str, healthy: bool, reason: str) -> None:
    res = p.probe_one(spec("apt", urls[mode] + "/debian/", suite="bookworm", max_age_hours=48), 1)
    assert (res["healthy"], res["reason"]) == (healthy, reason), res


def test_old_date_only_warns(urls: dict[str, str]) -> None:
    res = p.probe_one(spec("flat_apt", urls["ok"] + "/cuda/", max_age_hours=0.001), 1)
    assert res["healthy"] and "old" in res["warning"]


def test_registry_needs_the_manifest_not_just_v2(urls: dict[str, str]) -> None:
    images = ["library/busybox:latest", "pause@sha256:" + "0" * 64]
    assert p.probe_one(spec("registry", urls["ok"], images=images), 1)["healthy"]
    res = p.probe_one(spec("registry", urls["allowlist"], images=images), 1)
    assert (
        not res["healthy"] and res["reason"] == "403" and "library/busybox:latest" in res["status"]
    )
    res = p.probe_one(
        spec(
            "registry",
            urls["ok"] + "/v2/google_containers",
            override_path=True,
            images=["pause:3.10"],
        ),
        1,
    )
    assert res["healthy"], res


def test_pypi_and_files(urls: dict[str, str]) -> None:
    assert p.probe_one(spec("pypi", urls["ok"] + "/simple/"), 1)["healthy"]
    assert not p.probe_one(spec("pypi", urls["ok"] + "/simple/", package="six"), 1)["healthy"]
    good = spec(
        "file", urls["ok"], path="github.com/o/r/releases/download/v1/a.txt", sha256=fs.FILE_SHA256
    )
    assert p.probe_one(good, 1)["healthy"]
    assert p.probe_one({**good, "sha256": "0" * 64}, 1)["reason"] == "checksum"


def test_probes_ignore_the_proxy_environment(
    urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy from the environment would test the proxy, not the mirror: probes go direct."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert p.probe_one(spec("pypi", urls["ok"] + "/simple/"), 1)["healthy"]


def test_k8s_release_tree_needs_a_digest(urls: dict[str, str], tmp_path: Any) -> None:
    """The pinned .sha256 must hold a hex digest: the fault server's 200 body is not one."""
    path = "v1.34.4/bin/linux/amd64/kubectl.sha256"
    res = p.probe_one(spec("k8s_release", urls["ok"], path=path), 1)
    assert (res["healthy"], res["reason"]) == (False, "content"), res
    assert p.probe_one(spec("k8s_release", urls["forbidden"], path=path), 1)["reason"] == "403"
    # An offline directory on the probed host: the same tree, read from disk.
    tree = tmp_path / "kubernetes"
    (tree / "v1.34.4/bin/linux/amd64").mkdir(parents=True)
    (tree / path).write_text("ab" * 32 + "\n")
    res = p.probe_one(spec("k8s_release", f"file://{tree}", path=path), 1)
    assert res["healthy"] and res["status"] == "file ok, digest ok", res
    res = p.probe_one(spec("k8s_release", f"file://{tree}", path="v9/kubectl.sha256"), 1)
    assert (res["healthy"], res["reason"]) == (False, "404"), res
    (tree / path).write_text("<html>not found</html>")
    assert p.probe_one(spec("k8s_release", f"file://{tree}", path=path), 1)["reason"] == "content"


def test_files_from_an_offline_directory(tmp_path: Any) -> None:
    asset = tmp_path / "github.com/o/r/releases/download/v1/a.txt"
    asset.parent.mkdir(parents=True)
    asset.write_bytes(fs.FILE_BODY)
    good = spec(
        "file",
        f"file://{tmp_path}",
        path="github.com/o/r/releases/download/v1/a.txt",
        sha256=fs.FILE_SHA256,
    )
    assert p.probe_one(good, 1)["healthy"]
    assert p.probe_one({**good, "sha256": "0" * 64}, 1)["reason"] == "checksum"
    assert p.probe_one({**good, "path": "missing"}, 1)["reason"] == "404"


def test_hf_redirect_to_blocked_host_warns_without_following(urls: dict[str, str]) -> None:
    res = p.probe_one(spec("hf", urls["redirect"], path="/gpt2/resolve/main/model.safetensors"), 1)
    assert res["healthy"] and "huggingface.co" in res["warning"]


def test_dns_and_ntp_against_local_udp_servers() -> None:
    def answer(sock: socket.socket, reply: Any) -> None:
        data, addr = sock.recvfrom(512)
        sock.sendto(reply(data), addr)

    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 0))
    ntp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ntp.bind(("127.0.0.1", 0))
    threading.Thread(
        target=answer, args=(dns, lambda q: q[:2] + b"\x81\x80" + q[4:]), daemon=True
    ).start()
    threading.Thread(
        target=answer,
        args=(
            ntp,
            lambda q: (
                b"\x24\x02"
                + b"\0" * 38
                + int(time.time() + 2208988800).to_bytes(4, "big")
                + b"\0" * 4
            ),
        ),
        daemon=True,
    ).start()
    try:
        assert p.probe_one(spec("dns", "127.0.0.1", name="lab.test", port=dns.getsockname()[1]), 1)[
            "healthy"
        ]
        assert p.probe_one(spec("ntp", "127.0.0.1", port=ntp.getsockname()[1]), 1)["healthy"]
    finally:
        dns.close()
        ntp.close()


def test_probes_run_in_parallel_and_are_bounded(urls: dict[str, str]) -> None:
    specs = [spec("apt", f"{urls['hang']}/d{i}/", suite="bookworm") for i in range(6)]
    specs.append(spec("apt", urls["ok"] + "/debian/", suite="bookworm"))
    start = time.monotonic()
    results = p.probe_all(specs, timeout=1)
    assert time.monotonic() - start < 3, "six 1 s timeouts must overlap"
    assert [r["healthy"] for r in results] == [False] * 6 + [True]


def test_recorded_choice_is_rechecked_first(urls: dict[str, str]) -> None:
    good = spec("apt", urls["ok"] + "/debian/", suite="bookworm")
    bad = spec("apt", urls["forbidden"] + "/debian/", suite="bookworm")
    mode, results = p.probe_with_record([bad, good], [good["key"]], 1)
    assert mode == "recorded" and [r["key"] for r in results] == [good["key"]]
    mode, results = p.probe_with_record([good, bad], [bad["key"]], 1)
    assert mode == "full" and len(results) == 2
