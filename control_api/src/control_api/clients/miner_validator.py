"""The validator calls the scheduler makes (runtime contract §4.1, §4.2), D2-signed with the
miner hotkey: chute objects, launch configs, instance and job releases, the list streams
autoscale reads and the two reconcile reads (`/miner/chutes/`, `/miner/instances/`).
`MinerValidator` is the interface; tests serve a stand-in validator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from control_api.clients.validator import HttpValidatorClient, ValidatorError
from control_api.core.signing import d2_headers
from control_api.schemas.gepetto import (
    RemoteChute,
    RemoteInstance,
    RemoteMetrics,
    RemoteUtilization,
)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class LaunchConfig:
    token: str
    config_id: str


class MinerValidator(Protocol):
    def get_chute(self, api: str, chute_id: str, version: str) -> RemoteChute | None:
        """None when the validator does not know that chute version (404)."""
        ...

    def launch_config(self, api: str, chute_id: str, job_id: str | None = None) -> LaunchConfig:
        """Raises ValidatorError; its status 423 = the chute is at capacity, 403 = this job
        was already tried by us, 404/409 = gone or taken."""
        ...

    def delete_instance(self, api: str, chute_id: str, instance_id: str) -> None:
        """404 counts as done."""
        ...

    def release_job(self, api: str, job_id: str) -> None:
        """Give a job back (the validator re-broadcasts it); 404 counts as done."""
        ...

    def metrics(self, api: str) -> list[RemoteMetrics]: ...

    def utilization(self, api: str) -> list[RemoteUtilization]: ...

    def rolling_updates(self, api: str) -> set[str]: ...

    def chutes(self, api: str) -> list[RemoteChute]:
        """The whole `/miner/chutes/` stream. Raises ValidatorError when the stream is cut or
        any item is malformed: reconcile deletes what this list lacks, so it must be whole."""
        ...

    def instances(self, api: str) -> list[RemoteInstance]:
        """The whole `/miner/instances/?explicit_null=True` stream (this miner's instances);
        raises like `chutes`, and for a stream with neither items nor `NO_ITEMS`."""
        ...


@dataclass
class StreamRead:
    items: list[Any] = field(default_factory=list)
    no_items: bool = False  # the validator said `data: NO_ITEMS`


def read_stream(lines: Iterator[str]) -> StreamRead:
    """Every `data:` payload as JSON; a line that is not JSON raises ValueError."""
    out = StreamRead()
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "NO_ITEMS":
            out.no_items = True
        elif payload:
            out.items.append(json.loads(payload))
    return out


def strict_items(read: StreamRead, model: type[M], what: str) -> list[M]:
    """All items as `model`, or ValidatorError naming the first bad one (a partial list)."""
    out = []
    for n, item in enumerate(read.items, 1):
        try:
            out.append(model.model_validate(item))
        except ValidationError as exc:
            raise ValidatorError(f"{what} stream item {n} malformed") from exc
    return out


class HttpMinerValidator(HttpValidatorClient):
    """The add-node client's transport (TLS verified, HTTPS_PROXY/NO_PROXY honoured, network
    errors and 5xx retried with a growing pause) for the scheduler's calls."""

    def get_chute(self, api: str, chute_id: str, version: str) -> RemoteChute | None:
        url = f"{api.rstrip('/')}/miner/chutes/{chute_id}/{version}"
        resp = self._request("GET", url, purpose="miner")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise ValidatorError(f"chute fetch failed ({resp.status_code})", resp.status_code)
        try:
            return RemoteChute.model_validate_json(resp.content)
        except ValidationError as exc:
            raise ValidatorError(f"chute object malformed: {exc.error_count()} errors") from exc

    def launch_config(self, api: str, chute_id: str, job_id: str | None = None) -> LaunchConfig:
        params = {"chute_id": chute_id} | ({"job_id": job_id} if job_id else {})
        url = httpx.URL(f"{api.rstrip('/')}/instances/launch_config", params=params)
        resp = self._request("GET", str(url), purpose="launch")
        if resp.status_code != 200:
            raise ValidatorError(f"launch config refused ({resp.status_code})", resp.status_code)
        try:
            body = resp.json()
            return LaunchConfig(str(body["token"]), str(body["config_id"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidatorError("launch config malformed") from exc

    def delete_instance(self, api: str, chute_id: str, instance_id: str) -> None:
        url = f"{api.rstrip('/')}/instances/{chute_id}/{instance_id}"
        resp = self._request("DELETE", url, purpose="instances")
        if resp.status_code not in (200, 404):
            raise ValidatorError(f"instance delete failed ({resp.status_code})", resp.status_code)

    def release_job(self, api: str, job_id: str) -> None:
        url = f"{api.rstrip('/')}/miner/jobs/{job_id}"
        resp = self._request("DELETE", url, purpose="miner")
        if resp.status_code not in (200, 404):
            raise ValidatorError(f"job release failed ({resp.status_code})", resp.status_code)

    def _stream(self, url: str, what: str) -> StreamRead:
        """A signed (`miner`) list stream read to its end; a status other than 200, a cut
        connection or a line that is not JSON raises ValidatorError."""
        try:
            with self._http.stream("GET", url, headers=d2_headers(self._signer, "miner")) as resp:
                if resp.status_code != 200:
                    raise ValidatorError(f"{what} answered {resp.status_code}", resp.status_code)
                return read_stream(resp.iter_lines())
        except (httpx.HTTPError, ValueError) as exc:
            raise ValidatorError(f"{what} stream interrupted: {type(exc).__name__}") from exc

    def metrics(self, api: str) -> list[RemoteMetrics]:
        """The whole `/miner/metrics/` stream; an interrupted one raises (keep the old)."""
        read = self._stream(f"{api.rstrip('/')}/miner/metrics/", "metrics")
        out = []
        for item in read.items:
            try:
                out.append(RemoteMetrics.model_validate(item))
            except ValidationError:
                continue  # one odd row must not hide the others
        return out

    def chutes(self, api: str) -> list[RemoteChute]:
        read = self._stream(f"{api.rstrip('/')}/miner/chutes/", "chutes")
        return strict_items(read, RemoteChute, "chutes")

    def instances(self, api: str) -> list[RemoteInstance]:
        url = f"{api.rstrip('/')}/miner/instances/?explicit_null=True"
        read = self._stream(url, "instances")
        if not read.items and not read.no_items:
            # asked with explicit_null, an empty list says NO_ITEMS: silence is a cut stream
            raise ValidatorError("instances stream ended with neither items nor NO_ITEMS")
        return strict_items(read, RemoteInstance, "instances")

    def _public_list(self, url: str) -> list[dict[str, Any]]:
        """An unauthenticated JSON list (`/chutes/utilization`, `/chutes/rolling_updates`)."""
        try:
            resp = self._http.get(url)
            resp.raise_for_status()
            rows = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ValidatorError(f"{url} failed: {type(exc).__name__}") from exc
        if not isinstance(rows, list):
            raise ValidatorError(f"{url} is not a list")
        return [r for r in rows if isinstance(r, dict)]

    def utilization(self, api: str) -> list[RemoteUtilization]:
        rows = self._public_list(f"{api.rstrip('/')}/chutes/utilization")
        return [RemoteUtilization.model_validate(r) for r in rows if "chute_id" in r]

    def rolling_updates(self, api: str) -> set[str]:
        rows = self._public_list(f"{api.rstrip('/')}/chutes/rolling_updates")
        return {str(r["chute_id"]) for r in rows if "chute_id" in r}
