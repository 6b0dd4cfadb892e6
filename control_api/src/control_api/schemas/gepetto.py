"""What crosses into the scheduler: events from the stream (runtime contract §4.3, §5, §9.2;
a discriminated union on `event_type`) and the validator's chute objects (§4.2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    validator: str = ""  # the relay adds the socket's hotkey; internal events have none
    miner_hotkey: str | None = None  # targeted events: for this miner only when it matches


class ChuteData(_Data):
    chute_id: str = Field(min_length=1)
    version: str = Field(min_length=1)
    job_only: bool = False


class BountyData(_Data):
    chute_id: str = Field(min_length=1)
    bounty: float = 0.0


class ImageData(_Data):
    image_id: str = ""


class ImageUpdatedData(_Data):
    image_id: str = ""
    image: str = Field(min_length=1)
    chutes_version: str | None = None
    chute_ids: list[str] = Field(default_factory=list)


class GpuVerifiedData(_Data):
    gpu_id: str = Field(min_length=1)


class InstanceData(_Data):
    instance_id: str = Field(min_length=1)
    chute_id: str | None = None
    config_id: str | None = None


class RollingUpdateData(_Data):
    chute_id: str = Field(min_length=1)
    instance_id: str = Field(min_length=1)
    old_version: str | None = None
    new_version: str = Field(min_length=1)
    reason: str | None = None


class JobCreatedData(_Data):
    job_id: str = Field(min_length=1)
    chute_id: str = Field(min_length=1)
    method: str | None = None
    image_id: str | None = None
    gpu_count: int | None = Field(default=None, ge=1)
    compute_multiplier: float = 1.0
    # Upstream read `excluded`, the validator sends `exclude` (so exclusion never applied);
    # both are accepted and merged.
    exclude: list[str] = Field(default_factory=list)
    # A re-broadcast job (after another miner released it) has no `disk_gb`: upstream crashed.
    disk_gb: int = Field(default=10, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _merge_exclusions(cls, data: Any) -> Any:
        if isinstance(data, dict):
            merged: list[str] = []
            for key in ("exclude", "excluded"):
                value = data.get(key)
                if isinstance(value, list):
                    merged += [v for v in value if isinstance(v, str)]
            data = {**data, "exclude": merged}
            if data.get("disk_gb") is None:
                data.pop("disk_gb", None)
        return data


class JobDeletedData(_Data):
    job_id: str = Field(min_length=1)
    instance_id: str | None = None


class ServerDeletedData(_Data):
    server_id: str = Field(min_length=1)


class UndeployData(_Data):
    deployment_ids: list[str] = Field(min_length=1)
    reason: str = ""


class ReconnectedData(_Data):
    pass


class ChuteCreated(BaseModel):
    event_type: Literal["chute_created"]
    event_data: ChuteData


class ChuteUpdated(BaseModel):
    event_type: Literal["chute_updated"]
    event_data: ChuteData


class ChuteDeleted(BaseModel):
    event_type: Literal["chute_deleted"]
    event_data: ChuteData


class BountyChange(BaseModel):
    event_type: Literal["bounty_change"]
    event_data: BountyData


class ImageCreated(BaseModel):
    event_type: Literal["image_created"]
    event_data: ImageData


class ImageDeleted(BaseModel):
    event_type: Literal["image_deleted"]
    event_data: ImageData


class ImageUpdated(BaseModel):
    event_type: Literal["image_updated"]
    event_data: ImageUpdatedData


class GpuVerified(BaseModel):
    event_type: Literal["gpu_verified"]
    event_data: GpuVerifiedData


class InstanceCreated(BaseModel):
    event_type: Literal["instance_created"]
    event_data: InstanceData


class InstanceVerified(BaseModel):
    event_type: Literal["instance_verified"]
    event_data: InstanceData


class InstanceActivated(BaseModel):
    event_type: Literal["instance_activated"]
    event_data: InstanceData


class InstanceDeleted(BaseModel):
    event_type: Literal["instance_deleted"]
    event_data: InstanceData


class RollingUpdate(BaseModel):
    event_type: Literal["rolling_update"]
    event_data: RollingUpdateData


class JobCreated(BaseModel):
    event_type: Literal["job_created"]
    event_data: JobCreatedData


class JobDeleted(BaseModel):
    event_type: Literal["job_deleted"]
    event_data: JobDeletedData


class ServerDeleted(BaseModel):
    event_type: Literal["server_deleted"]
    event_data: ServerDeletedData


class UndeployRequested(BaseModel):
    event_type: Literal["undeploy_requested"]
    event_data: UndeployData


class SocketReconnected(BaseModel):
    event_type: Literal["socket_reconnected"]
    event_data: ReconnectedData


Event = Annotated[
    ChuteCreated
    | ChuteUpdated
    | ChuteDeleted
    | BountyChange
    | ImageCreated
    | ImageDeleted
    | ImageUpdated
    | GpuVerified
    | InstanceCreated
    | InstanceVerified
    | InstanceActivated
    | InstanceDeleted
    | RollingUpdate
    | JobCreated
    | JobDeleted
    | ServerDeleted
    | UndeployRequested
    | SocketReconnected,
    Field(discriminator="event_type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_TYPES = frozenset(
    {
        "chute_created", "chute_updated", "chute_deleted", "bounty_change", "image_created",
        "image_deleted", "image_updated", "gpu_verified", "instance_created",
        "instance_verified", "instance_activated", "instance_deleted", "rolling_update",
        "job_created", "job_deleted", "server_deleted", "undeploy_requested",
        "socket_reconnected",
    }
)  # fmt: skip


def parse_event(raw: str | bytes) -> Event:
    """Raises pydantic.ValidationError for anything that is not a known, well-formed event."""
    return EVENT_ADAPTER.validate_json(raw)


class RemotePort(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    port: int = Field(ge=1, le=65535)
    proto: str = "tcp"


class RemoteJob(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    ports: list[RemotePort] = Field(default_factory=list)


class NodeSelector(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    gpu_count: int = Field(default=1, ge=1, le=10)


class RemoteChute(BaseModel):
    """`GET /miner/chutes/{chute_id}/{version}` (the fields the scheduler uses)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    chute_id: str = Field(min_length=1)
    name: str | None = None
    image: str = Field(min_length=1)
    code: str = ""
    filename: str = Field(default="app.py", min_length=1)
    ref_str: str = Field(min_length=1)
    version: str = Field(min_length=1)
    supported_gpus: list[str] = Field(default_factory=list)
    node_selector: NodeSelector = Field(default_factory=NodeSelector)
    chutes_version: str | None = None
    jobs: list[RemoteJob] = Field(default_factory=list)
    ban_reason: str | None = None

    @property
    def gpu_count(self) -> int:
        return self.node_selector.gpu_count


class RemoteMetrics(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    chute_id: str
    compute_multiplier: float = 1.0
    total_invocations: float = 0.0
    total_compute_time: float = 0.0
    rate_limit_count: float = 0.0
    instance_count: int = 0
    total_usage_usd: float = 0.0


class RemoteUtilization(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    chute_id: str
    scalable: bool = True
    update_in_progress: bool = False


class RemoteInstance(BaseModel):
    """One item of `GET /miner/instances/?explicit_null=True`: an instance the validator holds
    for this miner (the fields reconcile uses)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    instance_id: str = Field(min_length=1)
    chute_id: str = Field(min_length=1)
    config_id: str | None = None
    miner_hotkey: str | None = None
    active: bool = False
    verified: bool = False
