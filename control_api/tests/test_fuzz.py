"""Property tests of the HTTP surface: generated requests (schemathesis over the app's OpenAPI)
and random header values never produce a 5xx."""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Api

HEADERS = ("X-Chutes-Miner", "X-Chutes-Validator", "X-Chutes-Nonce", "X-Chutes-Signature")
_text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=140)


def test_openapi_surface_no_5xx(api: Api) -> None:
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation: Any = result.ok()  # type: ignore[union-attr]

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: Any) -> None:
            # half the cases carry a valid signature so handlers past auth get exercised too
            purpose = "kubeconfig" if "kubeconfig" in case.path else "management"
            if case.method == "POST" or hash(repr(case.path_parameters)) % 2 == 0:
                pass
            else:
                case.headers = {**(case.headers or {}), **api.headers(purpose)}
            resp = case.call(base_url=api.url, timeout=10)
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {resp.status_code}")

        check()
    assert not failures, failures[:5]


@given(values=st.lists(_text, min_size=4, max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_auth_headers_401(api: Api, values: list[str]) -> None:
    headers = dict(zip(HEADERS, values, strict=True))
    resp = httpx.get(api.url + "/servers/", headers=headers)
    assert resp.status_code == 401
    assert resp.json() == {"detail": "unauthorized"}
