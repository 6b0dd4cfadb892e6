"""/remote_token against a real local HTTPS server with a throwaway self-signed certificate.

The app's HTTP client factory is injected only to trust that certificate (and to turn
redirect-following ON, proving the route disables redirects itself). TLS, the size cap, the
timeout, the allow-list and the URL rules all run for real.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from graval_bootstrap import app as app_module
from graval_bootstrap.config import Settings

if TYPE_CHECKING:
    from conftest import AppFactory, Keys


@dataclass
class TokenServer:
    port: int
    cafile: Path
    hits: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def reply(self, status: int, body: bytes, **headers: str) -> None:
            self.send_response(status)
            for key_, value in headers.items():
                self.send_header(key_, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            if self.path == "/token":
                self.reply(200, json.dumps({"token": "tok-123"}).encode())
            elif self.path == "/redirect":
                self.reply(302, b"", Location="/token")
            elif self.path == "/big":
                self.reply(200, json.dumps({"token": "x" * 70_000}).encode())
            elif self.path == "/notjson":
                self.reply(200, b"hello")
            elif self.path == "/nottoken":
                self.reply(200, json.dumps({"token": 5}).encode())
            elif self.path == "/slow":
                time.sleep(1.5)
                self.reply(200, json.dumps({"token": "late"}).encode())
            else:
                self.reply(500, b"boom")

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # the bootstrap hung up on /slow: expected

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield TokenServer(port=httpd.server_address[1], cafile=cert, hits=hits)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def token_client(
    make_app: AppFactory, settings: Settings, server: TokenServer
) -> Iterator[TestClient]:
    def trusting_client() -> httpx.AsyncClient:
        context = ssl.create_default_context(cafile=str(server.cafile))
        return httpx.AsyncClient(verify=context, trust_env=False, follow_redirects=True)

    settings_ = replace(
        settings, remote_token_allowed_hosts=(f"localhost:{server.port}", "api.chutes.test")
    )
    app = make_app(settings_=settings_, http_client=trusting_client)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def call(client: TestClient, keys: Keys, url: str) -> httpx.Response:
    body = json.dumps({"token_url": url}).encode()
    response: httpx.Response = client.post(
        "/remote_token", content=body, headers=keys.body(keys.validator, body)
    )
    return response


def test_token(token_client: TestClient, keys: Keys, server: TokenServer) -> None:
    response = call(token_client, keys, server.url("/token"))
    assert response.status_code == 200
    assert response.text == "tok-123"
    assert response.headers["content-type"].startswith("text/plain")


def test_redirect_not_followed(token_client: TestClient, keys: Keys, server: TokenServer) -> None:
    server.hits.clear()
    response = call(token_client, keys, server.url("/redirect"))
    assert response.status_code == 502
    assert server.hits == ["/redirect"]


@pytest.mark.parametrize("path", ["/big", "/notjson", "/nottoken", "/error"])
def test_bad_upstream_502(
    token_client: TestClient, keys: Keys, server: TokenServer, path: str
) -> None:
    response = call(token_client, keys, server.url(path))
    assert (response.status_code, response.json()) == (502, {"detail": "token fetch failed"})


def test_timeout_502(
    token_client: TestClient, keys: Keys, server: TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "TOKEN_TIMEOUT_S", 0.3)
    start = time.monotonic()
    response = call(token_client, keys, server.url("/slow"))
    assert response.status_code == 502
    assert time.monotonic() - start < 1.2


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/token",
        "https://127.0.0.1:{port}/token",  # allow-list matches the host name, not its address
        "https://evil.example:{port}/token",
        "https://user:pw@localhost:{port}/token",
        "https://localhost:1/token",
        "https://api.chutes.test:8443/token",  # bare entry: port 443 only
        "ftp://localhost:{port}/token",
        "not a url",
        "https://[::1/token",
    ],
)
def test_url_rules_400(token_client: TestClient, keys: Keys, server: TokenServer, url: str) -> None:
    server.hits.clear()
    response = call(token_client, keys, url.format(port=server.port))
    assert response.status_code == 400
    assert server.hits == []


def test_missing_token_url_422(token_client: TestClient, keys: Keys) -> None:
    body = b'{"url": "x"}'
    response = token_client.post(
        "/remote_token", content=body, headers=keys.body(keys.validator, body)
    )
    assert response.status_code == 422


def test_default_client_verifies_tls(
    make_app: AppFactory,
    settings: Settings,
    keys: Keys,
    server: TokenServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings_ = replace(settings, remote_token_allowed_hosts=(f"localhost:{server.port}",))
    with TestClient(make_app(settings_=settings_), raise_server_exceptions=False) as client:
        response = call(client, keys, server.url("/token"))
    assert response.status_code == 502  # self-signed certificate refused


def test_auth_required(token_client: TestClient, keys: Keys, server: TokenServer) -> None:
    body = json.dumps({"token_url": server.url("/token")}).encode()
    headers = keys.d1(keys.validator, "graval")  # upstream checked `graval`, not the body hash
    response = token_client.post("/remote_token", content=body, headers=headers)
    assert response.status_code == 401
