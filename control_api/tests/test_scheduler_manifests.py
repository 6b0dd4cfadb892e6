"""The objects of one chute deployment (runtime contract §7.3), field by field."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest
from control_api.scheduler import manifests
from control_api.scheduler.manifests import ChuteDeploySpec, JobPort, ManifestError

DEP = "0f8fad5b-d9cb-469f-a165-70867728950e"
SPEC = ChuteDeploySpec(
    deployment_id=DEP,
    chute_id="chute-1",
    version="v7",
    config_id="cfg-1",
    job_id=None,
    node="gpu-0",
    host="203.0.113.7",
    image="5abc.localregistry.chutes.ai:30500/user/img:1",
    code="print('hi')",
    filename="app.py",
    ref_str="app:chute",
    chutes_version="0.3.3",
    miner_ss58="5Miner",
    validator="5Validator",
    gpu_ids=("0123456789ABCDEF0123456789abcdef", "f" * 32),
    cpu_per_gpu=6,
    memory_per_gpu=80,
    disk_gb=50,
    launch_token="jwt",
    job_ports=(JobPort(9000, "udp"), JobPort(9001, "http"), JobPort(8000, "tcp")),
)
PORTS = {8000: 30001, 8001: 30002, 9000: 30003, 9001: 30004}


def container(job: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return c


def env_of(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(job)["env"]}


def test_names_and_labels() -> None:
    assert manifests.code_configmap_name("chute-1", "v7") == (
        f"chute-code-{uuid.uuid5(uuid.NAMESPACE_OID, 'chute-1::v7')}"
    )
    job = manifests.job(SPEC, PORTS)
    svc = manifests.service(SPEC)
    four = {
        "chutes/deployment-id": DEP,
        "chutes/chute": "true",
        "chutes/chute-id": "chute-1",
        "chutes/version": "v7",
    }
    assert svc["metadata"] == {"name": f"chute-service-{DEP}", "labels": four}
    assert job["metadata"]["name"] == f"chute-{DEP}"
    assert job["metadata"]["labels"] == four | {"chutes/config-id": "cfg-1"}
    assert job["spec"]["template"]["metadata"]["labels"] == job["metadata"]["labels"]
    with_job = manifests.job(replace(SPEC, job_id="j-1"), PORTS)
    labels = with_job["spec"]["template"]["metadata"]["labels"]
    assert labels["chutes/job-id"] == "j-1" and labels["chutes/job"] == "true"


def test_service_ports() -> None:
    svc = manifests.service(SPEC)
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    assert svc["spec"]["selector"] == {"chutes/deployment-id": DEP}
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("chute-8000", 8000, "TCP"),
        ("chute-8001", 8001, "TCP"),
        ("chute-9000", 9000, "UDP"),
        ("chute-9001", 9001, "TCP"),
    ]


def test_job_spec() -> None:
    job = manifests.job(SPEC, PORTS)
    spec = job["spec"]
    assert (spec["parallelism"], spec["completions"], spec["backoffLimit"]) == (1, 1, 0)
    assert spec["ttlSecondsAfterFinished"] == 300
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["nodeName"] == "gpu-0"
    assert pod["runtimeClassName"] == "nvidia-container-runtime"
    assert spec["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/path": "/_metrics",
        "prometheus.io/port": "8000",
    }
    c = container(job)
    res = {"cpu": "12", "memory": "160Gi", "ephemeral-storage": "50Gi"}
    assert c["resources"] == {"requests": res, "limits": res}  # no nvidia.com/gpu
    assert c["command"] == [
        "chutes", "run", "app:chute", "--port", "8000",
        "--miner-ss58", "5Miner", "--validator-ss58", "5Validator",
    ]  # fmt: skip
    assert c["securityContext"] == {"capabilities": {"add": ["IPC_LOCK"]}}
    assert {m["mountPath"] for m in c["volumeMounts"]} == {
        "/app/app.py",
        "/cache",
        "/tmp",
        "/dev/shm",
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"]["hostPath"] == {
        "path": "/var/snap/cache/chute-1",
        "type": "DirectoryOrCreate",
    }
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "50Gi"}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert volumes["code"]["configMap"]["name"] == manifests.code_configmap_name("chute-1", "v7")
    init = pod["initContainers"][0]
    init_env = {e["name"]: e["value"] for e in init["env"]}
    assert init_env["CLEANUP_EXCLUDE"] == "chute-1" and init_env["CACHE_MAX_SIZE_GB"] == "500"
    assert init["securityContext"] == {"runAsUser": 0, "runAsGroup": 0}  # hostPath is root's


def test_environment() -> None:
    env = env_of(manifests.job(SPEC, PORTS))
    assert env["NVIDIA_VISIBLE_DEVICES"] == (
        "GPU-01234567-89ab-cdef-0123-456789abcdef,GPU-ffffffff-ffff-ffff-ffff-ffffffffffff"
    )
    assert (env["CHUTES_PORT_PRIMARY"], env["CHUTES_PORT_LOGGING"]) == ("30001", "30002")
    assert env["CHUTES_PORT_UDP_9000"] == "30003" and env["CHUTES_PORT_TCP_9001"] == "30004"
    assert env["CHUTES_LAUNCH_JWT"] == "jwt" and env["CHUTES_EXTERNAL_HOST"] == "203.0.113.7"
    assert env["CHUTES_EXECUTION_CONTEXT"] == "REMOTE" and env["NCCL_SOCKET_IFNAME"] == "lo"


@pytest.mark.parametrize(
    ("version", "port"), [("0.3.3", 8001), ("0.3.10", 8001), ("0.3.2", 8000), (None, 8000)]
)
def test_readiness_port_by_chutes_version(version: str | None, port: int) -> None:
    probe = container(manifests.job(replace(SPEC, chutes_version=version), PORTS))["readinessProbe"]
    assert probe["httpGet"] == {"path": "/_alive", "port": port}
    assert (probe["initialDelaySeconds"], probe["periodSeconds"], probe["failureThreshold"]) == (
        15,
        15,
        60,
    )


def test_refusals() -> None:
    with pytest.raises(ManifestError, match="over the ConfigMap limit"):
        manifests.code_configmap("c", "1", "app.py", "x" * manifests.CODE_LIMIT_BYTES)
    assert manifests.code_configmap("c", "1", "app.py", "x" * 1000)["data"]["app.py"]
    with pytest.raises(ManifestError, match="not 32 hex"):
        manifests.job(replace(SPEC, gpu_ids=("GPU-123",)), PORTS)
    with pytest.raises(ManifestError, match="nodePort"):
        manifests.job(SPEC, {8000: 30001})
    with pytest.raises(ManifestError, match="longer than 63"):
        manifests.service(replace(SPEC, deployment_id="d" * 50))
