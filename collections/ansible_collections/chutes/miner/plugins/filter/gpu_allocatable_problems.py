# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.gpu_allocatable_problems``: GPU nodes whose allocatable GPUs differ
from the inventory."""

from __future__ import annotations

from typing import Any

DOCUMENTATION = r"""
name: gpu_allocatable_problems
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: The GPU nodes whose allocatable GPU count is not the inventory's
description:
  - Compares C(status.allocatable) of each expected node (as read by C(kubernetes.core.k8s_info))
    with its inventory count and returns one entry per node that differs, with a message in
    English and in Chinese that says what the node reports (allocatable and capacity, or that
    the node does not exist).
  - Used by C(chutes.miner.gpu_resources)' gate, in the C(until) of the node read and in its
    failure message.
options:
  _input:
    description: Node objects (the C(resources) of C(kubernetes.core.k8s_info) with C(kind=Node)).
    type: list
    elements: dict
    required: true
  expected:
    description: Node name -> expected count (C(chutes_gpu_count)).
    type: dict
    required: true
  resource:
    description: The extended resource.
    type: str
    default: nvidia.com/gpu
"""

EXAMPLES = r"""
- name: Nodes that do not report their GPUs
  ansible.builtin.debug:
    msg: >-
      {{ nodes.resources | chutes.miner.gpu_allocatable_problems({'gpu-0': 8})
         | map(attribute='en') }}
"""

RETURN = r"""
_value:
  description: >-
    One dict per node that differs, in the order of O(expected): C(node), C(expected),
    C(allocatable) and C(capacity) (strings, None when absent; both None when the node does not
    exist), C(en) and C(zh) (what it reports).
  type: list
  elements: dict
"""


def _count(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def gpu_allocatable_problems(
    nodes: Any, expected: dict[str, Any], resource: str = "nvidia.com/gpu"
) -> list[dict[str, Any]]:
    """One entry per node of ``expected`` whose allocatable ``resource`` is not its count."""
    by_name = {(n.get("metadata") or {}).get("name"): n for n in nodes or [] if isinstance(n, dict)}
    out = []
    for name, want in expected.items():
        node = by_name.get(name)
        status = (node or {}).get("status") or {}
        allocatable = (status.get("allocatable") or {}).get(resource)
        capacity = (status.get("capacity") or {}).get(resource)
        if node is not None and _count(allocatable) == _count(want) and _count(want) is not None:
            continue
        if node is None:
            en = f"{name}: expected {want} {resource}, but there is no node of that name"
            zh = f"{name}：应有 {want} 个 {resource}，但集群中没有该节点"
        else:
            shown = "none" if allocatable is None else allocatable
            shown_zh = "无" if allocatable is None else allocatable
            cap = "none" if capacity is None else capacity
            cap_zh = "无" if capacity is None else capacity
            en = f"{name}: expected {want} {resource}, reports allocatable {shown} (capacity {cap})"
            zh = f"{name}：应有 {want} 个 {resource}，实际可分配 {shown_zh}（容量 {cap_zh}）"
        out.append(
            {
                "node": name,
                "expected": want,
                "allocatable": None if allocatable is None else str(allocatable),
                "capacity": None if capacity is None else str(capacity),
                "en": en,
                "zh": zh,
            }
        )
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gpu_allocatable_problems": gpu_allocatable_problems}
