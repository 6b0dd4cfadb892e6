"""GraVal bootstrap HTTP (contract §2.5 step 5): signed D1 `graval` GET /devices."""

from __future__ import annotations

import time
from typing import Protocol

import httpx
from pydantic import ValidationError

from control_api.core.signing import Signer, d1_headers
from control_api.schemas.nodes import DeviceInfo, DevicesReply


class GravalError(Exception):
    pass


class GravalClient(Protocol):
    def devices(self, base_url: str) -> list[DeviceInfo]: ...


class HttpGravalClient:
    def __init__(self, signer: Signer, tries: int = 5, pause_s: float = 3.0) -> None:
        self._signer = signer
        self._tries = tries
        self._pause_s = pause_s

    def devices(self, base_url: str) -> list[DeviceInfo]:
        reason = "no answer"
        for attempt in range(self._tries):
            if attempt:
                time.sleep(self._pause_s)
            try:
                resp = httpx.get(
                    f"{base_url.rstrip('/')}/devices",
                    headers=d1_headers(self._signer, "graval"),
                    timeout=5.0,
                    trust_env=False,  # an in-cluster Service: never via HTTPS_PROXY/HTTP_PROXY
                )
                if resp.status_code == 200:
                    return DevicesReply.model_validate_json(resp.content).devices
                reason = f"bootstrap answered {resp.status_code}"
            except httpx.HTTPError as exc:
                reason = f"bootstrap unreachable: {type(exc).__name__}"
            except ValidationError:
                reason = "bootstrap sent malformed device info"
        raise GravalError(reason)
