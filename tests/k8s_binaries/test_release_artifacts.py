"""chutes.miner.release_artifacts against a real local HTTP server: every download is verified
before anything is installed, a mismatch installs nothing and says so in English and Chinese,
and a rerun downloads nothing."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.chutes.miner.plugins.modules import release_artifacts as ra


class _Tree(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  # stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802  # stdlib naming
        type(self).requests.append(self.path)
        super().do_GET()


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, str, list[str]]]:
    """A release tree on disk served on 127.0.0.1: (root, base URL, request log)."""
    root = tmp_path / "release"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_Tree,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def _publish(root: Path, rel: str, data: bytes, listing: str = "bare") -> None:
    """Put ``data`` at ``rel`` with a .sha256 next to it (bare digest or sha256sum line)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    line = digest if listing == "bare" else f"{digest}  {path.name}"
    (root / f"{rel}.sha256").write_text(line + "\n")


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _run(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """The module's run() with a real AnsibleModule for its file writes (atomic_move)."""
    with patch_module_args({}):
        module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    return ra.run(params, check_mode, module)


def _params(tmp_path: Path, artifacts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "artifacts": [
            {"checksum_urls": None, "sha256": "", "dest": None, "files": None, "mode": "0755", **a}
            for a in artifacts
        ],
        "staging_dir": str(tmp_path / "state" / "staging"),
        "state_file": str(tmp_path / "state" / "installed.json"),
        "timeout": 5,
        "retries": 1,
    }


def _layout(root: Path, base: str, out: Path) -> list[dict[str, Any]]:
    _publish(root, "kubernetes/v1.34.4/bin/linux/amd64/kubelet", b"kubelet-binary")
    _publish(root, "kubernetes/v1.34.4/bin/linux/amd64/kubectl", b"kubectl-binary")
    archive = "files/github.com/containerd/containerd/releases/download/v2.2.9/c.tar.gz"
    _publish(
        root,
        archive,
        _tgz({"bin/containerd": b"containerd-binary", "bin/ctr": b"ctr-binary"}),
        listing="sha256sum",
    )
    k8s = f"{base}/kubernetes/v1.34.4/bin/linux/amd64"
    return [
        {"name": "kubelet", "url": f"{k8s}/kubelet", "dest": str(out / "kubelet")},
        {"name": "kubectl", "url": f"{k8s}/kubectl", "dest": str(out / "kubectl")},
        {
            "name": "containerd",
            "url": f"{base}/{archive}",
            "files": {"bin/containerd": str(out / "containerd"), "bin/ctr": str(out / "ctr")},
        },
    ]


def test_installs_after_verifying_and_reruns_download_nothing(
    tree: tuple[Path, str, list[str]], tmp_path: Path
) -> None:
    root, base, requests = tree
    out = tmp_path / "bin"
    params = _params(tmp_path, _layout(root, base, out))
    result = _run(params, check_mode=False)
    assert result["changed"] and result["installed"] == ["kubelet", "kubectl", "containerd"]
    assert (out / "kubelet").read_bytes() == b"kubelet-binary"
    assert (out / "ctr").read_bytes() == b"ctr-binary"
    assert oct((out / "containerd").stat().st_mode & 0o777) == "0o755"
    assert os.listdir(params["staging_dir"]) == []
    # Rerun: nothing downloaded, not even a checksum file.
    requests.clear()
    again = _run(params, check_mode=False)
    assert not again["changed"] and again["current"] == ["kubelet", "kubectl", "containerd"]
    assert requests == []


def test_a_changed_file_on_disk_is_installed_again(
    tree: tuple[Path, str, list[str]], tmp_path: Path
) -> None:
    root, base, requests = tree
    out = tmp_path / "bin"
    params = _params(tmp_path, _layout(root, base, out))
    _run(params, check_mode=False)
    (out / "kubelet").write_bytes(b"replaced by hand")
    requests.clear()
    result = _run(params, check_mode=False)
    assert result["installed"] == ["kubelet"] and result["changed_files"] == [str(out / "kubelet")]
    assert (out / "kubelet").read_bytes() == b"kubelet-binary"
    assert sorted(requests) == sorted(
        [
            "/kubernetes/v1.34.4/bin/linux/amd64/kubelet",
            "/kubernetes/v1.34.4/bin/linux/amd64/kubelet.sha256",
        ]
    )
    # Touched but identical: rehashed once, not reinstalled.
    os.utime(out / "kubectl", (1, 1))
    assert not _run(params, check_mode=False)["changed"]


def test_one_tampered_binary_installs_nothing(
    tree: tuple[Path, str, list[str]], tmp_path: Path
) -> None:
    root, base, _ = tree
    out = tmp_path / "bin"
    params = _params(tmp_path, _layout(root, base, out))
    # The mirror serves a different kubectl than its published checksum.
    (root / "kubernetes/v1.34.4/bin/linux/amd64/kubectl").write_bytes(b"evil")
    with pytest.raises(ra.ArtifactError) as err:
        _run(params, check_mode=False)
    (problem,) = err.value.problems
    want = hashlib.sha256(b"kubectl-binary").hexdigest()
    assert "kubectl: sha256 mismatch" in problem[0] and want in problem[0]
    assert "sha256 不一致" in problem[1]
    assert not out.exists(), "nothing may be installed when one download does not verify"
    assert os.listdir(params["staging_dir"]) == []
    assert not Path(params["state_file"]).exists()


def test_every_problem_is_reported_at_once(
    tree: tuple[Path, str, list[str]], tmp_path: Path
) -> None:
    root, base, _ = tree
    out = tmp_path / "bin"
    artifacts = _layout(root, base, out)
    (root / "kubernetes/v1.34.4/bin/linux/amd64/kubelet.sha256").unlink()
    artifacts[1]["sha256"] = "0" * 64  # a wrong pin wins over the mirror's checksum file
    artifacts[2]["files"]["bin/runc"] = str(out / "runc")
    with pytest.raises(ra.ArtifactError) as err:
        _run(_params(tmp_path, artifacts), check_mode=False)
    english = [en for en, _ in err.value.problems]
    assert len(english) == 3, english
    assert english[0].startswith("kubelet: no checksum found") and "HTTP 404" in english[0]
    assert english[1].startswith("kubectl: sha256 mismatch")
    assert english[2] == "containerd: archive lacks bin/runc"
    assert all(zh for _, zh in err.value.problems)
    assert not out.exists()


def test_checksum_files_are_tried_in_order(
    tree: tuple[Path, str, list[str]], tmp_path: Path
) -> None:
    """No .sha256 next to the asset: the release's SHA256SUMS (several lines) is used."""
    root, base, _ = tree
    data = b"etcd-archive"
    rel = "files/github.com/etcd-io/etcd/releases/download/v3.6.16"
    (root / rel).mkdir(parents=True)
    (root / rel / "etcd.tar.gz").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (root / rel / "SHA256SUMS").write_text(f"{'0' * 64}  other.zip\n{digest}  etcd.tar.gz\n")
    url = f"{base}/{rel}/etcd.tar.gz"
    artifact = {
        "name": "etcd",
        "url": url,
        "checksum_urls": [f"{url}.sha256", f"{base}/{rel}/SHA256SUMS"],
        "dest": str(tmp_path / "bin" / "etcd.tar.gz"),
    }
    assert _run(_params(tmp_path, [artifact]), check_mode=False)["installed"] == ["etcd"]


def test_pinned_digest_and_offline_directory(tmp_path: Path) -> None:
    """file:///dir works like a mirror; a pinned sha256 needs no checksum file."""
    root = tmp_path / "bundle"
    data = b"runc-binary"
    (root / "runc").parent.mkdir(parents=True)
    (root / "runc").write_bytes(data)
    out = tmp_path / "bin"
    artifact = {
        "name": "runc",
        "url": f"file://{root}/runc",
        "sha256": hashlib.sha256(data).hexdigest(),
        "dest": str(out / "runc"),
    }
    params = _params(tmp_path, [artifact])
    assert _run(params, check_mode=False)["installed"] == ["runc"]
    assert (out / "runc").read_bytes() == data
    record = json.loads(Path(params["state_file"]).read_text())["artifacts"]["runc"]
    assert record["files"][str(out / "runc")]["sha256"] == hashlib.sha256(data).hexdigest()


def test_check_mode_downloads_and_installs_nothing(
    tree: tuple[Path, str, list[str]], tmp_path: Path
) -> None:
    root, base, requests = tree
    out = tmp_path / "bin"
    result = _run(_params(tmp_path, _layout(root, base, out)), check_mode=True)
    assert result["changed"] and len(result["installed"]) == 3
    assert requests == [] and not out.exists()


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("ab" * 32 + "\n", "ab" * 32),
        ("cd" * 32 + "  c.tar.gz\n", "cd" * 32),
        ("11" * 32 + "  other.tgz\n" + "22" * 32 + " *c.tar.gz\n", "22" * 32),
        ("33" * 32 + "  ./dir/c.tar.gz\n", "33" * 32),
        ("44" * 32 + "  other.tgz\n", None),
        ("<html>404</html>", None),
    ],
)
def test_checksum_file_formats(text: str, want: str | None) -> None:
    assert ra.expected_digest(text, "http://m/x/c.tar.gz") == want
