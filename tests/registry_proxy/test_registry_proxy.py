"""The registry proxy's nginx.conf (role miner_registry_proxy) with real parts: pulls routed by
host name to each validator's registry, signed by the control_api registry-auth listener, the
signature verified on the validator side with bittensor-wallet; only GET and HEAD; unknown
hotkeys, a refused or missing listener and an unverifiable registry certificate refused."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from bittensor_wallet import Keypair

from tests.registry_proxy.conftest import Proxy, World, host, nginx_test
from tests.registry_proxy.parts import (
    MANIFEST_V2,
    Image,
    ValidatorFront,
    free_port,
    registry_signature_ok,
    template_inputs,
)

PUBLIC_RESOLVERS = ("1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4", "9.9.9.9")


def client(proxy: Proxy) -> httpx.Client:
    return httpx.Client(base_url=proxy.url, timeout=10, headers={"Accept": MANIFEST_V2})


def error_message(response: httpx.Response) -> str:
    body = json.loads(response.text)  # the registry API's error shape
    return str(body["errors"][0]["message"])


def test_template_lists_exactly_the_inputs_it_uses() -> None:
    listed, used = template_inputs()
    assert len(listed) == len(set(listed))
    assert sorted(listed) == used


def test_rendered_config_passes_nginx_t(world: World, proxy: Proxy) -> None:
    result = nginx_test(proxy.config)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    text = proxy.config.read_text()
    resolvers = re.findall(r"^\s*resolver\s+([^;]*);", text, re.MULTILINE)
    assert resolvers == [f"{world.variables['miner_registry_proxy_resolver']} valid=10s ipv6=off"]
    assert not any(ip in text for ip in PUBLIC_RESOLVERS)
    assert re.search(rf"^\s*listen 127\.0\.0\.1:{proxy.port} default_server;", text, re.MULTILINE)
    assert re.search(r"^\s*server_tokens off;", text, re.MULTILINE)
    assert text.startswith("#\n# Ansible managed\n#\n")


def _front(world: World, which: str) -> tuple[Keypair, ValidatorFront, Image, str]:
    if which == "A":
        return world.validator_a, world.front_a, world.image_a, world.authority_a
    return world.validator_b, world.front_b, world.image_b, world.authority_b


@pytest.mark.parametrize("with_port", [True, False], ids=["host:port", "host"])
@pytest.mark.parametrize("which", ["A", "B"])
def test_pull_reaches_that_validators_registry_signed(
    world: World, proxy: Proxy, which: str, with_port: bool
) -> None:
    validator, front, image, authority = _front(world, which)
    other = world.front_b if which == "A" else world.front_a
    before, other_before = len(front.seen), len(other.seen)
    name = host(validator, proxy.port if with_port else None)
    with client(proxy) as http:
        got = http.get(f"/v2/{image.name}/manifests/{image.tag}", headers={"Host": name})
        head = http.head(f"/v2/{image.name}/manifests/{image.tag}", headers={"Host": name})
        blob = http.get(f"/v2/{image.name}/blobs/{image.layer_digest}", headers={"Host": name})
    assert got.status_code == 200, got.text
    assert got.content == image.manifest
    assert got.headers["Docker-Content-Digest"] == image.digest
    assert got.headers["X-Chutes-Proxy-Upstream"] == authority
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Docker-Content-Digest"] == image.digest
    assert int(head.headers["Content-Length"]) == len(image.manifest)
    assert blob.status_code == 200 and blob.content == image.layer
    assert got.headers["Server"] == "nginx"  # no version

    seen = front.seen[before:]
    assert [(s.method, s.path) for s in seen] == [
        ("GET", f"/v2/{image.name}/manifests/{image.tag}"),
        ("HEAD", f"/v2/{image.name}/manifests/{image.tag}"),
        ("GET", f"/v2/{image.name}/blobs/{image.layer_digest}"),
    ]
    assert len(other.seen) == other_before  # the other validator got nothing
    for s in seen:
        assert s.headers["host"] == authority
        assert s.verified
        # the same check here, and it is one that can fail: another purpose does not verify
        assert registry_signature_ok(s.headers, world.miner.ss58_address, time.time())
        assert s.headers["x-chutes-hotkey"] == world.miner.ss58_address
        wrong = f"{world.miner.ss58_address}:{s.headers['x-chutes-nonce']}:management".encode()
        signature = bytes.fromhex(s.headers["x-chutes-signature"])
        assert not Keypair(ss58_address=world.miner.ss58_address).verify(wrong, signature)


def test_client_signature_headers_are_replaced(world: World, proxy: Proxy) -> None:
    image = world.image_a
    forged = Keypair.create_from_seed("0x" + "11" * 32)  # type: ignore[arg-type]
    nonce = str(int(time.time()))
    headers = {
        "Host": host(world.validator_a, proxy.port),
        "X-Chutes-Hotkey": forged.ss58_address,
        "X-Chutes-Nonce": nonce,
        "X-Chutes-Signature": forged.sign(f"{forged.ss58_address}:{nonce}:registry").hex(),
    }
    before = len(world.front_a.seen)
    with client(proxy) as http:
        got = http.get(f"/v2/{image.name}/manifests/{image.tag}", headers=headers)
    assert got.status_code == 200, got.text
    (seen,) = world.front_a.seen[before:]
    assert seen.headers["x-chutes-hotkey"] == world.miner.ss58_address
    assert seen.verified


def test_unknown_hotkey_is_refused_with_a_clear_answer(world: World, proxy: Proxy) -> None:
    before = world.fronts_seen()
    hotkey = world.unknown.ss58_address.lower()
    with client(proxy) as http:
        for name in (host(world.unknown, proxy.port), host(world.unknown)):
            got = http.get("/v2/chutes/demo/manifests/1.0", headers={"Host": name})
            assert got.status_code == 421
            message = error_message(got)
            assert f"unknown validator hotkey {hotkey}:" in message
            assert "chutes_validators" in message and "未知的验证者 hotkey" in message
        for name in ("registry.chutes.ai", f"127.0.0.1:{proxy.port}"):
            got = http.get("/v2/chutes/demo/manifests/1.0", headers={"Host": name})
            assert got.status_code == 421
            assert "host name is not <validator hotkey>.localregistry.chutes.ai" in (
                error_message(got)
            )
    assert world.fronts_seen() == before


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head_pass(world: World, proxy: Proxy, method: str) -> None:
    image = world.image_a
    before = world.fronts_seen()
    with client(proxy) as http:
        for validator in (world.validator_a, world.unknown):
            got = http.request(
                method,
                f"/v2/{image.name}/manifests/{image.tag}",
                headers={"Host": host(validator, proxy.port), "Content-Type": MANIFEST_V2},
                content=b"{}" if method in ("PUT", "POST", "PATCH") else None,
            )
            assert got.status_code == 405
            assert got.headers["Allow"] == "GET, HEAD"
            assert "GET and HEAD" in error_message(got)
    assert world.fronts_seen() == before
    # the registry still serves the manifest a DELETE would have removed
    direct = httpx.get(
        f"http://127.0.0.1:{world.registry_a}/v2/{image.name}/manifests/{image.tag}",
        headers={"Accept": MANIFEST_V2},
    )
    assert direct.status_code == 200 and direct.content == image.manifest


def test_registry_certificate_and_name_are_verified(world: World, proxy: Proxy) -> None:
    before = world.fronts_seen()
    with client(proxy) as http:
        # listed, but its registry name is not the one on the certificate; then one whose
        # registry name the cluster DNS does not know
        for validator in (world.misnamed, world.unresolvable):
            got = http.get("/v2/chutes/demo/manifests/1.0", headers={"Host": host(validator)})
            assert got.status_code == 502
            message = error_message(got)
            assert f"the registry of validator {validator.ss58_address.lower()} (" in message
            assert "could not be reached" in message and "无法连接验证者" in message
    assert world.fronts_seen() == before
    log = proxy.daemon.output()
    assert "upstream SSL certificate does not match" in log
    assert "registry.unknown.invalid could not be resolved" in log
    # the same registry against a bundle without the test CA: refused too
    with world.nginx(miner_registry_proxy_ca_file="/etc/ssl/certs/ca-certificates.crt") as other:
        with client(other) as http:
            got = http.get(
                "/v2/chutes/demo/manifests/1.0", headers={"Host": host(world.validator_a)}
            )
        assert got.status_code == 502
        assert f"({world.authority_a}) could not be reached" in error_message(got)
        assert "upstream SSL certificate verify error" in other.daemon.output()
    assert world.fronts_seen() == before


def test_refused_or_missing_signer_is_not_forwarded(world: World) -> None:
    before = world.fronts_seen()
    wrong_token = world.write_token_file("wrong-token.conf", "not-the-listener-token-0123")
    closed_port = free_port()
    cases = [
        ({"miner_registry_proxy_auth_token_file": wrong_token}, 401, "refused"),
        (
            {"miner_registry_proxy_auth_url": f"http://127.0.0.1:{closed_port}/registry/auth"},
            503,
            "no signature",
        ),
    ]
    for overrides, status, words in cases:
        with world.nginx(**overrides) as other, client(other) as http:
            got = http.get(
                "/v2/chutes/demo/manifests/1.0", headers={"Host": host(world.validator_b)}
            )
            assert got.status_code == status, got.text
            assert words in error_message(got)
    assert world.fronts_seen() == before


def test_other_paths(world: World, proxy: Proxy) -> None:
    with client(proxy) as http:
        health = http.get("/healthz", headers={"Host": "anything"})
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert http.get("/", headers={"Host": host(world.validator_a)}).status_code == 404
        internal = http.get("/_chutes/registry-auth", headers={"Host": host(world.validator_a)})
        assert internal.status_code == 404
        assert "X-Chutes-Hotkey" not in internal.headers
