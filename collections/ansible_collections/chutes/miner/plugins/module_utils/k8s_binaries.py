# Copyright: chutes.miner developers
# MIT License
"""Pure logic of the ``chutes.miner.k8s_binaries`` role: input checks and network plan.

No Ansible imports: the filter plugin and the unit tests use these functions directly.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
# An image reference pinned by tag or digest: [registry[:port]/]path(:tag|@digest|:tag@digest).
_TAG = r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"@sha256:[0-9a-f]{64}"
_IMAGE = re.compile(
    r"^([a-z0-9][a-z0-9.-]*(:[0-9]+)?/)?[a-z0-9]+([._/-][a-z0-9]+)*"
    + f"({_TAG}|{_DIGEST}|{_TAG}{_DIGEST})$"
)
_QUANTITY_KEYS = ("k8s_binaries_drain_timeout", "k8s_binaries_ready_timeout")
# Ports the role's own services listen on; the API server must not take one of them.
RESERVED_PORTS = {2379: "etcd", 2380: "etcd", 10250: "kubelet", 10256: "kube-proxy",
                  10257: "kube-controller-manager", 10259: "kube-scheduler"}  # fmt: skip
ARTIFACTS = (
    "kubelet",
    "kube-proxy",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "containerd",
    "runc",
    "cni-plugins",
)


def _problem(host: str, en: str, zh: str) -> dict[str, str]:
    return {"host": host, "en": en, "zh": zh}


def _network(value: Any) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(str(value), strict=True)
    except ValueError:
        return None


def _address(value: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        return None


def nth_ip(cidr: str, index: int) -> str:
    """The ``index``-th address of ``cidr`` (negative counts from the end)."""
    return str(ipaddress.IPv4Network(str(cidr), strict=False)[int(index)])


def vtep_mac(node_ip: str) -> str:
    """A stable, locally administered MAC for a node's VXLAN device: 02:c5 + its IPv4."""
    octets = ipaddress.IPv4Address(str(node_ip)).packed
    return ":".join(f"{b:02x}" for b in (0x02, 0xC5, *octets))


def _check_cidrs(settings: dict[str, Any], problems: list[dict[str, str]]) -> dict[str, Any]:
    nets: dict[str, ipaddress.IPv4Network] = {}
    for var, low, high, purpose, purpose_zh in (
        ("k8s_binaries_pod_cidr", 8, 28, "pod network", "Pod 网络"),
        ("k8s_binaries_service_cidr", 12, 28, "service network", "Service 网络"),
        ("k8s_binaries_node_network", 8, 30, "node (WireGuard) network", "节点（WireGuard）网络"),
    ):
        value = settings.get(var)
        net = _network(value)
        if net is None or not low <= net.prefixlen <= high:
            problems.append(
                _problem(
                    "all",
                    f"{var}={value!r} is not an IPv4 network address with a prefix of {low}-{high}"
                    f" ({purpose}), e.g. 10.1.0.0/16.",
                    f"{var}={value!r} 不是前缀长度为 {low}-{high} 的 IPv4 网段（{purpose_zh}），"
                    "例如 10.1.0.0/16。",
                )
            )
            continue
        nets[var] = net
    names = list(nets)
    for i, var in enumerate(names):
        for other in names[i + 1 :]:
            if nets[var].overlaps(nets[other]):
                problems.append(
                    _problem(
                        "all",
                        f"{var} {nets[var]} overlaps {other} {nets[other]}; pick networks that do"
                        " not overlap.",
                        f"{var} {nets[var]} 与 {other} {nets[other]} 重叠；请选择互不重叠的网段。",
                    )
                )
    return nets


