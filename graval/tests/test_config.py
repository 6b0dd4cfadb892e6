"""Settings from the environment: fail closed on anything missing or malformed (§6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from graval_bootstrap.config import ConfigError, Settings

if TYPE_CHECKING:
    from conftest import Keys


def env_for(keys: Keys, **overrides: str) -> dict[str, str]:
    env = {
        "MINER_HOTKEY_SS58": keys.miner.ss58_address,
        "VALIDATOR_WHITELIST": keys.validator.ss58_address,
        "EXPECTED_GPU_COUNT": "8",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v != "<unset>"}


def test_valid_env(keys: Keys) -> None:
    whitelist = f" {keys.validator.ss58_address} ,, {keys.other.ss58_address},"
    settings = Settings.from_env(
        env_for(
            keys,
            VALIDATOR_WHITELIST=whitelist,
            PORT="8123",
            REMOTE_TOKEN_ALLOWED_HOSTS="API.chutes.ai, ,api.example:8443",
        )
    )
    assert settings.miner_hotkey == keys.miner.ss58_address
    assert settings.validator_whitelist == (keys.validator.ss58_address, keys.other.ss58_address)
    assert settings.expected_gpu_count == 8
    assert settings.port == 8123
    assert settings.remote_token_allowed_hosts == ("api.chutes.ai", "api.example:8443")


def test_defaults(keys: Keys) -> None:
    settings = Settings.from_env(env_for(keys))
    assert settings.port == 8000
    assert settings.remote_token_allowed_hosts == ()
    assert settings.termination_log == "/dev/termination-log"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"MINER_HOTKEY_SS58": "<unset>"}, "MINER_HOTKEY_SS58 is missing"),
        ({"MINER_HOTKEY_SS58": "  "}, "MINER_HOTKEY_SS58 is missing"),
        ({"MINER_HOTKEY_SS58": "5notanaddress"}, "MINER_HOTKEY_SS58 is not an ss58"),
        ({"VALIDATOR_WHITELIST": "<unset>"}, "VALIDATOR_WHITELIST is missing"),
        ({"VALIDATOR_WHITELIST": " , ,"}, "VALIDATOR_WHITELIST is missing"),
        ({"VALIDATOR_WHITELIST": "0xdeadbeef"}, "VALIDATOR_WHITELIST entry 1 is not"),
        ({"EXPECTED_GPU_COUNT": "<unset>"}, "EXPECTED_GPU_COUNT is missing"),
        ({"EXPECTED_GPU_COUNT": "two"}, "EXPECTED_GPU_COUNT is not a decimal"),
        ({"EXPECTED_GPU_COUNT": "0"}, "EXPECTED_GPU_COUNT must be within"),
        ({"PORT": "70000"}, "PORT must be within"),
        ({"REMOTE_TOKEN_ALLOWED_HOSTS": "https://api.chutes.ai/"}, "host or host:port"),
    ],
)
def test_invalid_env(keys: Keys, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env_for(keys, **overrides))


def test_whitelist_second_entry_bad(keys: Keys) -> None:
    with pytest.raises(ConfigError, match="entry 2"):
        Settings.from_env(env_for(keys, VALIDATOR_WHITELIST=f"{keys.validator.ss58_address},x"))
