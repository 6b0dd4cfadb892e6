#!/usr/bin/python
# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Write extended resources into a node's status (capacity and allocatable)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_node_resources
short_description: Advertise extended resources in a node's status (a device plugin's stand-in)
version_added: 0.1.0
author: chutes.miner developers (!UNKNOWN)
description:
  - Sets each of O(resources) in C(status.capacity) and C(status.allocatable) of the node O(name),
    through the node's C(status) subresource (a patch of the node itself ignores status), only
    where the value differs.
  - A stand-in for a device plugin where there is no device (the lab's GPU nodes have no GPU).
    A kubelet keeps an extended resource it does not manage in the capacity and copies it into
    the allocatable at its next status update; it drops the value only when the node object is
    recreated, after which this module must run again.
  - Kubernetes has no C(kubernetes.core) module for the C(status) subresource; this one uses the
    Python Kubernetes client C(kubernetes.core) needs.
requirements:
  - kubernetes (the Python client)
options:
  kubeconfig:
    description: Kubeconfig file with rights to patch C(nodes/status).
    type: path
    required: true
  name:
    description: The node.
    type: str
    required: true
  resources:
    description:
      - Extended resource name (with a domain, for example C(nvidia.com/gpu)) -> count (0 or more).
    type: dict
    required: true
attributes:
  check_mode:
    support: full
    description: Reports whether the status would change, changes nothing.
  diff_mode:
    support: none
    description: No diff.
"""

EXAMPLES = r"""
- name: Advertise 8 stand-in GPUs on gpu-0 (lab only)
  chutes.miner.k8s_node_resources:
    kubeconfig: /etc/chutes-miner/kubeconfig/admin.conf
    name: gpu-0
    resources:
      nvidia.com/gpu: 8
"""

RETURN = r"""
before:
  description:
    - The values the node had, C(capacity) and C(allocatable), for the names in O(resources)
      (absent ones are null).
  type: dict
  returned: always
"""

import re
import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from kubernetes import client, config  # type: ignore[import-untyped]

    KUBERNETES_ERROR = None
except ImportError:  # pragma: no cover - reported by the module
    KUBERNETES_ERROR = traceback.format_exc()

EXTENDED = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def status_patch(status: dict[str, Any], resources: dict[str, int]) -> dict[str, Any]:
    """The status patch that sets ``resources`` in capacity and allocatable, or {} when
    ``status`` (a node's status, as a dict) already carries them."""
    patch: dict[str, dict[str, str]] = {}
    for field in ("capacity", "allocatable"):
        have = status.get(field) or {}
        for name, count in resources.items():
            if str(have.get(name)) != str(count):
                patch.setdefault(field, {})[name] = str(count)
    return patch


def check_resources(resources: dict[str, Any]) -> dict[str, int]:
    """``resources`` with int counts; ValueError naming the first bad entry."""
    out = {}
    for name, count in resources.items():
        if not EXTENDED.match(str(name)) or str(name).startswith("kubernetes.io/"):
            raise ValueError(f"{name!r} is not an extended resource name (domain/name)")
        if isinstance(count, bool) or not re.fullmatch(r"[0-9]+", str(count)):
            raise ValueError(f"{name}: count {count!r} is not a whole number of 0 or more")
        out[str(name)] = int(count)
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "kubeconfig": {"type": "path", "required": True},
            "name": {"type": "str", "required": True},
            "resources": {"type": "dict", "required": True},
        },
        supports_check_mode=True,
    )
    if KUBERNETES_ERROR:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_ERROR)
    try:
        resources = check_resources(module.params["resources"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    api = client.CoreV1Api(config.new_client_from_config(config_file=module.params["kubeconfig"]))
    name = module.params["name"]
    try:
        node = api.read_node_status(name)
    except client.ApiException as exc:
        module.fail_json(msg=f"cannot read node {name}: {exc.status} {exc.reason}")
    status = api.api_client.sanitize_for_serialization(node.status) or {}
    before = {
        field: {k: (status.get(field) or {}).get(k) for k in resources}
        for field in ("capacity", "allocatable")
    }
    patch = status_patch(status, resources)
    if patch and not module.check_mode:
        try:
            api.patch_node_status(name, {"status": patch})
        except client.ApiException as exc:
            module.fail_json(
                msg=f"cannot patch the status of node {name}: {exc.status} {exc.reason}"
            )
    module.exit_json(changed=bool(patch), before=before)


if __name__ == "__main__":
    main()
