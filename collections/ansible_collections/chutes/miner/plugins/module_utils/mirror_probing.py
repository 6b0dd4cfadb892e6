# Copyright: chutes.miner developers
# MIT License
"""Parallel, bounded, content-checking probes of mirror candidates (stdlib only).

Each probe spec (built by mirrors_plan.build_plan) has a ``kind``:
apt (``dists/<suite>/InRelease``), flat_apt (``InRelease``), pypi (``<index>/<pkg>/``
lists ``<pkg>-``), registry (``/v2/`` then a manifest HEAD per required image, with
the bearer-token flow), file (GET, optional sha256), k8s_release (a release tree's
``.sha256`` file holds a hex digest), hf (no redirect to a blocked host), ntp (one SNTP
query), dns (one UDP A query). file and k8s_release candidates may be ``file:///dir``: a
directory on the probed host itself (an offline copy of the tree). Every probe has its own
timeout; the whole batch is bounded by ``deadline``.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import hashlib
import json
import os
import random
import re
import socket
import struct
import time
import urllib.error
import urllib.parse
from collections.abc import Iterable
from typing import Any

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url

_MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_UA = "chutes.miner.mirror_probe/1"


class _Fail(Exception):
    def __init__(self, reason: str, status: str) -> None:
        super().__init__(status)
        self.reason = reason
        self.status = status


def _blocked(host: str, blocked: Iterable[str]) -> bool:
    return any(host == b or host.endswith("." + b) for b in blocked)


def _http(
    url: str,
    timeout: float,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    follow: bool = True,
    limit: int = 1 << 20,
    blocked: Iterable[str] = (),
) -> tuple[int, dict[str, str], bytes]:
    blocked = tuple(blocked)
    for _hop in range(4):
        code, hdrs, body = _http_once(url, timeout, method, headers, limit)
        if not follow or code not in (301, 302, 303, 307, 308) or "location" not in hdrs:
            return code, hdrs, body
        target = urllib.parse.urljoin(url, hdrs["location"])
        host = urllib.parse.urlsplit(target).hostname or ""
        if _blocked(host, blocked):
            raise _Fail("redirect", f"HTTP {code} to blocked {host}")
        url = target
    raise _Fail("content", "too many redirects")


def _http_once(
    url: str, timeout: float, method: str, headers: dict[str, str] | None, limit: int
) -> tuple[int, dict[str, str], bytes]:
    try:
        # Probes go direct: a proxy from the environment would test the proxy, not the mirror.
        # Redirects are followed by hand in _http, so a blocked target is never contacted.
        # The body is read as sent (no gzip) and no ~/.netrc credentials are offered.
        with open_url(
            url,
            method=method,
            headers=headers,
            timeout=timeout,
            use_proxy=False,
            follow_redirects="none",
            http_agent=_UA,
            decompress=False,
            use_netrc=False,
        ) as resp:
            body = resp.read(limit) if method != "HEAD" else b""
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, b""
    except TimeoutError as exc:
        raise _Fail("timeout", "timeout") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise _Fail("timeout", "timeout") from exc
        raise _Fail("unreachable", f"error: {exc.reason}"[:80]) from exc
    except (OSError, ValueError, UrlsConnectionError) as exc:
        raise _Fail("unreachable", f"error: {exc}"[:80]) from exc


def _expect(code: int, ok: tuple[int, ...] = (200,)) -> None:
    if code not in ok:
        reason = str(code) if code in (403, 404, 429) else "content"
        raise _Fail(reason, f"HTTP {code}")


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def _field(text: str, name: str) -> str:
    return next(
        (ln[len(name) + 1 :].strip() for ln in text.splitlines() if ln.startswith(name + ":")), ""
    )


def _check_release(body: bytes, max_age_hours: float) -> tuple[str, str]:
    """Signed InRelease; expired ``Valid-Until`` is stale, an old ``Date`` only warns.

    (Debian stable's main suite keeps its ``Date`` until the next point release.)
    """
    text = body.decode("utf-8", "replace")
    if (
        "-----BEGIN PGP SIGNED MESSAGE-----" not in text
        or "-----BEGIN PGP SIGNATURE-----" not in text
    ):
        raise _Fail("content", "HTTP 200, InRelease not signed")
    date = _field(text, "Date")
    if not date:
        raise _Fail("content", "HTTP 200, InRelease without Date")
    now = time.time()
    valid_until = _field(text, "Valid-Until")
    if valid_until and email.utils.parsedate_to_datetime(valid_until).timestamp() < now:
        raise _Fail("stale", "stale: Valid-Until has passed")
    age_h = (now - email.utils.parsedate_to_datetime(date).timestamp()) / 3600
    warning = f"Date is {age_h:.0f} h old" if max_age_hours and age_h > max_age_hours else ""
    return f"HTTP 200, Date {age_h:.0f} h old", warning


def _probe_apt(spec: dict[str, Any], timeout: float) -> tuple[str, str]:
    path = "InRelease" if spec["kind"] == "flat_apt" else f"dists/{spec['suite']}/InRelease"
    code, _headers, body = _http(_join(spec["url"], path), timeout, blocked=spec.get("blocked", ()))
    _expect(code)
    return _check_release(body, float(spec.get("max_age_hours", 48)))


def _probe_pypi(spec: dict[str, Any], timeout: float) -> str:
    pkg = spec.get("package", "pip")
    code, _headers, body = _http(
        _join(spec["url"], f"{pkg}/"), timeout, blocked=spec.get("blocked", ())
    )
    _expect(code)
    if f"{pkg}-".encode() not in body:
        raise _Fail("content", f"HTTP 200, no {pkg}- link")
    return "HTTP 200"


def _bearer(challenge: str, timeout: float, blocked: Iterable[str]) -> str | None:
    if not challenge.lower().startswith("bearer "):
        return None
    params = dict(
        part.split("=", 1) for part in challenge[7:].replace('"', "").split(",") if "=" in part
    )
    realm = params.pop("realm", "")
    if not realm:
        return None
    code, _headers, body = _http(
        realm + "?" + urllib.parse.urlencode(params), timeout, blocked=blocked
    )
    if code != 200:
        return None
    data = json.loads(body or b"{}")
    token = data.get("token") or data.get("access_token")
    return str(token) if token else None


def _probe_registry(spec: dict[str, Any], timeout: float) -> str:
    url = spec["url"].rstrip("/")
    parts = urllib.parse.urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}"
    blocked = spec.get("blocked", ())
    code, _headers, _body = _http(root + "/v2/", timeout, blocked=blocked)
    _expect(code, (200, 401))
    api = url if spec.get("override_path") else root + "/v2"
    for image in spec.get("images", []):
        repo, _sep, ref = image.partition("@") if "@" in image else image.rpartition(":")
        if not repo:
            repo, ref = image, "latest"
        murl = f"{api}/{repo}/manifests/{ref}"
        head = {"Accept": _MANIFEST_ACCEPT}
        code, headers, _body = _http(murl, timeout, method="HEAD", headers=head, blocked=blocked)
        if code == 401:
            token = _bearer(headers.get("www-authenticate", ""), timeout, blocked)
            if token:
                head["Authorization"] = f"Bearer {token}"
                code, headers, _body = _http(
                    murl, timeout, method="HEAD", headers=head, blocked=blocked
                )
        if code != 200:
            reason = str(code) if code in (403, 404, 429) else "content"
            raise _Fail(reason, f"HTTP {code} for {image}")
    return f"HTTP 200, {len(spec.get('images', []))} manifest(s)"


def _local(url: str, limit: int) -> bytes:
    """The first ``limit`` bytes of a ``file:///path`` on this host."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    if not os.path.isfile(path):
        raise _Fail("404", f"no file {path}")
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except OSError as exc:
        raise _Fail("unreachable", f"error: {exc}"[:80]) from exc


def _fetch(url: str, timeout: float, *, head: bool, blocked: Iterable[str]) -> tuple[str, bytes]:
    """GET (or HEAD) an http(s) URL, or read a file:// one; (status text, body)."""
    if url.startswith("file:"):
        return "file ok", b"" if head else _local(url, 64 << 20)
    code, _headers, body = _http(
        url, timeout, method="HEAD" if head else "GET", limit=64 << 20, blocked=blocked
    )
    _expect(code)
    return "HTTP 200", body


def _probe_file(spec: dict[str, Any], timeout: float) -> str:
    url = _join(spec["url"], spec.get("path", "")) if spec.get("path") else spec["url"]
    want = str(spec.get("sha256", "")).lower()
    status, body = _fetch(url, timeout, head=not want, blocked=spec.get("blocked", ()))
    if want and hashlib.sha256(body).hexdigest() != want:
        raise _Fail("checksum", f"{status}, sha256 mismatch")
    return status + (", sha256 ok" if want else "")


_DIGEST = re.compile(rb"^\s*[0-9a-fA-F]{64}(\s|$)")


def _probe_k8s_release(spec: dict[str, Any], timeout: float) -> str:
    """A pinned ``<binary>.sha256`` of the release tree must hold a sha256 hex digest (a 200
    answer with an HTML error page or an empty file is not a release tree)."""
    status, body = _fetch(
        _join(spec["url"], spec.get("path", "")),
        timeout,
        head=False,
        blocked=spec.get("blocked", ()),
    )
    if not _DIGEST.match(body[:4096]):
        raise _Fail("content", f"{status}, no sha256 digest")
    return status + ", digest ok"


def _probe_hf(spec: dict[str, Any], timeout: float) -> tuple[str, str]:
    code, headers, _body = _http(
        _join(spec["url"], spec.get("path", "/")), timeout, follow=False, limit=4096
    )
    if code in (301, 302, 303, 307, 308):
        target = (
            urllib.parse.urlsplit(
                urllib.parse.urljoin(spec["url"], headers.get("location", ""))
            ).hostname
            or ""
        )
        if _blocked(target, spec.get("blocked", [])):
            return f"HTTP {code}", f"redirects to blocked host {target}; pre-stage large files"
        return f"HTTP {code}", ""
    _expect(code)
    return "HTTP 200", ""


def _udp(host: str, port: int, payload: bytes, timeout: float) -> bytes:
    """One datagram out, one back, within timeout."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(payload, (host, port))
            data, _addr = sock.recvfrom(4096)
        except TimeoutError as exc:
            raise _Fail("timeout", "timeout") from exc
        except OSError as exc:
            raise _Fail("unreachable", f"error: {exc}"[:80]) from exc
    return data


def _probe_ntp(spec: dict[str, Any], timeout: float) -> str:
    packet = b"\x23" + 47 * b"\0"  # LI 0, version 4, mode 3 (client)
    data = _udp(spec["url"], int(spec.get("port", 123)), packet, timeout)
    if len(data) < 48 or data[1] == 0:
        raise _Fail("content", "no valid SNTP answer (stratum 0)")
    secs = struct.unpack("!I", data[40:44])[0] - 2208988800
    offset = secs - time.time()
    return f"stratum {data[1]}, offset {offset:+.1f} s"


def _probe_dns(spec: dict[str, Any], timeout: float) -> str:
    qid = random.randint(0, 0xFFFF)  # noqa: S311  # a query id, not a secret
    qname = b"".join(
        bytes([len(p)]) + p.encode() for p in spec.get("name", "localhost").split(".") if p
    )
    query = (
        struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + b"\0" + struct.pack("!HH", 1, 1)
    )
    data = _udp(spec["url"], int(spec.get("port", 53)), query, timeout)
    rid, flags = struct.unpack("!HH", data[:4])
    rcode = flags & 0xF
    if rid != qid or rcode not in (0, 3):
        raise _Fail("content", f"bad DNS answer (rcode {rcode})")
    return f"rcode {rcode}"


def probe_one(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    start = time.monotonic()
    warning = ""
    try:
        kind = spec["kind"]
        if kind in ("apt", "flat_apt"):
            status, warning = _probe_apt(spec, timeout)
        elif kind == "pypi":
            status = _probe_pypi(spec, timeout)
        elif kind == "registry":
            status = _probe_registry(spec, timeout)
        elif kind == "file":
            status = _probe_file(spec, timeout)
        elif kind == "k8s_release":
            status = _probe_k8s_release(spec, timeout)
        elif kind == "hf":
            status, warning = _probe_hf(spec, timeout)
        elif kind == "ntp":
            status = _probe_ntp(spec, timeout)
        elif kind == "dns":
            status = _probe_dns(spec, timeout)
        else:
            raise _Fail("content", f"unknown probe kind {kind!r}")
        healthy, reason = True, ""
    except _Fail as exc:
        healthy, reason, status = False, exc.reason, exc.status
    except Exception as exc:  # noqa: BLE001  # one broken mirror must not stop the others
        healthy, reason, status = False, "content", f"error: {exc}"[:80]
    return {
        "key": spec["key"],
        "healthy": healthy,
        "status": status,
        "reason": reason,
        "warning": warning,
        "latency_ms": int((time.monotonic() - start) * 1000),
    }


def probe_all(
    specs: list[dict[str, Any]], timeout: float, workers: int = 32
) -> list[dict[str, Any]]:
    """Run every probe in parallel; a probe that outlives the deadline counts as a timeout."""
    if not specs:
        return []
    deadline = time.monotonic() + timeout * 3 + 2
    out: dict[str, dict[str, Any]] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(specs))))
    try:
        futures = {pool.submit(probe_one, s, timeout): s for s in specs}
        try:
            for fut in concurrent.futures.as_completed(
                futures, timeout=max(0.1, deadline - time.monotonic())
            ):
                res = fut.result()
                out[res["key"]] = res
        except concurrent.futures.TimeoutError:
            pass
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    for spec in specs:
        out.setdefault(
            spec["key"],
            {
                "key": spec["key"],
                "healthy": False,
                "status": "timeout",
                "reason": "timeout",
                "warning": "",
                "latency_ms": None,
            },
        )
    return [out[s["key"]] for s in specs]


def probe_with_record(
    specs: list[dict[str, Any]], recorded: list[str], timeout: float, workers: int = 32
) -> tuple[str, list[dict[str, Any]]]:
    """Quick re-check of the recorded choice; a full probe when it is missing or one fails."""
    keys = set(recorded)
    subset = [s for s in specs if s["key"] in keys]
    if recorded and len(subset) == len(keys):
        results = probe_all(subset, timeout, workers)
        if all(r["healthy"] for r in results):
            return "recorded", results
    return "full", probe_all(specs, timeout, workers)
