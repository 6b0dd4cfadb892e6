"""Validator HTTP API (contract §4.1) behind a Protocol; the real class signs D2."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import httpx

from control_api.core.signing import Signer, body_hash, d2_headers
from control_api.schemas.nodes import RegisterReply, VerificationStatus


class ValidatorError(Exception):
    """The validator refused or could not be reached; `reason` is short and safe to show."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class ValidatorClient(Protocol):
    def supported_gpus(self, api: str) -> set[str]: ...

    def register_nodes(self, api: str, body: dict[str, Any]) -> RegisterReply: ...

    def verification_status(self, api: str, task_id: str) -> VerificationStatus: ...

    def delete_node(self, api: str, gpu_id: str) -> None: ...


class HttpValidatorClient:
    """httpx client: verifies TLS, honours HTTPS_PROXY/NO_PROXY (trust_env)."""

    def __init__(
        self, signer: Signer, timeout_s: float = 30.0, retries: int = 3, pause_s: float = 1.0
    ) -> None:
        self._signer = signer
        timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        self._http = httpx.Client(timeout=timeout, trust_env=True, verify=True)
        self._retries = retries
        self._pause_s = pause_s

    def close(self) -> None:
        self._http.close()

    def _request(
        self, method: str, url: str, *, purpose: str | None = None, body: bytes | None = None
    ) -> httpx.Response:
        last: ValidatorError | None = None
        for attempt in range(self._retries):
            if attempt:  # only network errors and 5xx are retried, with a growing pause
                time.sleep(self._pause_s * attempt)
            headers = d2_headers(
                self._signer, body_hash(body) if body is not None else purpose or ""
            )
            if body is not None:
                headers["Content-Type"] = "application/json"
            try:
                resp = self._http.request(method, url, headers=headers, content=body)
            except httpx.HTTPError as exc:
                last = ValidatorError(f"validator unreachable: {type(exc).__name__}")
                continue
            if resp.status_code >= 500:
                last = ValidatorError(f"validator answered {resp.status_code}", resp.status_code)
                continue
            return resp
        assert last is not None
        raise last

    def supported_gpus(self, api: str) -> set[str]:
        try:
            resp = self._http.get(f"{api.rstrip('/')}/nodes/supported")
            resp.raise_for_status()
            data = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ValidatorError(f"cannot fetch supported GPUs: {type(exc).__name__}") from exc
        if not isinstance(data, dict):
            raise ValidatorError("supported GPUs reply is not an object")
        return set(data)

    def register_nodes(self, api: str, body: dict[str, Any]) -> RegisterReply:
        raw = json.dumps(body).encode()
        resp = self._request("POST", f"{api.rstrip('/')}/nodes/", body=raw)
        if resp.status_code != 202:
            raise ValidatorError(_detail(resp, "node registration refused"), resp.status_code)
        return RegisterReply.model_validate_json(resp.content)

    def verification_status(self, api: str, task_id: str) -> VerificationStatus:
        url = f"{api.rstrip('/')}/nodes/verification_status"
        resp = self._request(
            "GET", str(httpx.URL(url, params={"task_id": task_id})), purpose="graval"
        )
        if resp.status_code != 200:
            raise ValidatorError(_detail(resp, "verification status failed"), resp.status_code)
        return VerificationStatus.model_validate_json(resp.content)

    def delete_node(self, api: str, gpu_id: str) -> None:
        resp = self._request("DELETE", f"{api.rstrip('/')}/nodes/{gpu_id}", purpose="nodes")
        if resp.status_code not in (200, 404):
            raise ValidatorError(_detail(resp, "node delete failed"), resp.status_code)


def _detail(resp: httpx.Response, fallback: str) -> str:
    try:
        detail = resp.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = detail if isinstance(detail, str) else fallback
    return f"{text} ({resp.status_code})"[:200]
