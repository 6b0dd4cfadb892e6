"""Startup configuration (issue #6 item 1): a missing or malformed setting stops every command
with exit 2 and one line that names the setting and never its value."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from control_api.__main__ import _settings
from control_api.core.config import ss58_valid
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ServiceEnv

SECRET_TOKEN = "registry-token-never-printed-0123"


@pytest.fixture()
def env(service_env: ServiceEnv) -> dict[str, str]:
    return service_env(
        POSTGRESQL="postgresql+asyncpg://user:pw-never-printed@127.0.0.1:5432/chutes",
        REGISTRY_AUTH_TOKEN=SECRET_TOKEN,
    )


def test_valid_environment(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = _settings()
    assert settings.postgresql.get_secret_value().startswith("postgresql://")  # +asyncpg gone
    assert settings.relay_lease_ttl_s == 15.0 and settings.kubeconfig_service_account == ""


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"MINER_SEED": None}, "MINER_SEED"),
        ({"MINER_SEED": "00" * 32}, "MINER_SEED"),  # does not derive MINER_SS58
        ({"VALIDATORS": "{not json"}, "VALIDATORS"),
        (
            {"VALIDATORS": '{"defaultRegistry": "r", "defaultApi": "a", "supported": []}'},
            "VALIDATORS",
        ),
        ({"REGISTRY_AUTH_TOKEN": "changeme"}, "REGISTRY_AUTH_TOKEN"),
        ({"POSTGRESQL": "mysql://x"}, "POSTGRESQL"),
        ({"RELAY_LEASE_TTL_S": "0"}, "RELAY_LEASE_TTL_S"),
        ({"KUBECONFIG_SERVICE_ACCOUNT": "chutes-operator"}, "KUBECONFIG_SERVER"),
    ],
)
def test_bad_setting_is_one_line(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str | None],
    named: str,
) -> None:
    for key, value in {**env, **change}.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exc:
        _settings()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("invalid configuration: ")
    assert named in err
    for secret in (SECRET_TOKEN, "pw-never-printed", env["MINER_SEED"]):
        assert secret not in err


def test_process_stops_before_serving(env: dict[str, str]) -> None:
    """The real entry point: exit 2, one line on stderr, nothing else started."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MINER_", "KUBECONFIG"))}
    proc = subprocess.run(
        [sys.executable, "-m", "control_api", "relay"],
        env={**clean, **{k: v for k, v in env.items() if k != "MINER_SEED"}},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "MINER_SEED" in proc.stderr
    assert SECRET_TOKEN not in proc.stderr + proc.stdout


# -- SS58 (issue #16 item 9) and defaults (item 10) ------------------------------------------

_COLLECTION_SS58 = (
    Path(__file__).resolve().parents[2]
    / "collections/ansible_collections/chutes/miner/plugins/module_utils/ss58.py"
)
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _collection_ss58_valid() -> Callable[[str], bool]:
    spec = importlib.util.spec_from_file_location("collection_ss58", _COLLECTION_SS58)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check: Callable[[str], bool] = module.ss58_valid
    return check


def _b58encode(data: bytes) -> str:
    num = int.from_bytes(data, "big")
    out = ""
    while num:
        num, rem = divmod(num, 58)
        out = _B58[rem] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _ss58(network: int, key: bytes) -> str:
    if network < 64:
        prefix = bytes([network])
    else:  # the two-byte form
        prefix = bytes([((network & 0xFC) >> 2) | 0x40, (network >> 8) | ((network & 0x03) << 6)])
    body = prefix + key
    return _b58encode(body + hashlib.blake2b(b"SS58PRE" + body, digest_size=64).digest()[:2])


@given(
    key=st.binary(min_size=32, max_size=32),
    network=st.sampled_from([42, 42, 42, 0, 2, 63, 64, 1000, 16383]),
    at=st.integers(min_value=0),
    char=st.sampled_from(_B58),
)
@settings(max_examples=300, deadline=None)
def test_ss58_rule_agrees_with_the_collection(key: bytes, network: int, at: int, char: str) -> None:
    """The service and the inventory validation accept exactly the same hotkeys: network 42
    with a correct checksum; one character changed (almost always) breaks it."""
    collection = _collection_ss58_valid()
    address = _ss58(network, key)
    assert ss58_valid(address) == collection(address) == (network == 42)
    changed = address[: at % len(address)] + char + address[at % len(address) + 1 :]
    assert ss58_valid(changed) == collection(changed)


@given(text=st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_ss58_rule_agrees_on_any_text(text: str) -> None:
    assert ss58_valid(text) == _collection_ss58_valid()(text)


def _one_char_off(address: str) -> str:
    return address[:-1] + ("a" if address[-1] != "a" else "b")


@pytest.mark.parametrize("which", ["MINER_SS58", "VALIDATORS"])
def test_hotkey_with_a_wrong_checksum_stops_startup(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    which: str,
) -> None:
    if which == "MINER_SS58":
        change = {"MINER_SS58": _one_char_off(env["MINER_SS58"])}
    else:
        validators = json.loads(env["VALIDATORS"])
        hotkey = validators["supported"][0]["hotkey"]
        validators["supported"][0]["hotkey"] = _one_char_off(hotkey)
        change = {"VALIDATORS": json.dumps(validators)}
    for key, value in {**env, **change}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exc:
        _settings()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert which in err and "checksum" in err


def test_help_and_unknown_command_need_no_configuration() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MINER_", "VALIDATORS"))}
    for flag in ("--help", "-h", "help"):
        proc = subprocess.run(
            [sys.executable, "-m", "control_api", flag],
            env=clean,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        for name in ("registry-auth", "MINER_SS58", "MAX_BODY_BYTES", "API_HOST", "METRICS_HOST"):
            assert name in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "control_api", "serve"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "unknown command 'serve'" in proc.stderr


def test_bind_addresses_are_checked(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in {**env, "API_HOST": "all-interfaces"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit):
        _settings()
    assert "API_HOST" in capsys.readouterr().err
    for key, value in {"API_HOST": "::", "REGISTRY_AUTH_HOST": "127.0.0.1"}.items():
        monkeypatch.setenv(key, value)
    settings = _settings()
    assert settings.api_host == "::" and settings.metrics_host == ""


def test_api_without_kubernetes_refuses_to_start(env: dict[str, str], tmp_path: Path) -> None:
    """The API does not start silently without a cluster (issue #16 item 10): exit 2 and one
    line naming KUBERNETES_REQUIRED, unless that is false."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MINER_", "KUBE"))}
    missing = str(tmp_path / "no-kubeconfig")
    proc = subprocess.run(
        [sys.executable, "-m", "control_api", "api"],
        env={**clean, **env, "KUBECONFIG": missing, "CONTROL_API_MIGRATE": "false"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("no Kubernetes configuration")
    assert "KUBERNETES_REQUIRED=false" in proc.stderr
