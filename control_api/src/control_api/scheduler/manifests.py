"""The Kubernetes objects of one chute deployment (runtime contract §7.3), as plain dicts:
the code ConfigMap, the NodePort Service and the Job. Pure functions, so the exact objects
are testable without a cluster; `clients/k8s_chutes.py` sends them."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

CODE_LIMIT_BYTES = 1_000_000  # a ConfigMap holds ~1 MiB in total, keys and metadata included
NAME_LIMIT = 63
CACHE_CLEANER_CONFIGMAP = "chutes-cache-cleaner"
CACHE_CLEANER_SCRIPT = "/scripts/cache_cleaner.py"
NCCL_ENV = {
    "NCCL_P2P_DISABLE": "1",
    "NCCL_IB_DISABLE": "1",
    "NCCL_SHM_DISABLE": "0",
    "NCCL_NET_GDR_LEVEL": "0",
    "NCCL_DEBUG": "INFO",
    "NCCL_SOCKET_IFNAME": "lo",
    "NCCL_SOCKET_FAMILY": "AF_INET",
}
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


class ManifestError(ValueError):
    """The deployment cannot be expressed as valid objects (e.g. code too large)."""


@dataclass(frozen=True)
class JobPort:
    port: int
    proto: str  # tcp | http | udp

    @property
    def protocol(self) -> str:
        return "TCP" if self.proto.lower() in ("tcp", "http") else "UDP"

    @property
    def name(self) -> str:
        return f"chute-{self.port}"


@dataclass(frozen=True)
class ChuteDeploySpec:
    """Everything the three objects of one deployment are made of."""

    deployment_id: str
    chute_id: str
    version: str
    config_id: str
    job_id: str | None
    node: str  # the server's node name
    host: str  # the server's external IP (CHUTES_EXTERNAL_HOST)
    image: str  # full pull reference, through the registry proxy
    code: str
    filename: str
    ref_str: str
    chutes_version: str | None
    miner_ss58: str
    validator: str
    gpu_ids: tuple[str, ...]
    cpu_per_gpu: int
    memory_per_gpu: int
    disk_gb: int
    launch_token: str
    job_ports: tuple[JobPort, ...] = ()
    runtime_class: str = "nvidia-container-runtime"
    cache_cleaner_image: str = "parachutes/cache-cleaner:latest"
    cache_max_age_days: int = 30
    cache_max_size_gb: int = 500

    @property
    def gpu_count(self) -> int:
        return len(self.gpu_ids)


def code_configmap_name(chute_id: str, version: str) -> str:
    return f"chute-code-{uuid.uuid5(uuid.NAMESPACE_OID, f'{chute_id}::{version}')}"


def job_name(deployment_id: str) -> str:
    return f"chute-{deployment_id}"


def service_name(deployment_id: str) -> str:
    return f"chute-service-{deployment_id}"


def visible_devices(gpu_ids: tuple[str, ...]) -> str:
    """`NVIDIA_VISIBLE_DEVICES`: `GPU-` + the 8-4-4-4-12 lower-case form of each 32-hex id."""
    out = []
    for gpu in gpu_ids:
        g = gpu.lower()
        if not _HEX32.match(g):
            raise ManifestError(f"GPU id {gpu!r} is not 32 hex characters")
        out.append(f"GPU-{g[:8]}-{g[8:12]}-{g[12:16]}-{g[16:20]}-{g[20:]}")
    return ",".join(out)


def version_at_least(version: str | None, minimum: tuple[int, ...]) -> bool:
    if not version:
        return False
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts) >= minimum


def labels(spec: ChuteDeploySpec) -> dict[str, str]:
    return {
        "chutes/deployment-id": spec.deployment_id,
        "chutes/chute": "true",
        "chutes/chute-id": spec.chute_id,
        "chutes/version": spec.version,
    }


def job_labels(spec: ChuteDeploySpec) -> dict[str, str]:
    out = {**labels(spec), "chutes/config-id": spec.config_id}
    if spec.job_id:
        out |= {"chutes/job-id": spec.job_id, "chutes/job": "true"}
    return out


def _check_names(spec: ChuteDeploySpec) -> None:
    for name in (job_name(spec.deployment_id), service_name(spec.deployment_id)):
        if len(name) > NAME_LIMIT:
            raise ManifestError(f"object name {name!r} is longer than {NAME_LIMIT} characters")


def code_configmap(chute_id: str, version: str, filename: str, code: str) -> dict[str, Any]:
    size = len(code.encode()) + len(filename.encode())
    if size > CODE_LIMIT_BYTES:
        raise ManifestError(f"chute code is {size} bytes, over the ConfigMap limit")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": code_configmap_name(chute_id, version),
            "labels": {"chutes/chute-id": chute_id, "chutes/version": version},
        },
        "data": {filename: code},
    }


def service(spec: ChuteDeploySpec) -> dict[str, Any]:
    _check_names(spec)
    ports = [
        {"name": "chute-8000", "port": 8000, "targetPort": 8000, "protocol": "TCP"},
        {"name": "chute-8001", "port": 8001, "targetPort": 8001, "protocol": "TCP"},
    ]
    ports += [
        {"name": p.name, "port": p.port, "targetPort": p.port, "protocol": p.protocol}
        for p in spec.job_ports
        if p.port not in (8000, 8001)
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(spec.deployment_id), "labels": labels(spec)},
        "spec": {
            "type": "NodePort",
            "externalTrafficPolicy": "Local",
            "selector": {"chutes/deployment-id": spec.deployment_id},
            "ports": ports,
        },
    }


def _env(spec: ChuteDeploySpec, node_ports: dict[int, int]) -> list[dict[str, str]]:
    env = {
        "NVIDIA_VISIBLE_DEVICES": visible_devices(spec.gpu_ids),
        "CHUTES_PORT_PRIMARY": str(node_ports[8000]),
        "CHUTES_PORT_LOGGING": str(node_ports[8001]),
    }
    for p in spec.job_ports:
        if p.port in node_ports:
            env[f"CHUTES_PORT_{p.protocol}_{p.port}"] = str(node_ports[p.port])
    env |= {
        "CHUTES_LAUNCH_JWT": spec.launch_token,
        "CHUTES_EXTERNAL_HOST": spec.host,
        "CHUTES_EXECUTION_CONTEXT": "REMOTE",
        "HF_HOME": "/cache",
        "CIVITAI_HOME": "/cache/civitai",
        "VLLM_DISABLE_TELEMETRY": "1",
        **NCCL_ENV,
    }
    return [{"name": k, "value": v} for k, v in env.items()]


def job(spec: ChuteDeploySpec, node_ports: dict[int, int]) -> dict[str, Any]:
    """The Job; `node_ports` maps each Service port (8000, 8001, job ports) to its nodePort."""
    _check_names(spec)
    if 8000 not in node_ports or 8001 not in node_ports:
        raise ManifestError("the Service has no nodePort for 8000 and 8001")
    n = spec.gpu_count
    resources = {
        "cpu": str(spec.cpu_per_gpu * n),
        "memory": f"{spec.memory_per_gpu * n}Gi",
        "ephemeral-storage": f"{spec.disk_gb}Gi",
    }
    probe_port = 8001 if version_at_least(spec.chutes_version, (0, 3, 3)) else 8000
    command = [
        "chutes", "run", spec.ref_str, "--port", "8000",
        "--miner-ss58", spec.miner_ss58, "--validator-ss58", spec.validator,
    ]  # fmt: skip
    cleaner_env = {
        "CLEANUP_EXCLUDE": spec.chute_id,
        "HF_HOME": "/cache",
        "CIVITAI_HOME": "/cache/civitai",
        "CACHE_MAX_AGE_DAYS": str(spec.cache_max_age_days),
        "CACHE_MAX_SIZE_GB": str(spec.cache_max_size_gb),
    }
    pod_labels = job_labels(spec)
    pod = {
        "restartPolicy": "Never",
        "nodeName": spec.node,
        "runtimeClassName": spec.runtime_class,
        "volumes": [
            {
                "name": "code",
                "configMap": {"name": code_configmap_name(spec.chute_id, spec.version)},
            },
            {
                "name": "cache",
                "hostPath": {
                    "path": f"/var/snap/cache/{spec.chute_id}",
                    "type": "DirectoryOrCreate",
                },
            },
            {"name": "raw-cache", "hostPath": {"path": "/var/snap/cache"}},
            {"name": "cache-cleaner", "configMap": {"name": CACHE_CLEANER_CONFIGMAP}},
            {"name": "tmp", "emptyDir": {"sizeLimit": f"{spec.disk_gb}Gi"}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
        ],
        "initContainers": [
            {
                "name": "cache-init",
                "image": spec.cache_cleaner_image,
                "command": [
                    "/bin/sh",
                    "-c",
                    "mkdir -p /cache/hub /cache/civitai && python " + CACHE_CLEANER_SCRIPT,
                ],
                "env": [{"name": k, "value": v} for k, v in cleaner_env.items()],
                # hostPath directories are root's; the image's own user may be another
                "securityContext": {"runAsUser": 0, "runAsGroup": 0},
                "volumeMounts": [
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "raw-cache", "mountPath": "/raw-cache"},
                    {"name": "cache-cleaner", "mountPath": "/scripts"},
                ],
            }
        ],
        "containers": [
            {
                "name": "chute",
                "image": spec.image,
                "command": command,
                "env": _env(spec, node_ports),
                "resources": {"requests": resources, "limits": resources},
                "ports": [{"containerPort": 8000}, {"containerPort": 8001}]
                + [
                    {"containerPort": p.port, "protocol": p.protocol}
                    for p in spec.job_ports
                    if p.port not in (8000, 8001)
                ],
                "volumeMounts": [
                    {
                        "name": "code",
                        "mountPath": f"/app/{spec.filename}",
                        "subPath": spec.filename,
                    },
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "shm", "mountPath": "/dev/shm"},
                ],
                "securityContext": {"capabilities": {"add": ["IPC_LOCK"]}},
                "readinessProbe": {
                    "httpGet": {"path": "/_alive", "port": probe_port},
                    "initialDelaySeconds": 15,
                    "periodSeconds": 15,
                    "failureThreshold": 60,
                },
            }
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(spec.deployment_id), "labels": pod_labels},
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 300,
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/path": "/_metrics",
                        "prometheus.io/port": "8000",
                    },
                },
                "spec": pod,
            },
        },
    }
