"""Settings from the environment (upstream names); fail closed on anything missing or odd."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any

from bittensor_wallet.utils import get_ss58_format, is_valid_ss58_address
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from control_api.core.signing import keypair_from_seed

BITTENSOR_SS58_FORMAT = 42
_DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "xxx", "todo"}


def ss58_valid(value: str) -> bool:
    """A Bittensor account address: base58, SS58 checksum, network prefix 42. The same rule as
    the collection's `chutes.miner.ss58_valid` test (a test checks that both agree)."""
    if not value or len(value) > 64 or not value.isascii():
        return False
    try:
        return (
            bool(is_valid_ss58_address(value)) and get_ss58_format(value) == BITTENSOR_SS58_FORMAT
        )
    except ValueError:
        return False


class ValidatorConfig(BaseModel):
    hotkey: str
    registry: str
    api: str
    socket: str

    @field_validator("hotkey")
    @classmethod
    def _ss58(cls, value: str) -> str:
        if not ss58_valid(value):
            raise ValueError("hotkey is not a valid ss58 address (checksum or network prefix)")
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

    miner_ss58: str = Field(description="the miner hotkey's ss58 address")
    miner_seed: SecretStr = Field(description="32-byte hex seed of the miner hotkey")
    validators: Annotated[ValidatorsConfig, NoDecode] = Field(  # JSON parsed below
        description='JSON {"defaultRegistry","defaultApi","supported":[{"hotkey",...}]}'
    )
    postgresql: SecretStr = Field(description="libpq DSN or postgresql:// URL")
    redis_url: str = Field(description="redis:// URL")
    registry_auth_token: SecretStr = Field(
        description="secret nginx sends as X-Registry-Auth-Token (>= 16 characters)"
    )
    chutes_namespace: str = Field(default="chutes", description="Kubernetes namespace")
    # Where each process listens. A pod needs 0.0.0.0 to be reachable through a Service.
    api_host: str = Field(default="0.0.0.0", description="address the API binds")
    api_port: int = Field(default=8000, ge=1, le=65535, description="API port (node port)")
    registry_auth_host: str = Field(
        default="0.0.0.0", description="address the registry-auth listener binds"
    )
    registry_auth_port: int = Field(default=8001, ge=1, le=65535, description="its port")
    registry_proxy_port: int = Field(
        default=30500, ge=1, le=65535, description="node port of the registry proxy"
    )
    metrics_host: str = Field(
        default="", description="Prometheus address; empty = the process's own bind address"
    )
    metrics_port: int = Field(
        default=9090, ge=0, le=65535, description="Prometheus port of this process; 0 = off"
    )
    # Limits and timeouts of the API's HTTP server (checked before authentication).
    max_head_bytes: int = Field(
        default=16_384, ge=1_024, le=1_048_576, description="request line + headers (431)"
    )
    max_body_bytes: int = Field(
        default=65_536, ge=1_024, le=16_777_216, description="request body (413)"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="a request head must arrive within this"
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="a request body must arrive within this (408)"
    )
    api_idle_timeout_s: float = Field(
        default=5.0, gt=0, le=3600, description="idle keep-alive connections of the API close"
    )
    send_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="an answer the client stops reading is cut off"
    )
    registry_auth_idle_timeout_s: float = Field(
        default=75.0, gt=0, le=3600, description="idle listener connections close (> nginx's 60)"
    )
    registry_auth_max_connections: int = Field(
        default=0, ge=0, description="listener connections; above it the idlest close; 0 = auto"
    )
    # Dependencies: every call is bounded; a dependency that does not answer in time is a 503.
    db_pool_max: int = Field(default=16, ge=2, le=256, description="PostgreSQL connections")
    db_connect_timeout_s: float = Field(default=3.0, gt=0, le=60, description="connect bound")
    db_statement_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="statement_timeout; a round trip waits +1 s more"
    )
    db_pool_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="wait for a free pooled connection"
    )
    redis_timeout_s: float = Field(default=3.0, gt=0, le=60, description="connect/read bound")
    validator_timeout_s: float = Field(
        default=30.0, gt=0, le=300, description="validator HTTP read bound (connect: 5 s)"
    )
    kubernetes_required: bool = Field(
        default=True, description="false: serve without a cluster (add-node answers 503)"
    )
    graval_bootstrap_image: str = Field(
        default="parachutes/graval-bootstrap:latest", description="image add-node runs"
    )
    graval_bootstrap_timeout: int = Field(
        default=900, ge=10, description="seconds for the bootstrap, and for the verification"
    )
    graval_runtime_class: str = Field(
        default="nvidia-container-runtime", description="RuntimeClass of the bootstrap pod"
    )
    event_stream_maxlen: int = Field(
        default=100_000, ge=100, description="approximate length of miner_events_stream"
    )
    sse_heartbeat_s: float = Field(
        default=10.0, gt=0, le=15.0, description="add-node stream: an event at least this often"
    )
    verification_poll_s: float = Field(
        default=1.5, gt=0, le=2.0, description="add-node: bootstrap/verification poll interval"
    )
    relay_lease_ttl_s: float = Field(
        default=15.0, ge=0.5, le=300.0, description="relay: validator socket lease"
    )
    # GET /servers/kubeconfig (sync-kubeconfig): a token for this namespace-scoped service
    # account, for the API server at KUBECONFIG_SERVER; unset = the route answers 404.
    kubeconfig_service_account: str = Field(
        default="", description="GET /servers/kubeconfig: service account; empty = 404"
    )
    kubeconfig_server: str = Field(default="", description="https URL of the API server")
    kubeconfig_token_ttl_s: int = Field(
        default=86_400, ge=600, le=2_592_000, description="lifetime of the issued token"
    )

    @field_validator("validators", mode="before")
    @classmethod
    def _validators_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value)
        return value

    @field_validator("miner_ss58")
    @classmethod
    def _miner_ss58(cls, value: str) -> str:
        if not ss58_valid(value):
            raise ValueError("MINER_SS58 is not a valid ss58 address (checksum or network prefix)")
        return value

    @field_validator("api_host", "registry_auth_host", "metrics_host")
    @classmethod
    def _host(cls, value: str) -> str:
        if value == "" or value == "localhost":
            return value
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("is not an IP address to bind (0.0.0.0, 127.0.0.1, ::)") from None
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


def settings_help() -> str:
    """`--help`: every setting as its environment variable, its default and what it is."""
    lines = []
    for name, field in Settings.model_fields.items():
        default = "required" if field.is_required() else repr(field.default)
        lines.append(f"  {name.upper():<30} {default:<12} {field.description or ''}".rstrip())
    return "\n".join(lines)
