"""The real parts around the registry proxy's nginx, each on a free port of 127.0.0.1.

- ``Daemon``: a process (nginx, docker-registry, dnsmasq, the control_api registry-auth
  listener) started in the foreground, waited for on its port, stopped by its own PID.
- ``Pki``: a root CA, two intermediates and a server certificate (a validator registry's TLS).
- ``push_image``: a small image (one gzip layer, a config, a schema 2 manifest) pushed with
  the registry HTTP API.
- ``ValidatorFront``: stands in for a validator's registry front. It checks the miner's pull
  signature the way the validator does (bittensor-wallet, purpose ``registry``, nonce within
  600 s), records every request and forwards the signed ones to its docker-registry.
- ``Containerd``: containerd (``$CHUTES_K8S_DIR/bin``, the cluster's own build) with its socket
  and state under a directory; ``ctr images pull`` runs in a private mount namespace whose
  /etc/hosts maps the proxy names to 127.0.0.1, as a GPU node's does.
- ``render``: the role's template through Ansible's own template engine.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import re
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from bittensor_wallet import Keypair
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.ansible_env import REPO
from tests.k8s.controlplane import _issue, _name

TEMPLATE = (
    REPO
    / "collections/ansible_collections/chutes/miner/roles/miner_registry_proxy/templates"
    / "nginx.conf.j2"
)
HOST_SUFFIX = ".localregistry.chutes.ai"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
SETUP = "tests/registry_proxy/setup.sh"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_dns_port() -> int:
    """A port free for UDP and TCP both (dnsmasq listens on both)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no port free for both UDP and TCP on 127.0.0.1")


def require(binary: str) -> str:
    """The path of a packaged binary the tests need; a clear failure when it is missing."""
    for directory in ("/usr/sbin", "/usr/bin"):
        path = Path(directory) / binary
        if path.exists():
            return str(path)
    raise AssertionError(f"{binary} is not installed: run {SETUP} (make pytest does)")


# -- processes --------------------------------------------------------------------------------


class Daemon:
    """A foreground process with its output in a log file; ``stop()`` ends it by its PID."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None):
        self.name = name
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_tcp(self, port: int, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.proc.returncode}):\n{self.output()}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(
            f"{self.name} not listening on {port} in {timeout_s} s:\n{self.output()}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextmanager
def running(
    name: str, argv: Sequence[str], log: Path, port: int, env: dict[str, str] | None = None
) -> Iterator[Daemon]:
    daemon = Daemon(name, argv, log, env)
    try:
        daemon.wait_tcp(port)
        yield daemon
    finally:
        daemon.stop()


@contextmanager
def dns_server(workdir: Path, domain: str) -> Iterator[str]:
    """dnsmasq answering every name under ``domain`` with 127.0.0.1 (and nothing else):
    the stand-in for the cluster DNS. Yields ``127.0.0.1:<port>``."""
    port = free_dns_port()
    argv = [
        require("dnsmasq"),
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        f"--port={port}",
        f"--address=/{domain}/127.0.0.1",
        f"--pid-file={workdir / 'dnsmasq.pid'}",
        "--user=nobody",
        "--group=nogroup",
        "--log-facility=-",
    ]
    daemon = Daemon("dnsmasq", argv, workdir / "dnsmasq.log", None)
    try:
        _wait_dns(daemon, port, f"probe.{domain}")
        yield f"127.0.0.1:{port}"
    finally:
        daemon.stop()


def _wait_dns(daemon: Daemon, port: int, name: str) -> None:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        for _ in range(50):
            if daemon.proc.poll() is not None:
                break
            s.sendto(query, ("127.0.0.1", port))
            try:
                answer = s.recv(512)
            except OSError:
                continue
            if answer[:2] == b"\x12\x34" and answer.endswith(bytes([127, 0, 0, 1])):
                return
    raise AssertionError(f"dnsmasq does not answer on {port}:\n{daemon.output()}")


@contextmanager
def docker_registry(workdir: Path, name: str) -> Iterator[int]:
    """Debian's docker-registry (distribution) on a free port, storage under ``workdir``."""
    port = free_port()
    root = workdir / name
    root.mkdir()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    path = workdir / f"{name}.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    with running(name, [require("docker-registry"), "serve", str(path)], root / "log", port):
        yield port


