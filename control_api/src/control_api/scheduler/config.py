"""The scheduler's settings: the API's (same environment, same Deployment image) plus its own.
Fail closed like the API: a bad value stops startup with one line naming it."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import NoDecode

from control_api.core.config import Settings


class SchedulerSettings(Settings):
    gepetto_strategy: str = Field(
        default="",
        validation_alias=AliasChoices("gepetto_strategy", "gepetto_strategy_file"),
        description="strategy: module path or .py file (GEPETTO_STRATEGY_FILE); empty = baseline",
    )
    gepetto_strategy_config: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict, description="JSON object passed to create_strategy(config)"
    )
    strategy_hook_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="a slower hook is replaced by the baseline's answer"
    )
    strategy_reload_interval_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="seconds between checks of a strategy file for a new version (0 = never)",
    )
    scheduler_concurrency: int = Field(
        default=8, ge=1, le=64, description="event handlers running at once"
    )
    scheduler_max_attempts: int = Field(
        default=5, ge=1, le=50, description="tries per event before it is parked"
    )
    scheduler_backoff_s: float = Field(
        default=1.0, gt=0, le=60, description="first retry pause (doubles per try)"
    )
    scheduler_backoff_max_s: float = Field(
        default=60.0, gt=0, le=3600, description="longest retry pause"
    )
    scheduler_consumer_group: str = Field(
        default="gepetto", min_length=1, description="Redis consumer group of the event stream"
    )
    gepetto_lease_ttl_s: float = Field(
        default=15.0, ge=0.5, le=300, description="lease:gepetto (one active scheduler)"
    )
    autoscale_interval_s: float = Field(default=15.0, gt=0, description="autoscale tick")
    reconcile_interval_s: float = Field(default=60.0, gt=0, description="reconcile period")
    undeploy_wait_s: float = Field(
        default=120.0, ge=0, le=900, description="wait for a deployment's pods to go"
    )
    node_missing_grace_s: float = Field(
        default=120.0, ge=0, description="a node absent this long (and 2 reconciles) is deleted"
    )
    empty_list_rounds: int = Field(
        default=3,
        ge=1,
        le=100,
        description="reconciles in a row a validator's empty lists must persist before they "
        "remove chutes or undeploy vanished instances",
    )
    stub_timeout_s: float = Field(
        default=1800.0, gt=0, description="a deployment never activated is undeployed after this"
    )
    chute_runtime_class: str = Field(
        default="nvidia-container-runtime", description="RuntimeClass of chute pods"
    )
    cache_cleaner_image: str = Field(
        default="parachutes/cache-cleaner:latest", description="image of the cache-init step"
    )
    cache_max_age_days: int = Field(default=30, ge=1, description="chute cache cleaner")
    cache_max_size_gb: int = Field(default=500, ge=1, description="chute cache cleaner")
    cache_overrides: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict, description='JSON {"node": GB}: CACHE_MAX_SIZE_GB per node'
    )

    @field_validator("gepetto_strategy_config", "cache_overrides", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        return value
