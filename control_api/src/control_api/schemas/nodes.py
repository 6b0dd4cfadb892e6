"""Shapes crossing the validator and bootstrap boundaries."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DeviceInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    uuid: str = Field(pattern=r"^[0-9a-f]{32}$")
    name: str
    memory: int
    processors: int
    clock_rate: float
    max_threads_per_processor: int | None = None


class DevicesReply(BaseModel):
    devices: list[DeviceInfo]


class RegisteredNode(BaseModel):
    model_config = ConfigDict(extra="allow")

    seed: int


class RegisterReply(BaseModel):
    nodes: list[RegisteredNode]
    task_id: str


class VerificationStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["pending", "verified", "error", "failed"]
    error: str | None = None
    detail: Any = None
