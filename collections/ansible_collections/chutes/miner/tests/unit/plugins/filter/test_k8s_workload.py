"""chutes.miner.k8s_workload_ready and k8s_workload_report, on objects as the API returns them."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.chutes.miner.plugins.filter.k8s_workload_ready import k8s_workload_ready
from ansible_collections.chutes.miner.plugins.filter.k8s_workload_report import (
    k8s_workload_report,
)


def deployment(**status: Any) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "api", "generation": 2},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, **status},
    }


@pytest.mark.parametrize(
    ("status", "ready"),
    [
        ({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}, True),
        ({"replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}, False),  # an old pod left
        ({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}, False),
        ({"replicas": 2, "updatedReplicas": 1, "availableReplicas": 2}, False),
        (
            {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2},
            False,
        ),
        ({}, False),
    ],
)
def test_deployment(status: dict[str, Any], ready: bool) -> None:
    assert k8s_workload_ready(deployment(**status)) is ready


def test_daemonset_with_nothing_scheduled_is_done() -> None:
    ds = {"kind": "DaemonSet", "metadata": {"generation": 1}, "status": {"observedGeneration": 1}}
    assert k8s_workload_ready(ds) is True
    ds["status"].update(desiredNumberScheduled=2, updatedNumberScheduled=2, numberAvailable=1)
    assert k8s_workload_ready(ds) is False


def test_job_failed_ends_the_wait_but_is_not_ready() -> None:
    job = {"kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    assert k8s_workload_ready(job) is False
    assert k8s_workload_ready(job, settled=True) is True
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert k8s_workload_ready(job) is True
    assert k8s_workload_ready(None) is False


def test_report_names_the_object_its_pods_and_their_events() -> None:
    pod = {
        "metadata": {"name": "api-7d-x1"},
        "spec": {"nodeName": "cpu-0"},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "api",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such host"}},
                }
            ],
        },
    }
    crashed = {
        "metadata": {"name": "api-7d-x2"},
        "spec": {},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/3 nodes"}],
            "containerStatuses": [
                {
                    "name": "api",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"reason": "Error", "exitCode": 2}},
                }
            ],
        },
    }
    events = [
        {
            "involvedObject": {"kind": "ReplicaSet", "name": "api-7d"},
            "type": "Warning",
            "reason": "FailedCreate",
            "message": "serviceaccount not found",
            "lastTimestamp": "2026-12-03T09:00:02Z",
        },
        {
            "involvedObject": {"kind": "Pod", "name": "other-1"},
            "reason": "Pulled",
            "message": "unrelated",
            "lastTimestamp": "2026-12-03T09:00:01Z",
        },
        {
            "involvedObject": {"kind": "Pod", "name": "api-7d-x1"},
            "type": "Warning",
            "reason": "Failed",
            "message": "pull failed",
            "lastTimestamp": "2026-12-03T09:00:00Z",
        },
    ]
    text = k8s_workload_report(deployment(updatedReplicas=1), [pod, crashed], events)
    assert text.startswith("Deployment/api: 1 updated, 0 available of 2 replicas; ")
    assert (
        "pod api-7d-x1 on cpu-0: Pending, container api: waiting ImagePullBackOff no such host"
        in text
    )
    assert "pod api-7d-x2 on unscheduled: Running, not scheduled: 0/3 nodes" in text
    assert "waiting CrashLoopBackOff, terminated Error exit 2, 4 restarts" in text
    assert text.index("Failed: pull failed") < text.index("FailedCreate: serviceaccount not found")
    assert "unrelated" not in text
    assert k8s_workload_report(None) == "the object does not exist"
    assert k8s_workload_report(deployment(), [], []).endswith("; no pods")
