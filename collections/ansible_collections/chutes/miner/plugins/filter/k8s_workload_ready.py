# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.k8s_workload_ready``: has a Deployment, DaemonSet or Job rolled out."""

from __future__ import annotations

from typing import Any

DOCUMENTATION = r"""
name: k8s_workload_ready
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Whether a Deployment, DaemonSet or Job (as read from the API) is done
description:
  - A Deployment is done when the controller has seen its latest spec and every replica is
    updated and available (no old pods left); a DaemonSet when every scheduled pod is updated
    and available (none scheduled counts as done); a Job when it has a C(Complete)
    condition (with I(settled=true) also a C(Failed) one, which ends the wait though the Job is not
    ready).
  - Used by the component roles' wait step, in the C(until) of C(kubernetes.core.k8s_info).
options:
  _input:
    description: The object as read by C(kubernetes.core.k8s_info) (one of C(resources)), or None.
    type: dict
    required: true
  settled:
    description: Count a failed Job as finished (to stop waiting early).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Wait for the api Deployment
  kubernetes.core.k8s_info:
    api_version: apps/v1
    kind: Deployment
    name: api
    namespace: chutes
  register: api
  until: (api.resources | first | default(None)) | chutes.miner.k8s_workload_ready
  retries: 60
  delay: 5
"""

RETURN = r"""
_value:
  description: True when the rollout (or the Job) is finished.
  type: bool
"""


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def k8s_workload_ready(obj: Any, settled: bool = False) -> bool:
    """True when ``obj`` (a Deployment, DaemonSet or Job from the API) has finished; with
    ``settled`` a failed Job counts as finished too."""
    if not isinstance(obj, dict):
        return False
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind == "Job":
        return any(
            c.get("type") in (("Complete", "Failed") if settled else ("Complete",))
            and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
    if _int(status.get("observedGeneration")) < _int(meta.get("generation")):
        return False
    if kind == "Deployment":
        want = _int(spec.get("replicas", 1))
        return (
            _int(status.get("updatedReplicas")) == want
            and _int(status.get("availableReplicas")) == want
            and _int(status.get("replicas")) == want
        )
    if kind == "DaemonSet":
        want = _int(status.get("desiredNumberScheduled"))
        return (
            _int(status.get("updatedNumberScheduled")) == want
            and _int(status.get("numberAvailable")) == want
        )
    return True


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"k8s_workload_ready": k8s_workload_ready}
