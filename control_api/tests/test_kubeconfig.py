"""GET /servers/kubeconfig (contract §2.2, optional): a kubeconfig for a namespace-scoped
service account behind the Kubernetes interface, with the real CLI's `sync-kubeconfig`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from bittensor_wallet import Keypair
from control_api.clients.k8s import KubeClient, UnavailableKube, build_kubeconfig
from control_api.core.signing import d1_headers
from control_api.main import create_app
from pydantic import ValidationError

from tests.conftest import Cli, LiveServer, SettingsFactory
from tests.standins import STANDIN_CA, StandinKube

SERVER = "https://203.0.113.5:16443"
CONFIGURED = {"kubeconfig_service_account": "chutes-operator", "kubeconfig_server": SERVER}


@contextmanager
def serve(
    make_settings: SettingsFactory, kube: KubeClient, redis_prefix: str, **overrides: Any
) -> Iterator[str]:
    settings = make_settings(**overrides)
    app = create_app(settings, kube=kube, redis_prefix=redis_prefix)
    with LiveServer(app) as live:
        yield live.url


def _get(url: str, key: Keypair, purpose: str = "kubeconfig") -> httpx.Response:
    return httpx.get(url + "/servers/kubeconfig", headers=d1_headers(key, purpose), timeout=10)


def test_kubeconfig_for_the_service_account(
    make_settings: SettingsFactory, miner_key: Keypair, redis_prefix: str
) -> None:
    kube = StandinKube(devices_url="http://127.0.0.1:1")
    with serve(make_settings, kube, redis_prefix, **CONFIGURED, kubeconfig_token_ttl_s=3600) as url:
        resp = _get(url, miner_key)
        assert resp.status_code == 200
        assert resp.headers["cache-control"] == "no-store"
        config = resp.json()
        assert config == build_kubeconfig(
            server=SERVER,
            ca_pem=STANDIN_CA,
            namespace="chutes",
            user="chutes-operator",
            token="stand-in-token-1",
        )
        assert config["contexts"][0]["context"]["namespace"] == "chutes"
        assert kube.tokens_issued == [("chutes-operator", 3600)]
        # wrong purpose: the fixed 401, and no token issued
        assert _get(url, miner_key, "management").status_code == 401
        assert len(kube.tokens_issued) == 1


@pytest.mark.parametrize(
    ("kube", "overrides", "status"),
    [
        (StandinKube(devices_url=""), {}, 404),  # not configured
        (StandinKube(devices_url="", service_accounts=set()), {"sa": True}, 404),
        (UnavailableKube(), {"sa": True}, 503),
    ],
    ids=["not-configured", "no-such-account", "no-kubernetes"],
)
def test_kubeconfig_refusals(
    make_settings: SettingsFactory,
    miner_key: Keypair,
    redis_prefix: str,
    kube: KubeClient,
    overrides: dict[str, Any],
    status: int,
) -> None:
    extra = CONFIGURED if overrides.get("sa") else {}
    with serve(make_settings, kube, redis_prefix, **extra) as url:
        resp = _get(url, miner_key)
    assert resp.status_code == status
    assert isinstance(resp.json()["detail"], str)


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"kubeconfig_service_account": "chutes-operator"}, "KUBECONFIG_SERVER"),
        (
            {"kubeconfig_service_account": "Bad_Name", "kubeconfig_server": SERVER},
            "KUBECONFIG_SERVICE_ACCOUNT",
        ),
        (
            {"kubeconfig_service_account": "sa", "kubeconfig_server": "http://plain:6443"},
            "KUBECONFIG_SERVER",
        ),
        ({"kubeconfig_token_ttl_s": 60}, "KUBECONFIG_TOKEN_TTL_S"),
    ],
)
def test_kubeconfig_settings_fail_closed(
    make_settings: SettingsFactory, overrides: dict[str, Any], setting: str
) -> None:
    from control_api.core.config import describe_error

    with pytest.raises(ValidationError) as exc:
        make_settings(**overrides)
    assert setting in describe_error(exc.value)


def test_real_cli_sync_kubeconfig(
    make_settings: SettingsFactory,
    redis_prefix: str,
    tmp_path: Path,
    cli_for: Callable[[str], Cli],
) -> None:
    """chutes-miner 0.9.0 `sync-kubeconfig` signs purpose `kubeconfig` and writes our JSON as
    YAML; without a configured account it fails (404) and writes nothing."""
    target = tmp_path / "kube" / "chutes.config"
    kube = StandinKube(devices_url="")
    sync = ("sync-kubeconfig", "--path", str(target))
    with serve(make_settings, kube, redis_prefix, **CONFIGURED) as url:
        ok = cli_for(url)(*sync)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    written = yaml.safe_load(target.read_text())
    assert written["users"][0]["user"]["token"] == "stand-in-token-1"
    assert written["clusters"][0]["cluster"]["server"] == SERVER
    assert written["current-context"] == "chutes-chutes"
    target.unlink()
    with serve(make_settings, kube, redis_prefix) as url:
        refused = cli_for(url)(*sync)
    assert refused.returncode != 0 and not target.exists()
