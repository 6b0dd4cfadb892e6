"""chutes.miner.gpu_resources through playbooks/nvidia.yml against a real API server
(tests/k8s/controlplane.py): objects applied and accepted, a rerun and a dry run change
nothing, the gate passes only when every GPU node reports its inventory count and otherwise
names each node that does not (English and Chinese), bad input changes nothing, and the
lab-only stand-in writes the counts into node status (the DaemonSets only dry-run)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.components.conftest import recap
from tests.gpu_resources.conftest import (
    GPUS,
    Play,
    node_gpus,
    set_gpus,
    write_inventory,
)
from tests.k8s.controlplane import ControlPlane


def _get(cp: ControlPlane, *args: str) -> dict[str, Any]:
    return json.loads(cp.kubectl("get", *args, "-o", "json").stdout)


def _exists(cp: ControlPlane, *args: str) -> bool:
    return cp.kubectl("get", *args, check=False).returncode == 0


def _versions(cp: ControlPlane) -> dict[str, str]:
    items = _get(cp, "runtimeclass,daemonset,serviceaccount", "-n", "kube-system")["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


@pytest.fixture(scope="module")
def runs(play: Play) -> dict[str, Any]:
    for node, count in GPUS.items():
        set_gpus(play.cp, node, count)
    rc, first = play.run()
    assert rc == 0, first[-4000:]
    versions = _versions(play.cp)
    rc, second = play.run()
    assert rc == 0, second[-4000:]
    rc, check = play.run("--check")
    assert rc == 0, check[-4000:]
    return {"first": first, "second": second, "check": check, "versions": versions}


def test_rerun_and_dry_run_change_nothing(runs: dict[str, Any], play: Play) -> None:
    assert recap(runs["first"])["changed"] > 0
    for name in ("second", "check"):
        counts = recap(runs[name])
        assert counts["changed"] == 0 and counts["failed"] == 0, runs[name][-3000:]
    assert _versions(play.cp) == runs["versions"]


def test_gpu_nodes_carry_their_verified_count(runs: dict[str, Any], play: Play) -> None:
    for node, count in GPUS.items():
        labels = _get(play.cp, "node", node)["metadata"]["labels"]
        assert labels["nvidia.com/gpu.count"] == str(count)
        assert labels["nvidia.com/gpu.present"] == "true"
        assert labels["chutes/gpu-node"] == "true"  # other labels untouched


def test_runtime_class_has_the_nvidia_handler(runs: dict[str, Any], play: Play) -> None:
    rc = _get(play.cp, "runtimeclass", "nvidia-container-runtime")
    assert rc["handler"] == "nvidia-container-runtime"
    assert rc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "chutes.miner"


def test_daemonsets_are_accepted_and_select_gpu_nodes(runs: dict[str, Any], play: Play) -> None:
    for name in ("nvidia-device-plugin", "gpu-feature-discovery"):
        ds = _get(play.cp, "daemonset", name, "-n", "kube-system")
        pod = ds["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"chutes/gpu-node": "true"}
        assert pod["runtimeClassName"] == "nvidia-container-runtime"
        assert pod["serviceAccountName"] == name and pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        pinned = r"[\w.-]+/nvidia/k8s-device-plugin:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}"
        assert re.fullmatch(pinned, container["image"])
        sa = _get(play.cp, "serviceaccount", name, "-n", "kube-system")
        assert sa["automountServiceAccountToken"] is False
    plugin = _get(play.cp, "daemonset", "nvidia-device-plugin", "-n", "kube-system")
    (volume,) = plugin["spec"]["template"]["spec"]["volumes"]
    assert volume["hostPath"]["path"] == "/var/lib/kubelet/device-plugins"  # binaries


def test_digest_and_another_runtime_class_name(runs: dict[str, Any], play: Play) -> None:
    """Validated by the API server with a server-side dry run (--check): nothing stored."""
    digest = "sha256:" + "a" * 64
    rc, out = play.run(
        "--check",
        "--diff",
        gpu_resources_device_plugin_image_digest=digest,
        chutes_nvidia_runtime_class="nvidia-test",
    )
    assert rc == 0, out[-3000:]
    assert recap(out)["changed"] > 0
    assert not _exists(play.cp, "runtimeclass", "nvidia-test")
    assert _versions(play.cp) == runs["versions"]


def test_gate_names_each_node_that_differs(runs: dict[str, Any], play: Play) -> None:
    set_gpus(play.cp, "gpu-1", 3)
    try:
        rc, out = play.run(gpu_resources_gate_timeout=0)
    finally:
        set_gpus(play.cp, "gpu-1", GPUS["gpu-1"])
    assert rc != 0 and recap(out)["failed"] == 1, out[-3000:]
    assert "gpu-1: expected 4 nvidia.com/gpu, reports allocatable 3 (capacity 3)" in out
    assert "gpu-1：应有 4 个 nvidia.com/gpu，实际可分配 3（容量 3）" in out
    assert "1 GPU node(s) do not report their GPUs" in out and "1 个 GPU 节点在" in out
    assert "- gpu-0:" not in out and "gpu-0：" not in out


def test_gate_fails_for_a_node_without_gpus_or_missing(
    runs: dict[str, Any], play: Play, tmp_path: Path
) -> None:
    set_gpus(play.cp, "gpu-0", None)
    inventory = write_inventory(tmp_path / "inventory.yml", {**GPUS, "gpu-9": 1})
    try:
        rc, out = Play(inventory, play.cp).run(gpu_resources_gate_timeout=5)
    finally:
        set_gpus(play.cp, "gpu-0", GPUS["gpu-0"])
    assert rc != 0, out[-3000:]
    assert "gpu-0: expected 2 nvidia.com/gpu, reports allocatable none (capacity none)" in out
    assert "gpu-0：应有 2 个 nvidia.com/gpu，实际可分配 无（容量 无）" in out
    assert "gpu-9: expected 1 nvidia.com/gpu, but there is no node of that name" in out
    assert "gpu-9：应有 1 个 nvidia.com/gpu，但集群中没有该节点" in out
    assert "2 GPU node(s)" in out and "- gpu-1:" not in out


def test_bad_input_is_refused_and_changes_nothing(
    runs: dict[str, Any], play: Play, tmp_path: Path
) -> None:
    inventory = write_inventory(tmp_path / "inventory.yml", {"gpu-0": 2, "gpu-1": 11})
    rc, out = Play(inventory, play.cp).run(
        gpu_resources_runtime_handler="Nvidia_Runtime",
        gpu_resources_device_plugin_image="nvcr.io/nvidia/k8s-device-plugin:latest",
        chutes_nvidia_runtime_class="refused-class",
    )
    assert rc != 0, out[-3000:]
    assert "3 problem(s), nothing was changed /" in out and "发现 3 个问题，未做任何更改" in out
    assert "gpu_resources_runtime_handler Nvidia_Runtime is not a containerd runtime name" in out
    assert "gpu_resources_device_plugin_image" in out and "不能是 latest" in out
    assert (
        "gpu-1 (chutes_gpu): chutes_gpu_count must be the number of GPUs, 1 to 10 (got 11)" in out
    )
    assert "gpu-1（chutes_gpu）：chutes_gpu_count 必须是 GPU 数量" in out
    assert not _exists(play.cp, "runtimeclass", "refused-class")
    assert _versions(play.cp) == runs["versions"]


def test_stand_in_writes_node_status_and_only_dry_runs_daemonsets(
    lab_cluster: ControlPlane, tmp_path: Path
) -> None:
    play = Play(write_inventory(tmp_path / "inventory.yml", GPUS), lab_cluster)
    for node in GPUS:
        set_gpus(lab_cluster, node, None)
    # no GPUs, no stand-in: the gate alone (its tag) fails
    rc, out = play.run("--tags", "gpu_resources_gate", gpu_resources_gate_timeout=0)
    assert rc != 0 and "reports allocatable none" in out, out[-3000:]
    assert not _exists(lab_cluster, "runtimeclass", "nvidia-container-runtime")

    rc, first = play.run(gpu_resources_stand_in=True, gpu_resources_gate_timeout=0)
    assert rc == 0, first[-4000:]
    assert recap(first)["changed"] > 0
    for node, count in GPUS.items():
        assert node_gpus(lab_cluster, node) == (str(count), str(count))
    assert _exists(lab_cluster, "runtimeclass", "nvidia-container-runtime")
    # the DaemonSets were only checked by the API server
    assert not _exists(lab_cluster, "daemonset", "nvidia-device-plugin", "-n", "kube-system")
    assert not _exists(lab_cluster, "daemonset", "gpu-feature-discovery", "-n", "kube-system")

    rc, second = play.run(gpu_resources_stand_in=True, gpu_resources_gate_timeout=0)
    assert rc == 0 and recap(second)["changed"] == 0, second[-3000:]


def test_stand_in_status_survives_node_updates(lab_cluster: ControlPlane, tmp_path: Path) -> None:
    """What the stand-in relies on, against the real API server: status written through the
    status subresource survives later applies of the node (labels, as the Kubernetes roles do),
    and a patch of the node object itself cannot change status."""
    play = Play(write_inventory(tmp_path / "inventory.yml", GPUS), lab_cluster)
    rc, out = play.run(gpu_resources_stand_in=True, gpu_resources_gate_timeout=0)
    assert rc == 0, out[-3000:]
    lab_cluster.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "gpu-0", "labels": {"chutes/gpu-node": "true", "x": "y"}},
            }
        ),
        field_manager="chutes.miner.k8s_binaries",
    )
    patch = {"status": {"capacity": {"nvidia.com/gpu": "9"}}}
    lab_cluster.kubectl("patch", "node", "gpu-0", "--type=merge", "-p", json.dumps(patch))
    assert node_gpus(lab_cluster, "gpu-0") == ("2", "2")


def test_gate_says_when_the_api_cannot_be_read(play: Play, tmp_path: Path) -> None:
    rc, out = play.run(
        "--tags",
        "gpu_resources_gate",
        chutes_kubeconfig=str(tmp_path / "missing.conf"),
        gpu_resources_gate_timeout=0,
    )
    assert rc != 0, out[-3000:]
    assert "Cannot read the nodes from the Kubernetes API" in out
    assert "无法从 Kubernetes API 读取节点" in out
    assert "expected" not in out  # not mistaken for nodes without GPUs


def test_render_only_writes_every_manifest_for_microk8s(play: Play, tmp_path: Path) -> None:
    """miner_render_only: the manifests are written (the DaemonSets too), nothing is applied and
    no gate runs; with microk8s the device plugin mounts the snap's kubelet directory."""
    root = tmp_path / "render"
    rc, out = play.run(
        miner_render_only=True, miner_render_dir=str(root), chutes_kubernetes="microk8s"
    )
    assert rc == 0, out[-3000:]
    files = sorted(p.name for p in (root / "05-gpu_resources").glob("*.yaml"))
    assert files == [
        "daemonset-gpu-feature-discovery.yaml",
        "daemonset-nvidia-device-plugin.yaml",
        "runtimeclass.yaml",
        "serviceaccount-gpu-feature-discovery.yaml",
        "serviceaccount-nvidia-device-plugin.yaml",
    ]
    text = (root / "05-gpu_resources" / "daemonset-nvidia-device-plugin.yaml").read_text()
    assert "managed-by: chutes.miner.gpu_resources" in text
    assert "path: /var/snap/microk8s/common/var/lib/kubelet/device-plugins" in text
    assert re.search(r"gate \| Read the nodes until [^\n]*\nskipping: \[cpu-0\]", out), out[-3000:]


def test_a_changed_handler_replaces_the_runtime_class(runs: dict[str, Any], play: Play) -> None:
    """The handler of a RuntimeClass is immutable: the role deletes and recreates the object
    (a dry run says so and changes nothing), and a rerun is quiet again. Last in this module:
    it changes the objects' versions."""
    rc, out = play.run("--check", gpu_resources_runtime_handler="runc")
    assert rc == 0 and recap(out)["changed"] > 0, out[-3000:]
    assert _get(play.cp, "runtimeclass", "nvidia-container-runtime")["handler"] == (
        "nvidia-container-runtime"
    )
    for handler in ("runc", "nvidia-container-runtime"):
        rc, out = play.run(gpu_resources_runtime_handler=handler)
        assert rc == 0, out[-3000:]
        assert _get(play.cp, "runtimeclass", "nvidia-container-runtime")["handler"] == handler
        rc, out = play.run(gpu_resources_runtime_handler=handler)
        assert rc == 0 and recap(out)["changed"] == 0, out[-3000:]
