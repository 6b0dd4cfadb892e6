# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.k8s_workload_report``: why a workload is not ready, in one paragraph."""

from __future__ import annotations

from typing import Any

DOCUMENTATION = r"""
name: k8s_workload_report
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Why a Deployment, DaemonSet or Job is not ready, from its status, pods and events
description:
  - Names the object and says what its status shows (replicas updated/available, Job failed),
    then each of its pods (phase, and every container that is waiting or terminated with its
    reason, message and exit code, restarts) and the newest events of the object and its pods.
  - Used by the component roles when a wait times out, so the failure says which object and why.
options:
  _input:
    description: The object as read from the API (or None when it does not exist).
    type: dict
    required: true
  pods:
    description: The pods selected by the object (C(resources) of C(kubernetes.core.k8s_info)).
    type: list
    elements: dict
    default: []
  events:
    description:
      - Events of the namespace (C(resources) of C(kubernetes.core.k8s_info) with C(kind=Event)).
      - Only those about the object, its ReplicaSets or its pods are shown.
    type: list
    elements: dict
    default: []
  max_events:
    description: How many of the newest matching events to show.
    type: int
    default: 8
"""

EXAMPLES = r"""
- name: Say why the api Deployment is not ready
  ansible.builtin.fail:
    msg: >-
      {{ api.resources | first | default(None)
         | chutes.miner.k8s_workload_report(pods.resources, events.resources) }}
"""

RETURN = r"""
_value:
  description: One line per finding, joined with "; ".
  type: str
"""


def _status(obj: dict[str, Any]) -> str:
    kind = obj.get("kind")
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    if kind == "Deployment":
        return (
            f"{status.get('updatedReplicas', 0)} updated, {status.get('availableReplicas', 0)}"
            f" available of {spec.get('replicas', 1)} replicas"
        )
    if kind == "DaemonSet":
        return (
            f"{status.get('updatedNumberScheduled', 0)} updated, {status.get('numberAvailable', 0)}"
            f" available of {status.get('desiredNumberScheduled', 0)} scheduled pods"
        )
    if kind == "Job":
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Failed" and cond.get("status") == "True":
                return f"failed: {cond.get('reason', '')} {cond.get('message', '')}".strip()
        return (
            f"{status.get('active', 0)} active, {status.get('failed', 0)} failed pods, not complete"
        )
    return "unknown kind"


def _container(state: dict[str, Any], name: str, restarts: int) -> str | None:
    waiting = (state.get("state") or {}).get("waiting")
    terminated = (state.get("state") or {}).get("terminated") or (state.get("lastState") or {}).get(
        "terminated"
    )
    parts = []
    if waiting:
        parts.append(f"waiting {waiting.get('reason', '')} {waiting.get('message', '')}".strip())
    if terminated:
        parts.append(
            f"terminated {terminated.get('reason', '')} exit {terminated.get('exitCode', '?')}"
            f" {terminated.get('message', '')}".strip()
        )
    if not state.get("ready") and not parts:
        parts.append("not ready")
    if restarts:
        parts.append(f"{restarts} restarts")
    return f"container {name}: " + ", ".join(parts) if parts else None


def _pod(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    where = (pod.get("spec") or {}).get("nodeName") or "unscheduled"
    found = [f"pod {meta.get('name', '?')} on {where}: {status.get('phase', 'Unknown')}"]
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            found.append(f"not scheduled: {cond.get('message', cond.get('reason', ''))}")
    for state in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        line = _container(state, state.get("name", "?"), int(state.get("restartCount") or 0))
        if line:
            found.append(line)
    return ", ".join(found)


def _when(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def k8s_workload_report(
    obj: Any,
    pods: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
    max_events: int = 8,
) -> str:
    """``Deployment/api: 0 updated, 0 available of 1 replicas; pod api-x on n1: Pending, ...``"""
    if not isinstance(obj, dict):
        return "the object does not exist"
    meta = obj.get("metadata") or {}
    name = f"{obj.get('kind', '?')}/{meta.get('name', '?')}"
    lines = [f"{name}: {_status(obj)}"]
    pods = [p for p in pods or [] if isinstance(p, dict)]
    lines += [_pod(p) for p in pods] or ["no pods"]
    names = {meta.get("name")} | {(p.get("metadata") or {}).get("name") for p in pods}
    prefix = f"{meta.get('name')}-"

    def about(event: dict[str, Any]) -> bool:
        involved = event.get("involvedObject") or {}
        if involved.get("name") in names:
            return True
        # a Deployment's ReplicaSets: FailedCreate (quota, admission, missing account) is theirs
        return involved.get("kind") == "ReplicaSet" and str(involved.get("name")).startswith(prefix)

    related = [e for e in events or [] if isinstance(e, dict) and about(e)]
    related.sort(key=_when)
    for event in related[-max_events:]:
        involved = event.get("involvedObject") or {}
        what = f"{event.get('type', '')} {event.get('reason', '')}: {event.get('message', '')}"
        name = f"{involved.get('kind', '?')}/{involved.get('name', '?')}"
        lines.append(f"event {name} {what}".strip())
    return "; ".join(lines)


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"k8s_workload_report": k8s_workload_report}
