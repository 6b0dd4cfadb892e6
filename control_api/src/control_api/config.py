"""Settings from the environment (upstream names); fail closed on anything missing or odd."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from control_api.services.signing import keypair_from_seed

_SS58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{47,48}$")
_DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "xxx", "todo"}


class ValidatorConfig(BaseModel):
    hotkey: str
    registry: str
    api: str
    socket: str

    @field_validator("hotkey")
    @classmethod
    def _ss58(cls, value: str) -> str:
        if not _SS58.match(value):
            raise ValueError("hotkey is not an ss58 address")
        return value


class ValidatorsConfig(BaseModel):
    defaultRegistry: str  # noqa: N815 - upstream JSON key
    defaultApi: str  # noqa: N815 - upstream JSON key
    supported: list[ValidatorConfig] = Field(min_length=1)

    def get(self, hotkey: str) -> ValidatorConfig | None:
        return next((v for v in self.supported if v.hotkey == hotkey), None)


class Settings(BaseSettings):
    """Everything the API, the registry-auth listener and the relay read from the environment."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    miner_ss58: str
    miner_seed: SecretStr
    validators: Annotated[ValidatorsConfig, NoDecode]  # JSON parsed below: errors name it
    postgresql: SecretStr
    redis_url: str
    chutes_namespace: str = "chutes"
    registry_proxy_port: int = Field(default=30500, ge=1, le=65535)
    registry_auth_port: int = Field(default=8001, ge=1, le=65535)
    registry_auth_token: SecretStr
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    api_port: int = Field(default=8000, ge=1, le=65535)
    graval_bootstrap_image: str = "parachutes/graval-bootstrap:latest"
    graval_bootstrap_timeout: int = Field(default=900, ge=10)
    graval_runtime_class: str = "nvidia-container-runtime"
    db_pool_max: int = Field(default=16, ge=2, le=256)
    event_stream_maxlen: int = Field(default=100_000, ge=100)
    sse_heartbeat_s: float = Field(default=10.0, gt=0, le=15.0)
    verification_poll_s: float = Field(default=1.5, gt=0, le=2.0)
    relay_lease_ttl_s: float = Field(default=15.0, ge=0.5, le=300.0)
    # GET /servers/kubeconfig (sync-kubeconfig): a token for this namespace-scoped service
    # account, for the API server at KUBECONFIG_SERVER; unset = the route answers 404.
    kubeconfig_service_account: str = ""
    kubeconfig_server: str = ""
    kubeconfig_token_ttl_s: int = Field(default=86_400, ge=600, le=2_592_000)

    @field_validator("validators", mode="before")
    @classmethod
    def _validators_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value)
        return value

    @field_validator("miner_ss58")
    @classmethod
    def _miner_ss58(cls, value: str) -> str:
        if not _SS58.match(value):
            raise ValueError("MINER_SS58 is not an ss58 address")
        return value

    @field_validator("postgresql")
    @classmethod
    def _dsn(cls, value: SecretStr) -> SecretStr:
        dsn = value.get_secret_value()
        dsn = re.sub(r"^postgres(?:ql)?\+[a-z0-9_]+://", "postgresql://", dsn)
        if not (dsn.startswith("postgresql://") or dsn.startswith("postgres://") or "=" in dsn):
            raise ValueError("POSTGRESQL is not a libpq DSN or postgresql:// URL")
        return SecretStr(dsn)

    @field_validator("registry_auth_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        if len(token) < 16 or token.lower() in _PLACEHOLDERS:
            raise ValueError("REGISTRY_AUTH_TOKEN must be a real secret of >= 16 characters")
        return value

    @field_validator("kubeconfig_service_account")
    @classmethod
    def _service_account(cls, value: str) -> str:
        if value and not _DNS_SUBDOMAIN.match(value):
            raise ValueError("KUBECONFIG_SERVICE_ACCOUNT is not a service account name")
        return value

    @field_validator("kubeconfig_server")
    @classmethod
    def _kube_server(cls, value: str) -> str:
        if value and not re.match(r"^https://[^/\s]+(/\S*)?$", value):
            raise ValueError("KUBECONFIG_SERVER is not an https:// URL")
        return value

    @model_validator(mode="after")
    def _kubeconfig_complete(self) -> Settings:
        if self.kubeconfig_service_account and not self.kubeconfig_server:
            raise ValueError("KUBECONFIG_SERVER is required with KUBECONFIG_SERVICE_ACCOUNT")
        return self

    @model_validator(mode="after")
    def _seed_matches(self) -> Settings:
        try:
            keypair = keypair_from_seed(self.miner_seed.get_secret_value())
        except ValueError as exc:
            raise ValueError("MINER_SEED is not a 32-byte hex seed") from exc
        if keypair.ss58_address != self.miner_ss58:
            raise ValueError("MINER_SEED does not derive MINER_SS58")
        return self


def describe_error(exc: ValidationError) -> str:
    """One line naming each bad setting, never its value."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        parts.append(f"{loc.upper()}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)
