# Copyright: chutes.miner developers
# MIT License
"""Pure logic of the ``chutes.miner.microk8s`` role: input checks, the launch configuration,
hosts.toml text, snap state, the join plan and label changes.

No Ansible imports: the filter plugin and the unit tests use these functions directly.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.chutes.miner.plugins.module_utils.k8s_binaries import (
    _address as _ipv4,
)
from ansible_collections.chutes.miner.plugins.module_utils.k8s_binaries import (
    _network,
    _problem,
)

MARKER = "managed-by: chutes.miner.microk8s"
CHANNEL = re.compile(r"^1\.([0-9]{2})/(stable|candidate|beta|edge)$")
OLDEST_MINOR = 27  # the launch configuration (/etc/microk8s.yaml) exists from 1.27
INSTALL_METHODS = ("offline", "store")
# Addons the role never enables, with the reason shown to the operator.
FORBIDDEN_ADDONS = {
    "community": ("clones its repository from GitHub", "会从 GitHub 克隆仓库"),
    "nvidia": (
        "adds NVIDIA's Helm repository (NGC); the GPU operator is installed from a pinned chart",
        "会添加 NVIDIA 的 Helm 仓库（NGC）；GPU operator 改由固定版本的 chart 安装",
    ),
    "gpu": ("is the old name of the nvidia addon", "是 nvidia 插件的旧名称"),
    "dns": ("is always enabled by the role, with microk8s_dns_upstreams", "由本角色始终启用"),
    "rbac": ("is always enabled by the role", "由本角色始终启用"),
    "ingress": (
        "fetches its chart and CRDs from GitHub from 1.35 on",
        "从 1.35 起会从 GitHub 获取 chart 和 CRD",
    ),
    "cert-manager": ("adds a Helm repository outside China", "会添加境外 Helm 仓库"),
    "observability": ("adds Helm repositories outside China", "会添加境外 Helm 仓库"),
    "prometheus": ("adds Helm repositories outside China", "会添加境外 Helm 仓库"),
    "dashboard": ("is not used by the miner", "矿工不使用"),
}
DEFAULT_POD_CIDR = "10.1.0.0/16"  # Calico's pool in microk8s
_SNAP_LIST = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(\S+))?\s*$")


def channel_minor(channel: str) -> int:
    match = CHANNEL.match(str(channel))
    return int(match.group(1)) if match else 0


def base_snap(channel: str) -> str:
    """The base snap a microk8s channel is built on: core20 up to 1.33, core22 from 1.34."""
    return "core22" if channel_minor(channel) >= 34 else "core20"


def check(
    settings: dict[str, Any],
    nodes: dict[str, dict[str, Any]],
    primary: list[str],
    in_play: list[str],
) -> dict[str, Any]:
    """Every problem with the inputs at once; without problems also ``cluster_dns``.

    ``nodes``: node name -> ``node_ip``, ``external_ip`` and ``addresses`` (its IPv4 addresses).
    """
    s = settings
    problems: list[dict[str, str]] = []
    every = "all"
    if s.get("microk8s_install_method") not in INSTALL_METHODS:
        problems.append(
            _problem(
                every,
                f"microk8s_install_method={s.get('microk8s_install_method')!r} "
                "is not offline or store",
                f"microk8s_install_method={s.get('microk8s_install_method')!r} "
                "不是 offline 或 store",
            )
        )
    minor = channel_minor(str(s.get("microk8s_channel", "")))
    if minor < OLDEST_MINOR:
        problems.append(
            _problem(
                every,
                f"microk8s_channel={s.get('microk8s_channel')!r} is not a channel like 1.34/stable "
                f"from 1.{OLDEST_MINOR} on (the launch configuration needs it)",
                f"microk8s_channel={s.get('microk8s_channel')!r} 不是 1.{OLDEST_MINOR} 及以上的频道"
                "（例如 1.34/stable；启动配置需要）",
            )
        )
    if s.get("microk8s_install_method") == "offline":
        url = str(s.get("microk8s_bundle_url") or "")
        local = str(s.get("microk8s_bundle_controller_dir") or "")
        if bool(url) == bool(local):
            problems.append(
                _problem(
                    every,
                    "the offline install needs exactly one of microk8s_bundle_url (an http(s) "
                    "directory serving the bundle, by default the mirrors role's snap.bundle_url) "
                    "and microk8s_bundle_controller_dir (a directory on the controller)",
                    "离线安装需要且只能设置 microk8s_bundle_url（提供离线包的 http(s) 目录，"
                    "默认取自 mirrors 角色的 snap.bundle_url）与 "
                    "microk8s_bundle_controller_dir（控制机上的目录）之一",
                )
            )
        elif url and urlsplit(url).scheme not in ("http", "https"):
            problems.append(
                _problem(
                    every,
                    f"microk8s_bundle_url={url!r} is not an http(s) URL",
                    f"microk8s_bundle_url={url!r} 不是 http(s) 地址",
                )
            )
        elif local and not local.startswith("/"):
            problems.append(
                _problem(
                    every,
                    f"microk8s_bundle_controller_dir={local!r} is not an absolute path",
                    f"microk8s_bundle_controller_dir={local!r} 不是绝对路径",
                )
            )
    pins = s.get("microk8s_bundle_checksums") or {}
    for name, digest in sorted(dict(pins).items()):
        if not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
            problems.append(
                _problem(
                    every,
                    f"microk8s_bundle_checksums[{name}] is not a sha256 (64 lower-case hex digits)",
                    f"microk8s_bundle_checksums[{name}] 不是 sha256（64 位小写十六进制）",
                )
            )
    upstreams = [str(u) for u in s.get("microk8s_dns_upstreams") or []]
    if not upstreams:
        problems.append(
            _problem(
                every,
                "microk8s_dns_upstreams is empty, and the dns addon would then fall back to public "
                "resolvers abroad: set it, or enable the mirrors role's dns resource",
                "microk8s_dns_upstreams 为空，dns 插件将回退到境外公共 DNS："
                "请设置它，或启用 mirrors 角色的 dns 资源",
            )
        )
    for up in upstreams:
        if _ipv4(up) is None:
            problems.append(
                _problem(
                    every,
                    f"microk8s_dns_upstreams: {up!r} is not an IPv4 address",
                    f"microk8s_dns_upstreams：{up!r} 不是 IPv4 地址",
                )
            )
    for addon in [str(a) for a in s.get("microk8s_addons") or []]:
        name = addon.split(":", 1)[0]
        if "/" in name:
            problems.append(
                _problem(
                    every,
                    f"microk8s_addons: {addon!r} comes from an addon repository, which "
                    "microk8s clones from the internet; only core addons are enabled",
                    f"microk8s_addons：{addon!r} 来自插件仓库，microk8s 会从互联网克隆；"
                    "仅允许核心插件",
                )
            )
        elif name in FORBIDDEN_ADDONS:
            en, zh = FORBIDDEN_ADDONS[name]
            problems.append(
                _problem(
                    every,
                    f"microk8s_addons: {name} is not allowed: it {en}",
                    f"microk8s_addons：不允许 {name}：它{zh}",
                )
            )
    pod = _network(s.get("microk8s_pod_cidr"))
    svc = _network(s.get("microk8s_service_cidr"))
    node_net = _network(s.get("microk8s_node_network"))
    if str(s.get("microk8s_pod_cidr")) != DEFAULT_POD_CIDR:
        problems.append(
            _problem(
                every,
                f"microk8s_pod_cidr={s.get('microk8s_pod_cidr')!r}: the role keeps Calico's pool "
                f"{DEFAULT_POD_CIDR}; use chutes_kubernetes: binaries for another pod network",
                f"microk8s_pod_cidr={s.get('microk8s_pod_cidr')!r}：本角色保留 Calico 的地址池 "
                f"{DEFAULT_POD_CIDR}；如需其他 Pod 网段请使用 chutes_kubernetes: binaries",
            )
        )
    if svc is None or not 12 <= svc.prefixlen <= 28:
        problems.append(
            _problem(
                every,
                f"microk8s_service_cidr={s.get('microk8s_service_cidr')!r} is not an IPv4 network "
                "with a /12 to /28 prefix",
                f"microk8s_service_cidr={s.get('microk8s_service_cidr')!r} "
                "不是前缀为 /12 到 /28 的 IPv4 网段",
            )
        )
    if node_net is None:
        problems.append(
            _problem(
                every,
                f"microk8s_node_network={s.get('microk8s_node_network')!r} is not an IPv4 network",
                f"microk8s_node_network={s.get('microk8s_node_network')!r} 不是 IPv4 网段",
            )
        )
    named = [(n, x) for n, x in (("pod", pod), ("service", svc), ("node", node_net)) if x]
    for i, (name_a, a) in enumerate(named):
        for name_b, b in named[i + 1 :]:
            if a.overlaps(b):
                problems.append(
                    _problem(
                        every,
                        f"the {name_a} network {a} overlaps the {name_b} network {b}",
                        f"{name_a} 网段 {a} 与 {name_b} 网段 {b} 重叠",
                    )
                )
    for key in ("microk8s_token_ttl", "microk8s_drain_timeout", "microk8s_ready_timeout"):
        value = s.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 30 <= value <= 86400:
            problems.append(
                _problem(
                    every,
                    f"{key}={value!r} must be a number of seconds from 30 to 86400",
                    f"{key}={value!r} 必须是 30 到 86400 之间的秒数",
                )
            )
    if len(primary) != 1:
        problems.append(
            _problem(
                every,
                f"the primary group must hold exactly one host, it holds {len(primary)}",
                f"主节点组必须恰好包含一台主机，当前为 {len(primary)} 台",
            )
        )
    elif primary[0] not in in_play:
        problems.append(
            _problem(
                primary[0],
                "the primary is not in this play (--limit?); run the role on the whole cluster",
                "主节点不在本次运行中（--limit？）；请对整个集群运行",
            )
        )
    remove = [str(n) for n in s.get("microk8s_remove_nodes") or []]
    for name in remove:
        if name in nodes:
            problems.append(
                _problem(
                    name,
                    "is in microk8s_remove_nodes and still in the inventory groups; take it out of "
                    "the groups first",
                    "在 microk8s_remove_nodes 中但仍在清单组内；请先将其移出组",
                )
            )
        if primary and name == primary[0]:
            problems.append(_problem(name, "the primary cannot be removed", "不能移除主节点"))
    seen: dict[str, str] = {}
    for name, node in sorted(nodes.items()):
        ip = _ipv4(node.get("node_ip"))
        if ip is None:
            problems.append(
                _problem(
                    name,
                    f"microk8s_node_ip={node.get('node_ip')!r} is not an IPv4 address "
                    "(the WireGuard address by default)",
                    f"microk8s_node_ip={node.get('node_ip')!r} 不是 IPv4 地址"
                    "（默认取 WireGuard 地址）",
                )
            )
            continue
        if node_net is not None and ip not in node_net:
            problems.append(
                _problem(
                    name,
                    f"microk8s_node_ip {ip} is outside the node network {node_net}",
                    f"microk8s_node_ip {ip} 不在节点网段 {node_net} 内",
                )
            )
        if str(ip) in seen:
            problems.append(
                _problem(
                    name,
                    f"microk8s_node_ip {ip} is also {seen[str(ip)]}'s",
                    f"microk8s_node_ip {ip} 与 {seen[str(ip)]} 重复",
                )
            )
        seen[str(ip)] = name
        if node.get("addresses") is not None and str(ip) not in node.get("addresses", []):
            problems.append(
                _problem(
                    name,
                    f"microk8s_node_ip {ip} is not an address of this host (is WireGuard up?)",
                    f"microk8s_node_ip {ip} 不是此主机的地址（WireGuard 是否已启动？）",
                )
            )
        ext = node.get("external_ip")
        if ext and _ipv4(ext) is None:
            problems.append(
                _problem(
                    name,
                    f"microk8s_external_ip={ext!r} is not an IPv4 address",
                    f"microk8s_external_ip={ext!r} 不是 IPv4 地址",
                )
            )
    cluster_dns = str(svc[10]) if svc is not None and svc.num_addresses > 10 else ""
    return {"problems": problems, "cluster_dns": cluster_dns}


def hosts_toml(upstream: str, mirrors: list[str], header: str = "") -> str:
    """containerd ``hosts.toml`` text: mirrors in order, the upstream as the last resort.

    A mirror URL with a path (``https://registry.example/v2/google_containers``) is a path
    prefix mirror and gets ``override_path``.
    """
    lines = [header] if header else []
    lines.append(f'server = "{upstream}"')
    for url in mirrors:
        lines += ["", f'[host."{url}"]', '  capabilities = ["pull", "resolve"]']
        if urlsplit(url).path.strip("/"):
            lines.append("  override_path = true")
    return "\n".join(lines) + "\n"


def localregistry_names(validators: list[dict[str, Any]], port: int) -> list[str]:
    """``<hotkey, lower case>.localregistry.chutes.ai:<port>`` per validator, sorted."""
    return sorted(
        {f"{str(v['hotkey']).lower()}.localregistry.chutes.ai:{int(port)}" for v in validators}
    )


def localregistry_toml(name: str) -> str:
    return hosts_toml(f"http://{name}", [f"http://{name}"], f"# {MARKER}")


def launch_config(settings: dict[str, Any], is_primary: bool, node_name: str) -> dict[str, Any]:
    """The launch configuration (``/etc/microk8s.yaml``, schema 0.1.0) of one node.

    The file replaces microk8s' bundled default, so it repeats the kubelet's cluster DNS
    settings. Registry configurations come from ``mirrors_effective`` (each registry's mirrors,
    its upstream last) plus the validators' local registry names; addons only on the primary
    (workers join an existing cluster). No addon repositories (they are git clones).
    """
    s = settings
    node_ip = str(s["microk8s_node_ip"])
    svc = ipaddress.IPv4Network(str(s["microk8s_service_cidr"]))
    kubelet = {
        "--cluster-domain": "cluster.local",
        "--cluster-dns": str(svc[10]),
        "--node-ip": node_ip,
        "--hostname-override": node_name,
    }
    config: dict[str, Any] = {"version": "0.1.0", "extraKubeletArgs": kubelet}
    if is_primary:
        config["extraKubeAPIServerArgs"] = {
            "--advertise-address": node_ip,
            "--service-cluster-ip-range": str(svc),
        }
        sans = [node_ip, *[str(x) for x in s.get("microk8s_apiserver_extra_sans") or []]]
        config["extraSANs"] = list(dict.fromkeys(sans))
        config["addons"] = [
            {"name": "dns", "args": [",".join(str(u) for u in s["microk8s_dns_upstreams"])]},
            {"name": "rbac"},
            *[
                {"name": a.split(":", 1)[0], **({"args": [a.split(":", 1)[1]]} if ":" in a else {})}
                for a in (str(x) for x in s.get("microk8s_addons") or [])
            ],
        ]
    else:
        config["addons"] = []
    mirrors = dict(s.get("mirrors_effective") or {})
    registries: dict[str, str] = {}
    upstreams = dict(mirrors.get("registry_upstreams") or {})
    for registry, urls in sorted(dict(mirrors.get("registries") or {}).items()):
        if urls:
            upstream = str(upstreams.get(registry) or f"https://{registry}")
            registries[registry] = hosts_toml(upstream, [str(u) for u in urls])
    for name in localregistry_names(
        list(s.get("microk8s_validators") or []), int(s.get("microk8s_registry_port", 30500))
    ):
        registries[name] = localregistry_toml(name)
    if registries:
        config["containerdRegistryConfigs"] = registries
    env = {str(k): str(v) for k, v in sorted(dict(s.get("microk8s_containerd_env") or {}).items())}
    if env:
        config["extraContainerdEnv"] = env
    return config


def missing_addons(status: Any, wanted: list[str]) -> list[str]:
    """Wanted addons (``name`` or ``name:args``) that ``microk8s status --format yaml`` does not
    list as enabled, in the wanted order. ``status`` is the parsed YAML."""
    addons = (status or {}).get("addons") or [] if isinstance(status, dict) else []
    enabled = {str(a.get("name")) for a in addons if a.get("status") == "enabled"}
    return [w for w in wanted if str(w).split(":", 1)[0] not in enabled]


def snap_list(text: str) -> dict[str, dict[str, str]]:
    """``snap list`` output -> {name: {version, rev, tracking, notes}}."""
    out: dict[str, dict[str, str]] = {}
    for line in str(text or "").splitlines()[1:]:
        match = _SNAP_LIST.match(line)
        if match:
            name, version, rev, tracking, _publisher, notes = match.groups()
            out[name] = {
                "version": version,
                "rev": rev,
                "tracking": tracking,
                "notes": notes or "-",
            }
    return out


def assertion_revision(text: str) -> str:
    """The ``snap-revision`` of a snap's assertion file ('' when absent)."""
    match = re.search(r"^snap-revision:\s*([0-9]+)\s*$", str(text or ""), re.M)
    return match.group(1) if match else ""


def sha256sums(text: str) -> dict[str, str]:
    """``sha256sum`` output -> {file name: digest}."""
    out = {}
    for line in str(text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            name = parts[1].lstrip("*")
            out[name[2:] if name.startswith("./") else name] = parts[0].lower()
    return out


def bundle_files(
    channel: str, sums: dict[str, str], pins: dict[str, str], debian: bool
) -> dict[str, Any]:
    """Which bundle files to fetch, in install order, with the digest each must have."""
    base = base_snap(channel)
    order = (["snapd"] if "snapd.snap" in sums or debian else []) + [base, "microk8s"]
    files = []
    problems = []
    for snap in order:
        for ext in ("assert", "snap"):
            name = f"{snap}.{ext}"
            digest = str(pins.get(name) or sums.get(name) or "")
            if not digest:
                problems.append(
                    {
                        "en": f"the bundle has no checksum for {name} "
                        "(SHA256SUMS or microk8s_bundle_checksums)",
                        "zh": f"离线包中缺少 {name} 的校验值"
                        "（SHA256SUMS 或 microk8s_bundle_checksums）",
                    }
                )
            files.append({"name": name, "snap": snap, "sha256": digest})
    return {"snaps": order, "files": files, "problems": problems}


def install_steps(
    snaps: list[str], installed: dict[str, dict[str, str]], revisions: dict[str, str], upgrade: bool
) -> dict[str, Any]:
    """Which snaps to ``snap ack`` + ``snap install`` from the bundle, and why not.

    A snap is installed when absent; a different revision replaces an installed one only for
    the base snaps and snapd, or for microk8s with ``microk8s_snap_upgrade``.
    """
    steps = []
    problems = []
    for snap in snaps:
        want = revisions.get(snap, "")
        have = installed.get(snap, {}).get("rev", "")
        if not have:
            steps.append(snap)
        elif want and have != want:
            if snap == "microk8s" and not upgrade:
                problems.append(
                    {
                        "en": f"microk8s revision {have} is installed and the bundle holds {want}; "
                        "upgrading is explicit: rerun with microk8s_snap_upgrade: true, "
                        "one node at a time",
                        "zh": f"已安装 microk8s 修订版 {have}，离线包为 {want}；升级须显式进行："
                        "请设置 microk8s_snap_upgrade: true 后逐个节点重新运行",
                    }
                )
            elif snap != "snapd" or int(want) > int(have or 0):
                steps.append(snap)
    return {"install": steps, "problems": problems}


def join_plan(
    nodes: list[str], primary: str, members: list[str], clustered: list[str], remove: list[str]
) -> dict[str, list[str]]:
    """Who joins, who is removed, who is reported.

    ``members``: node names the primary's API lists; ``clustered``: inventory nodes whose
    microk8s already belongs to a cluster (its ``clustered.lock`` exists). A node joins only
    when it is neither; a node that is clustered but not listed is reported, never re-joined.
    """
    join = [n for n in sorted(nodes) if n != primary and n not in members and n not in clustered]
    lost = [n for n in sorted(nodes) if n != primary and n not in members and n in clustered]
    gone = [n for n in sorted(remove) if n in members]
    strays = [n for n in sorted(members) if n not in nodes and n not in remove]
    return {"join": join, "lost": lost, "remove": gone, "strays": strays}


def label_changes(
    want: dict[str, dict[str, Any]], now: dict[str, dict[str, str]]
) -> dict[str, list[str]]:
    """Per node, the ``kubectl label`` arguments that bring the owned labels in line.

    ``want``: node -> {label: value or None (remove)}; ``now``: node -> its current labels.
    Labels not in ``want`` are never touched; nodes not in ``now`` are skipped.
    """
    out: dict[str, list[str]] = {}
    for node in sorted(want):
        if node not in now:
            continue
        args = []
        for key, value in sorted(want[node].items()):
            if value is None and key in now[node]:
                args.append(f"{key}-")
            elif value is not None and now[node].get(key) != str(value):
                args.append(f"{key}={value}")
        if args:
            out[node] = args
    return out
