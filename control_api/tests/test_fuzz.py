"""Property tests of the whole HTTP surface, served as `python -m control_api api` serves it:
generated requests (schemathesis over the app's own OpenAPI document, which is not served),
path parameters and header values of any text (NUL, control characters, non-UTF-8 bytes, and
sizes past the limits) never produce a 5xx; malformed input is a 4xx."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Api
from tests.test_guard import _routes, guarded  # noqa: F401 - the fixture, served like production

HEADERS = ("X-Chutes-Miner", "X-Chutes-Validator", "X-Chutes-Nonce", "X-Chutes-Signature")
_text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=140)
# any code point but surrogates, weighted towards the control characters
_any_text = st.text(
    alphabet=st.one_of(st.characters(max_codepoint=0x9F), st.characters(exclude_categories=["Cs"])),
    min_size=1,
    max_size=300,
)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_FUZZ = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def _signed(api: Api, path: str, method: str) -> dict[str, str]:
    if method == "POST":
        return api.headers(body=b"")
    return api.headers("kubeconfig" if path.endswith("/kubeconfig") else "management")


def test_openapi_surface_no_5xx(guarded: Api) -> None:  # noqa: F811 - the imported fixture
    schema = schemathesis.openapi.from_dict(guarded.app.openapi())
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
                case.headers = {**(case.headers or {}), **guarded.headers(purpose)}
            resp = case.call(base_url=guarded.url, timeout=10)
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {resp.status_code}")

        check()
    assert not failures, failures[:5]


@given(value=_any_text, pick=st.integers(min_value=0))
@_FUZZ
def test_any_path_parameter_signed(guarded: Api, value: str, pick: int) -> None:  # noqa: F811
    """Every route with a path parameter, signed, with any text in it: never 5xx; a control
    character is always the guard's 400."""
    routes = [(m, p) for m, p in _routes(guarded.app) if "{" in p]
    method, template = routes[pick % len(routes)]
    path = re.sub(r"\{[^}]+\}", quote(value, safe=""), template)
    resp = guarded.http.request(method, path, headers=_signed(guarded, template, method))
    assert resp.status_code < 500, (method, path, resp.text)
    if _CONTROL.search(value):
        assert resp.status_code == 400, (method, path)


@given(raw=st.binary(min_size=1, max_size=40), pick=st.integers(min_value=0))
@_FUZZ
def test_any_bytes_in_the_target(guarded: Api, raw: bytes, pick: int) -> None:  # noqa: F811
    """Percent-encoded arbitrary bytes (invalid UTF-8 included) in path and query."""
    method, template = _routes(guarded.app)[pick % len(_routes(guarded.app))]
    encoded = quote(raw, safe="")
    path = re.sub(r"\{[^}]+\}", encoded, template) + "?q=" + encoded
    resp = guarded.http.request(method, path, headers=_signed(guarded, template, method))
    assert resp.status_code < 500, (method, path, resp.text)
    try:
        clean = not _CONTROL.search(raw.decode("utf-8"))
    except UnicodeDecodeError:
        clean = False
    if not clean:
        assert resp.status_code == 400, (method, path)


def test_oversized_inputs_are_4xx(guarded: Api) -> None:  # noqa: F811
    """Past MAX_HEAD_BYTES (4096 here) in the path, a query or one header: 431, for every
    route, signed or not."""
    for method, template in _routes(guarded.app):
        big = re.sub(r"\{[^}]+\}", "n" * 5000, template) if "{" in template else template
        for path, extra in (
            (big if "{" in template else template + "?q=" + "n" * 5000, {}),
            (template.replace("{", "").replace("}", ""), {"X-Pad": "p" * 5000}),
        ):
            headers = _signed(guarded, template, method) | extra
            try:
                resp = guarded.http.request(method, path, headers=headers)
            except httpx.RemoteProtocolError:  # closed before httpx read the answer
                continue
            assert resp.status_code == 431, (method, path[:60], resp.status_code)


@given(values=st.lists(_text, min_size=4, max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_auth_headers_401(api: Api, values: list[str]) -> None:
    headers = dict(zip(HEADERS, values, strict=True))
    resp = httpx.get(api.url + "/servers/", headers=headers)
    assert resp.status_code == 401
    assert resp.json() == {"detail": "unauthorized"}
