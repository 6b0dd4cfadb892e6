#!/usr/bin/env python3
"""Lab fault endpoints for mirror probes (stdlib only; one mode per port).

Modes:
  ok        healthy stand-in: fresh signed-looking InRelease, a PyPI page listing
            ``pip-``, a registry ``/v2/`` and manifests, files, 200 everywhere
  forbidden 403 for every request (an allowlist mirror or a geo-block)
  allowlist registry ``/v2/`` 200 but 403 for every manifest (DaoCloud-style)
  ratelimit 429 for every request
  hang      accepts, then never answers (bounded by --hang seconds, then closes)
  stale     like ok, but InRelease is 10 days old (Valid-Until passed)
  redirect  302 to a blocked host (huggingface.co) for every request

Usage: fault_server.py --bind 0.0.0.0 --port ok=8200 --port forbidden=8403 ...
Tests import ``serve()`` and get the bound ports back.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import http.server
import threading
import time
from collections.abc import Iterable

MODES = ("ok", "forbidden", "allowlist", "ratelimit", "hang", "stale", "redirect")
FILE_BODY = b"chutes-miner lab artifact\n"
FILE_SHA256 = hashlib.sha256(FILE_BODY).hexdigest()
MANIFEST = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}'
)


def in_release(age_s: float) -> bytes:
    """A signed-looking InRelease; its Valid-Until is one day after its Date."""
    date = email.utils.formatdate(time.time() - age_s, usegmt=True)
    until = email.utils.formatdate(time.time() - age_s + 86400, usegmt=True)
    return (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"
        f"Origin: chutes-lab\nLabel: chutes-lab\nDate: {date}\nValid-Until: {until}\n"
        "-----BEGIN PGP SIGNATURE-----\n\nbGFi\n-----END PGP SIGNATURE-----\n"
    ).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "chutes-lab-fault/1"
    mode = "ok"
    hang_s = 20.0

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  # stdlib signature
        return

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802  # stdlib naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802  # stdlib naming
        mode = self.mode
        if mode == "hang":
            time.sleep(self.hang_s)
            self.close_connection = True
            return
        if mode == "forbidden":
            return self._send(403, b"forbidden\n")
        if mode == "ratelimit":
            return self._send(429, b"too many requests\n")
        if mode == "redirect":
            return self._send(302, headers={"Location": "https://huggingface.co" + self.path})
        path = self.path.split("?", 1)[0]
        if path.startswith("/v2/"):
            if "/manifests/" in path:
                if mode == "allowlist":
                    return self._send(403, b'{"errors":[{"code":"DENIED"}]}')
                digest = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
                return self._send(
                    200,
                    MANIFEST,
                    {
                        "Content-Type": "application/vnd.oci.image.manifest.v1+json",
                        "Docker-Content-Digest": digest,
                    },
                )
            return self._send(200, b"{}", {"Content-Type": "application/json"})
        if path.endswith("InRelease"):
            return self._send(200, in_release(10 * 86400 if mode == "stale" else 60))
        if path.rstrip("/").endswith("/pip"):
            return self._send(
                200,
                b'<a href="../../packages/pip-24.0-py3-none-any.whl">'
                b"pip-24.0-py3-none-any.whl</a>\n",
            )
        return self._send(200, FILE_BODY)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # parallel probes: the default backlog of 5 drops SYNs (1 s retries)


def serve(
    bind: str, ports: Iterable[tuple[str, int]], hang_s: float = 20.0
) -> list[tuple[str, _Server]]:
    """Start one server per (mode, port) in daemon threads; port 0 picks a free one."""
    out = []
    for mode, port in ports:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        handler = type(f"{mode.title()}Handler", (Handler,), {"mode": mode, "hang_s": hang_s})
        server = _Server((bind, port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        out.append((mode, server))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", action="append", default=[], help="MODE=PORT, repeatable")
    parser.add_argument(
        "--hang", type=float, default=20.0, help="seconds a hang request is held (bounded)"
    )
    parser.add_argument(
        "--lifetime", type=float, default=3600.0, help="exit after this many seconds"
    )
    args = parser.parse_args()
    pairs = [(m, int(p)) for m, p in (item.split("=", 1) for item in args.port)]
    serve(args.bind, pairs, args.hang)
    time.sleep(args.lifetime)


if __name__ == "__main__":
    main()