# -- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """root CA -> two intermediate CAs -> server certificate for ``server_name`` (chains
    with more than one intermediate exist in the wild: cross-signed roots)."""

    root_pem_path: Path
    server_context: ssl.SSLContext

    @classmethod
    def create(cls, workdir: Path, server_name: str) -> Pki:
        root = _issue(_name("chutes test root CA"), None)
        upper = _issue(_name("chutes test intermediate CA 1"), root, ca=True)
        lower = _issue(_name("chutes test intermediate CA 2"), upper, ca=True)
        server = _issue(
            _name(server_name),
            lower,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=[x509.DNSName(server_name)],
        )
        root_path = workdir / "root-ca.pem"
        root_path.write_bytes(root.cert_pem())
        chain = workdir / "server-chain.pem"
        chain.write_bytes(server.cert_pem() + lower.cert_pem() + upper.cert_pem())
        key = workdir / "server-key.pem"
        key.write_bytes(server.key_pem())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain, key)
        return cls(root_path, context)


# -- images -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    name: str
    tag: str
    manifest: bytes
    digest: str
    layer: bytes
    layer_digest: str


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(registry_port: int, name: str, tag: str, marker: str) -> Image:
    """One gzip layer holding ``/marker`` (whose text differs per registry), its config and a
    schema 2 manifest, uploaded with the registry HTTP API straight to the registry."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        data = marker.encode()
        info = tarfile.TarInfo("marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"marker": marker}},
            "rootfs": {"type": "layers", "diff_ids": [_sha256(tar_bytes.getvalue())]},
        }
    ).encode()
    base = f"http://127.0.0.1:{registry_port}/v2/{name}"
    with httpx.Client(timeout=10) as http:
        for blob in (layer, config):
            started = http.post(f"{base}/blobs/uploads/")
            assert started.status_code == 202, started.text
            location = httpx.URL(started.headers["Location"])
            done = http.put(
                location.copy_merge_params({"digest": _sha256(blob)}),
                content=blob,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert done.status_code == 201, done.text
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_V2,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": _sha256(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(layer),
                        "digest": _sha256(layer),
                    }
                ],
            }
        ).encode()
        put = http.put(
            f"{base}/manifests/{tag}", content=manifest, headers={"Content-Type": MANIFEST_V2}
        )
        assert put.status_code == 201, put.text
        assert put.headers["Docker-Content-Digest"] == _sha256(manifest)
    return Image(name, tag, manifest, _sha256(manifest), layer, _sha256(layer))


# -- the validator side -----------------------------------------------------------------------


def registry_signature_ok(headers: dict[str, str], miner_ss58: str, now: float) -> bool:
    """The validator's check of a pull (D2 over ``{hotkey}:{nonce}:registry``), written here
    with bittensor-wallet alone: the hotkey is the miner's, the nonce is Unix seconds within
    600 s of now, the signature is 128 hex characters and verifies."""
    hotkey = headers.get("x-chutes-hotkey", "")
    nonce = headers.get("x-chutes-nonce", "")
    signature = headers.get("x-chutes-signature", "")
    if hotkey != miner_ss58 or not re.fullmatch(r"[0-9]{1,12}", nonce):
        return False
    if abs(now - int(nonce)) >= 600 or not re.fullmatch(r"[0-9a-f]{128}", signature):
        return False
    message = f"{hotkey}:{nonce}:registry".encode()
    return bool(Keypair(ss58_address=hotkey).verify(message, bytes.fromhex(signature)))


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    verified: bool


@dataclass
class ValidatorFront:
    """A validator's registry front: refuses a pull whose signature does not verify (401),
    forwards the others to its docker-registry, and records every request it gets."""

    registry_port: int
    miner_ss58: str
    seen: list[Seen] = field(default_factory=list)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = registry_signature_ok(headers, self.miner_ss58, time.time())
        self.seen.append(Seen(request.command, request.path, headers, verified))
        if not verified:
            refusal = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad registry signature"}]}'
            request.send_response(401)
            request.send_header("Content-Length", str(len(refusal)))
            request.end_headers()
            request.wfile.write(refusal)
            return
        length = int(headers.get("content-length", "0") or "0")
        body = request.rfile.read(length) if length else None
        forwarded = {
            k: v
            for k, v in headers.items()
            if k not in ("host", "connection") and not k.startswith("x-chutes-")
        }
        upstream = http.client.HTTPConnection("127.0.0.1", self.registry_port, timeout=10)
        try:
            upstream.request(request.command, request.path, body=body, headers=forwarded)
            reply = upstream.getresponse()
            data = reply.read()
            request.send_response(reply.status)
            for name, value in reply.getheaders():
                if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                    request.send_header(name, value)
            length_header = reply.getheader("Content-Length")
            if request.command == "HEAD" and length_header is not None:
                request.send_header("Content-Length", length_header)
            else:
                request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(data)
        finally:
            upstream.close()

    def requests(self, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if method is None or s.method == method]