def problems(settings: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """Every problem with the role's inputs, at once, in English and Chinese.

    ``settings``: the cluster-wide inputs (the primary's values). ``nodes``: per node
    ``node_ip``, ``external_ip`` and ``addresses`` (its IPv4 addresses, the role's own pod
    network devices left out); ``check_mode`` true skips the node-address-on-host check.
    """
    out: list[dict[str, str]] = []
    nets = _check_cidrs(settings, out)
    pod = nets.get("k8s_binaries_pod_cidr")
    mask = settings.get("k8s_binaries_node_cidr_mask")
    if isinstance(mask, bool) or not isinstance(mask, int) or not 16 <= mask <= 28:
        out.append(
            _problem(
                "all",
                f"k8s_binaries_node_cidr_mask={mask!r} must be a whole number from 16 to 28.",
                f"k8s_binaries_node_cidr_mask={mask!r} 必须是 16 到 28 之间的整数。",
            )
        )
    elif pod is not None:
        if mask <= pod.prefixlen:
            out.append(
                _problem(
                    "all",
                    f"k8s_binaries_node_cidr_mask /{mask} must be longer than the pod network"
                    f" {pod} (each node gets a /{mask} out of it).",
                    f"k8s_binaries_node_cidr_mask /{mask} 必须比 Pod 网络 {pod} 的前缀更长"
                    f"（每个节点从中分得一个 /{mask}）。",
                )
            )
        elif 2 ** (mask - pod.prefixlen) < len(nodes):
            out.append(
                _problem(
                    "all",
                    f"the pod network {pod} holds {2 ** (mask - pod.prefixlen)} node subnets of"
                    f" /{mask}, fewer than the {len(nodes)} nodes; use a larger pod network or a"
                    " longer k8s_binaries_node_cidr_mask.",
                    f"Pod 网络 {pod} 只能划分 {2 ** (mask - pod.prefixlen)} 个 /{mask} 节点子网，"
                    f"少于 {len(nodes)} 个节点；请扩大 Pod 网络或增大"
                    " k8s_binaries_node_cidr_mask。",
                )
            )
    cluster_nets = {k: v for k, v in nets.items() if k != "k8s_binaries_node_network"}
    for name, node in sorted(nodes.items()):
        ip = _address(node.get("node_ip"))
        if ip is None:
            out.append(
                _problem(
                    name,
                    f"k8s_binaries_node_ip={node.get('node_ip')!r} is not an IPv4 address (default:"
                    " the node's wireguard_address).",
                    f"k8s_binaries_node_ip={node.get('node_ip')!r} 不是 IPv4 地址（默认取该节点的 "
                    "wireguard_address）。",
                )
            )
        elif (
            node.get("addresses") is not None
            and str(ip) not in node["addresses"]
            and not node.get("check_mode")  # WireGuard is not up yet in a check run on new hosts
        ):
            has = ", ".join(node["addresses"])
            out.append(
                _problem(
                    name,
                    f"k8s_binaries_node_ip {ip} is not an address of this host (has:"
                    f" {has or 'none'}); run the WireGuard step first.",
                    f"k8s_binaries_node_ip {ip} 不是本机地址（本机有：{has or '无'}）；"
                    "请先执行 WireGuard 步骤。",
                )
            )
        seen = [node.get("external_ip"), *(node.get("addresses") or [])]
        for value in dict.fromkeys(str(a) for a in seen if a):
            addr = _address(value)
            if addr is None:
                continue
            for var, net in cluster_nets.items():
                if addr in net:
                    out.append(
                        _problem(
                            name,
                            f"{var} {net} contains this host's address {addr}; pod and service"
                            " networks must not overlap the hosts' own addresses.",
                            f"{var} {net} 包含本机地址 {addr}；"
                            "Pod 与 Service 网段不能与主机自身地址重叠。",
                        )
                    )
    _check_scalars(settings, out)
    return out


def _check_scalars(settings: dict[str, Any], out: list[dict[str, str]]) -> None:
    for var in (
        "k8s_binaries_kubernetes_version",
        "k8s_binaries_etcd_version",
        "k8s_binaries_containerd_version",
        "k8s_binaries_runc_version",
        "k8s_binaries_cni_plugins_version",
    ):
        value = settings.get(var)
        if not isinstance(value, str) or not _VERSION.match(value):
            out.append(
                _problem(
                    "all",
                    f"{var}={value!r} is not a release version like 1.34.4 (no leading v; quote it"
                    " in YAML).",
                    f"{var}={value!r} 不是形如 1.34.4 的版本号（不带 v；在 YAML 中请加引号）。",
                )
            )
    checksums = settings.get("k8s_binaries_checksums")
    if not isinstance(checksums, dict):
        out.append(
            _problem(
                "all",
                "k8s_binaries_checksums must be a mapping of artifact name to sha256.",
                "k8s_binaries_checksums 必须是「制品名: sha256」的字典。",
            )
        )
    else:
        for name, digest in sorted(checksums.items()):
            if name not in ARTIFACTS or not isinstance(digest, str) or not _HEX.match(digest):
                out.append(
                    _problem(
                        "all",
                        f"k8s_binaries_checksums: {name!r}: {digest!r} must be an artifact name"
                        f" ({', '.join(ARTIFACTS)}) with a 64-digit hex sha256.",
                        f"k8s_binaries_checksums：{name!r}: {digest!r} 必须是制品名"
                        f"（{', '.join(ARTIFACTS)}）加 64 位十六进制 sha256。",
                    )
                )
    port = settings.get("k8s_binaries_apiserver_port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        out.append(
            _problem(
                "all",
                f"k8s_binaries_apiserver_port={port!r} is not a port (1-65535).",
                f"k8s_binaries_apiserver_port={port!r} 不是有效端口（1-65535）。",
            )
        )
    elif port in RESERVED_PORTS:
        out.append(
            _problem(
                "all",
                f"k8s_binaries_apiserver_port {port} is the port of {RESERVED_PORTS[port]}.",
                f"k8s_binaries_apiserver_port {port} 已被 {RESERVED_PORTS[port]} 使用。",
            )
        )
    if settings.get("k8s_binaries_cgroup_driver") not in ("systemd", "cgroupfs"):
        out.append(
            _problem(
                "all",
                f"k8s_binaries_cgroup_driver={settings.get('k8s_binaries_cgroup_driver')!r} must be"
                " systemd or cgroupfs.",
                "k8s_binaries_cgroup_driver 必须是 systemd 或 cgroupfs。",
            )
        )
    for var in (
        "k8s_binaries_kubelet_fail_swap_on",
        "k8s_binaries_load_kernel_modules",
        "k8s_binaries_coredns",
    ):
        if not isinstance(settings.get(var), bool):
            out.append(
                _problem(
                    "all",
                    f"{var} must be true or false, got {settings.get(var)!r}.",
                    f"{var} 必须是 true 或 false，当前为 {settings.get(var)!r}。",
                )
            )
    for var in (
        *_QUANTITY_KEYS,
        "k8s_binaries_cert_valid_days",
        "k8s_binaries_pod_mtu",
        "k8s_binaries_coredns_replicas",
    ):
        value = settings.get(var)
        low = 576 if var == "k8s_binaries_pod_mtu" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            out.append(
                _problem(
                    "all",
                    f"{var}={value!r} must be a whole number of at least {low}.",
                    f"{var}={value!r} 必须是不小于 {low} 的整数。",
                )
            )
    image = settings.get("k8s_binaries_coredns_image")
    if settings.get("k8s_binaries_coredns") is True and not (
        isinstance(image, str) and _IMAGE.match(image)
    ):
        out.append(
            _problem(
                "all",
                f"k8s_binaries_coredns_image={image!r} is not an image reference pinned by tag or"
                " digest (e.g. <registry>/coredns/coredns:v1.13.2).",
                f"k8s_binaries_coredns_image={image!r} 不是带标签或摘要的镜像引用"
                "（例如 <registry>/coredns/coredns:v1.13.2）。",
            )
        )
    conntrack = settings.get("k8s_binaries_kube_proxy_conntrack_max_per_core")
    if isinstance(conntrack, bool) or not isinstance(conntrack, int) or conntrack < 0:
        out.append(
            _problem(
                "all",
                f"k8s_binaries_kube_proxy_conntrack_max_per_core={conntrack!r} must be 0 (leave the"
                " kernel's value) or more.",
                "k8s_binaries_kube_proxy_conntrack_max_per_core 必须是 0（保留内核当前值）"
                "或正整数。",
            )
        )


def _membership_problems(
    primary: list[str], nodes: list[str], in_play: list[str], remove: Any
) -> list[dict[str, str]]:
    """The groups, the play and k8s_binaries_remove_nodes against each other."""
    out: list[dict[str, str]] = []
    if len(primary) != 1:
        out.append(
            _problem(
                "all",
                f"the primary group must hold exactly one host (has {len(primary)}).",
                f"主节点组必须恰好包含一台主机（当前 {len(primary)} 台）。",
            )
        )
    missing = sorted(set(nodes) - set(in_play))
    if missing:
        out.append(
            _problem(
                "all",
                f"every node must be in the play (missing: {', '.join(missing)}): pod routes and"
                " labels are computed from all of them. Do not --limit this play.",
                f"所有节点都必须在本次运行中（缺少：{', '.join(missing)}）：Pod 路由和标签依赖全部"
                "节点。请勿对本 play 使用 --limit。",
            )
        )
    if not isinstance(remove, list) or not all(isinstance(n, str) for n in remove):
        out.append(
            _problem(
                "all",
                "k8s_binaries_remove_nodes must be a list of node names.",
                "k8s_binaries_remove_nodes 必须是节点名列表。",
            )
        )
    else:
        still = sorted(set(remove) & set(nodes))
        if still:
            out.append(
                _problem(
                    "all",
                    f"k8s_binaries_remove_nodes names {', '.join(still)}, which are still in the"
                    " inventory groups; take them out of the inventory first, then rerun.",
                    f"k8s_binaries_remove_nodes 中的 {', '.join(still)} 仍在清单组中；"
                    "请先将其移出清单，再重新运行。",
                )
            )
    return out


def plan(
    settings: dict[str, Any],
    nodes: dict[str, dict[str, Any]],
    primary: list[str],
    in_play: list[str],
) -> dict[str, Any]:
    """Problems with the inputs (all of them) and, when there are none, the derived values:
    the API server's Service address, the cluster DNS address and each node's VTEP MAC."""
    out = _membership_problems(
        list(primary), sorted(nodes), list(in_play), settings.get("k8s_binaries_remove_nodes")
    )
    out += problems(settings, nodes)
    if out:
        return {"problems": out}
    service = str(settings["k8s_binaries_service_cidr"])
    return {
        "problems": [],
        "service_ip": nth_ip(service, 1),
        "cluster_dns": str(settings.get("k8s_binaries_cluster_dns") or "") or nth_ip(service, 10),
        "vtep_mac": {name: vtep_mac(str(node["node_ip"])) for name, node in sorted(nodes.items())},
    }
