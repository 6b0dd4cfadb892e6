"""Startup configuration (issue #6 item 1): a missing or malformed setting stops every command
with exit 2 and one line that names the setting and never its value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from control_api.__main__ import _settings

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
