"""The gate's comparison (filter chutes.miner.gpu_allocatable_problems) and the stand-in
module's patch (chutes.miner.k8s_node_resources), directly."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.chutes.miner.plugins.filter.gpu_allocatable_problems import (
    gpu_allocatable_problems,
)
from ansible_collections.chutes.miner.plugins.modules.k8s_node_resources import (
    check_resources,
    status_patch,
)


def _node(name: str, allocatable: Any = None, capacity: Any = None) -> dict[str, Any]:
    status: dict[str, Any] = {"capacity": {"cpu": "4"}, "allocatable": {"cpu": "4"}}
    if allocatable is not None:
        status["allocatable"]["nvidia.com/gpu"] = allocatable
    if capacity is not None:
        status["capacity"]["nvidia.com/gpu"] = capacity
    return {"metadata": {"name": name}, "status": status}


def test_equal_counts_pass() -> None:
    nodes = [_node("a", "8", "8"), _node("b", "1", "1"), _node("cpu")]
    assert gpu_allocatable_problems(nodes, {"a": 8, "b": "1"}) == []


def test_each_difference_is_named_with_what_the_node_reports() -> None:
    nodes = [_node("a", "7", "8"), _node("b"), _node("c", "8", "8")]
    found = gpu_allocatable_problems(nodes, {"a": 8, "b": 2, "c": 8, "d": 1})
    assert [p["node"] for p in found] == ["a", "b", "d"]
    assert found[0] == {
        "node": "a",
        "expected": 8,
        "allocatable": "7",
        "capacity": "8",
        "en": "a: expected 8 nvidia.com/gpu, reports allocatable 7 (capacity 8)",
        "zh": "a：应有 8 个 nvidia.com/gpu，实际可分配 7（容量 8）",
    }
    assert found[1]["en"].endswith("reports allocatable none (capacity none)")
    assert found[1]["zh"].endswith("实际可分配 无（容量 无）")
    assert found[2]["allocatable"] is None and "no node of that name" in found[2]["en"]
    assert "集群中没有该节点" in found[2]["zh"]


def test_more_gpus_than_declared_and_bad_values_fail() -> None:
    assert gpu_allocatable_problems([_node("a", "9", "9")], {"a": 8})[0]["allocatable"] == "9"
    assert gpu_allocatable_problems([_node("a", "8", "8")], {"a": None})  # no count: never equal
    assert gpu_allocatable_problems([_node("a", "x", "8")], {"a": 8})
    assert gpu_allocatable_problems([_node("a", "2", "2")], {"a": 2}, "amd.com/gpu")


def test_status_patch_only_what_differs() -> None:
    status = {"capacity": {"nvidia.com/gpu": "2", "cpu": "4"}, "allocatable": {"cpu": "4"}}
    assert status_patch(status, {"nvidia.com/gpu": 2}) == {"allocatable": {"nvidia.com/gpu": "2"}}
    assert status_patch({}, {"nvidia.com/gpu": 0}) == {
        "capacity": {"nvidia.com/gpu": "0"},
        "allocatable": {"nvidia.com/gpu": "0"},
    }
    done = {"capacity": {"nvidia.com/gpu": "2"}, "allocatable": {"nvidia.com/gpu": "2"}}
    assert status_patch(done, {"nvidia.com/gpu": 2}) == {}


@pytest.mark.parametrize(
    "resources",
    [{"gpu": 1}, {"kubernetes.io/gpu": 1}, {"nvidia.com/gpu": -1}, {"nvidia.com/gpu": True}],
)
def test_bad_resources_are_refused(resources: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        check_resources(resources)


def test_counts_become_ints() -> None:
    assert check_resources({"nvidia.com/gpu": "8"}) == {"nvidia.com/gpu": 8}