@contextmanager
def serving(front: ValidatorFront, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """The front on a free port (HTTPS with ``tls``), served from a thread."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            pass

        def _front(self) -> None:
            front.handle(self)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _front

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- containerd -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Containerd:
    ctr: str
    address: Path
    certs_dir: Path  # containerd's certs.d layout, passed as --hosts-dir
    hosts_file: Path

    def _ctr(self, *args: str) -> list[str]:
        return [self.ctr, "--address", str(self.address), *args]

    def pull(self, ref: str, names: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """``ctr images pull`` (fetched in the client, unpacked) with ``names`` -> 127.0.0.1."""
        self.hosts_file.write_text("127.0.0.1 localhost " + " ".join(names) + "\n")
        script = 'mount --bind "$1" /etc/hosts && shift && exec "$@"'
        pull = self._ctr("images", "pull", "--local", "--snapshotter", "native")
        pull += ["--hosts-dir", str(self.certs_dir), ref]
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
            + [str(self.hosts_file), *pull],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def image_digest(self, ref: str) -> str:
        listing = subprocess.run(
            self._ctr("images", "ls"), capture_output=True, text=True, check=True, timeout=30
        ).stdout
        for line in listing.splitlines():
            fields = line.split()
            if fields and fields[0] == ref:
                return next(f for f in fields if f.startswith("sha256:"))
        raise AssertionError(f"{ref} is not in containerd's images:\n{listing}")


@contextmanager
def containerd(workdir: Path) -> Iterator[Containerd]:
    bindir = Path(os.environ.get("CHUTES_K8S_DIR", "/nonexistent")) / "bin"
    for binary in ("containerd", "ctr"):
        if not (bindir / binary).exists():
            raise AssertionError(
                f"{bindir / binary} is missing: source tests/lab/env.sh and run make k8s-bin"
            )
    root = workdir / "containerd"
    root.mkdir()
    address = root / "containerd.sock"
    config = root / "config.toml"
    config.write_text(
        "version = 3\n"
        f'root = "{root}/root"\n'
        f'state = "{root}/state"\n'
        # nothing of Kubernetes' runtime: the proxy is reached by the image resolver alone
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images",'
        ' "io.containerd.cri.v1.runtime"]\n'
        f'[grpc]\n  address = "{address}"\n'
        f'[ttrpc]\n  address = "{address}.ttrpc"\n'
    )
    daemon = Daemon(
        "containerd", [str(bindir / "containerd"), "--config", str(config)], root / "log", None
    )
    try:
        deadline = time.monotonic() + 15
        while not address.exists():
            if daemon.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"containerd did not start:\n{daemon.output()}")
            time.sleep(0.05)
        certs = root / "certs.d"
        certs.mkdir()
        yield Containerd(str(bindir / "ctr"), address, certs, root / "hosts")
    finally:
        daemon.stop()


# -- the template -----------------------------------------------------------------------------


def render(variables: dict[str, Any], template: Path = TEMPLATE) -> str:
    """A role template as the role renders it: Ansible's engine and filters, undefined = error."""
    templar = Templar(
        loader=DataLoader(), variables={"ansible_managed": "Ansible managed", **variables}
    )
    return str(templar.template(trust_as_template(template.read_text())))


def template_inputs() -> tuple[list[str], list[str]]:
    """(inputs listed in the template's header comment, role variables its body uses)."""
    text = TEMPLATE.read_text()
    header, body = text.split("#}", 1)
    listed = re.findall(r"^\s+(miner_registry_proxy_\w+)\s", header, re.MULTILINE)
    used = sorted(set(re.findall(r"\bminer_registry_proxy_\w+", body)))
    return listed, used
