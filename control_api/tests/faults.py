"""Fault injection for the dependency tests: a TCP proxy that can go silent.

A frozen proxy keeps every connection open and accepts new ones, but forwards nothing in
either direction: to the client, the server behind it is alive at the TCP level (the kernel
acknowledges every byte) and never answers, like a PostgreSQL or Redis that is stopped with
SIGSTOP, stuck on a full disk, or behind a broken middlebox. No socket option detects that;
only a deadline in the client does."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, urlsplit, urlunsplit


def through(url: str, proxy_port: int) -> str:
    """`url` (postgresql:// or redis://) pointed at a proxy on 127.0.0.1:`proxy_port`. For
    PostgreSQL a password that libpq would take from the password file for the real address is
    written into the URL, since the proxy's port has no entry there."""
    parts = urlsplit(url)
    user = parts.username or ""
    password = parts.password
    if password is None and parts.scheme.startswith("postgres"):
        password = _pgpass(parts.hostname or "", parts.port or 5432, user)
    auth = quote(user) + (":" + quote(password, safe="") if password else "")
    netloc = (auth + "@" if auth else "") + f"127.0.0.1:{proxy_port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _pgpass(host: str, port: int, user: str) -> str | None:
    path = Path(os.environ.get("PGPASSFILE", Path.home() / ".pgpass"))
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        fields = line.split(":")
        if len(fields) != 5 or line.startswith("#"):
            continue
        want = (host, str(port), "*", user)
        if all(f in ("*", w) for f, w in zip(fields[:4], want, strict=True)):
            return fields[4]
    return None


class FreezableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> FreezableProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self._closed = True
        self._flowing.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close() does not)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the pumps' recv()
                except OSError:
                    pass
                sock.close()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # frozen: hold the bytes, forward nothing
                if self._closed:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
