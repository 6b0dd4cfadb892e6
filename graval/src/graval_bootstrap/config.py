"""Settings from the environment (runtime contract §6); invalid input is fatal at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bittensor_wallet.utils import is_valid_ss58_address

DEFAULT_PORT = 8000
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


class ConfigError(ValueError):
    """A required setting is missing or invalid; the message is safe to log."""


@dataclass(frozen=True)
class Settings:
    miner_hotkey: str
    validator_whitelist: tuple[str, ...]
    expected_gpu_count: int
    remote_token_allowed_hosts: tuple[str, ...] = ()
    port: int = DEFAULT_PORT
    host: str = "0.0.0.0"  # NodePort target; auth guards every GPU route
    termination_log: str = DEFAULT_TERMINATION_LOG
    stand_in: bool = False  # GRAVAL_STAND_IN=true: the lab's stand-in Miner, no GPU

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise ConfigError on the first problem."""
        miner = env.get("MINER_HOTKEY_SS58", "").strip()
        if not miner:
            raise ConfigError("MINER_HOTKEY_SS58 is missing or empty")
        if not is_valid_ss58_address(miner):
            raise ConfigError("MINER_HOTKEY_SS58 is not an ss58 address")

        whitelist = _csv(env.get("VALIDATOR_WHITELIST", ""))
        if not whitelist:
            raise ConfigError("VALIDATOR_WHITELIST is missing or empty")
        for position, hotkey in enumerate(whitelist, start=1):
            if not is_valid_ss58_address(hotkey):
                raise ConfigError(f"VALIDATOR_WHITELIST entry {position} is not an ss58 address")

        expected = _int(env, "EXPECTED_GPU_COUNT", None, minimum=1, maximum=64)
        port = _int(env, "PORT", DEFAULT_PORT, minimum=1, maximum=65535)
        stand_in = env.get("GRAVAL_STAND_IN", "").strip().lower()
        if stand_in not in ("", "false", "true"):
            raise ConfigError("GRAVAL_STAND_IN must be true or false")
        hosts = tuple(h.lower() for h in _csv(env.get("REMOTE_TOKEN_ALLOWED_HOSTS", "")))
        for host in hosts:
            if "/" in host or "@" in host or " " in host:
                raise ConfigError("REMOTE_TOKEN_ALLOWED_HOSTS takes host or host:port entries")
        return cls(
            miner_hotkey=miner,
            validator_whitelist=whitelist,
            expected_gpu_count=expected,
            remote_token_allowed_hosts=hosts,
            port=port,
            host=env.get("HOST", "0.0.0.0").strip() or "0.0.0.0",
            termination_log=env.get("TERMINATION_LOG_PATH", DEFAULT_TERMINATION_LOG),
            stand_in=stand_in == "true",
        )


def _csv(raw: str) -> tuple[str, ...]:
    """Comma-separated values, trimmed, empties dropped, order and first occurrence kept."""
    seen: dict[str, None] = {}
    for part in raw.split(","):
        if part.strip():
            seen.setdefault(part.strip(), None)
    return tuple(seen)


def _int(
    env: Mapping[str, str], name: str, default: int | None, *, minimum: int, maximum: int
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        if default is None:
            raise ConfigError(f"{name} is missing or empty")
        return default
    if not raw.isdigit():
        raise ConfigError(f"{name} is not a decimal integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be within {minimum}..{maximum}")
    return value
