"""Request bodies and response DTOs of the miner API (contract §2.3). The inventory JSON is
built in SQL with exactly these fields; these models document it and validate it in tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from control_api.core.text import clean_text


class RequestBody(BaseModel):
    """Base of every request body: no string field may hold a control character (NUL
    included), so none reaches Kubernetes, the validator or PostgreSQL (422 instead)."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if isinstance(value, str) and not clean_text(value):
            raise ValueError("control characters are not allowed")
        return value


class AddNodeBody(RequestBody):
    model_config = ConfigDict(extra="ignore")  # CLI 0.9.0 also sends agent_api

    name: str = Field(min_length=1, max_length=253)
    validator: str = Field(min_length=1, max_length=64)
    hourly_cost: float = Field(ge=0, allow_inf_nan=False)
    gpu_short_ref: str = Field(min_length=1, max_length=64)


class GpuOut(BaseModel):
    gpu_id: str
    validator: str | None
    server_id: str
    deployment_id: str | None
    device_info: dict[str, Any]
    model_short_ref: str
    verified: bool


class ChuteOut(BaseModel):
    chute_id: str
    name: str | None
    version: str
    image: str
    chutes_version: str | None
    gpu_count: int
    supported_gpus: list[str]
    ban_reason: str | None


class DeploymentOut(BaseModel):
    deployment_id: str
    instance_id: str | None
    validator: str
    host: str | None
    port: int | None
    chute_id: str
    server_id: str
    version: str
    active: bool
    stub: bool
    verified_at: datetime | None
    job_id: str | None
    config_id: str | None
    created_at: datetime
    activated_at: datetime | None = None
    terminating_at: datetime | None = None
    gpus: list[GpuOut]
    chute: ChuteOut | None


class ServerOut(BaseModel):
    server_id: str
    validator: str
    name: str
    ip_address: str | None
    verification_port: int | None
    status: str
    created_at: datetime
    labels: dict[str, Any]
    seed: int | None
    gpu_count: int
    cpu_per_gpu: int
    memory_per_gpu: int
    hourly_cost: float
    locked: bool
    is_tee: bool
    gpus: list[GpuOut]
    deployments: list[DeploymentOut]


class PurgeItem(BaseModel):
    deployment_id: str
    chute_id: str
    chute_name: str | None
    server_id: str
    server_name: str
    gpu_count: int


class PreflightOut(BaseModel):
    jobs: list[DeploymentOut]


class DeleteServerOut(BaseModel):
    status: str
    detail: str


class PurgeOut(BaseModel):
    status: str
    deployments_purged: list[PurgeItem]


class PurgeOneOut(BaseModel):
    status: str
    deployment_purged: DeploymentOut


class Message(BaseModel):
    message: str


class Detail(BaseModel):
    detail: str
