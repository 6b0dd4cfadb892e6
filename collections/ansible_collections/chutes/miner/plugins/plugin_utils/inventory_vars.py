# Copyright: chutes.miner developers
# MIT License
"""Every variable an operator can set in a chutes.miner inventory, with its schema.

One entry per variable: its ``Spec`` (type, range, format), whether it is cluster-wide (the
same value on every host) and where it is documented. ``playbooks/validate.yml`` checks
every one of them on the controller before any host is contacted; tests/inventory proves
that every option of every role's ``meta/argument_specs.yml`` has an entry here with the same
type, and that every role default passes its own schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.chutes.miner.plugins.module_utils.ss58 import ss58_valid
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_schema import (
    AbsPath,
    Bool,
    Either,
    Float,
    Int,
    IPv4,
    ListOf,
    MapOf,
    Network,
    Raw,
    Record,
    Spec,
    Str,
    Url,
    is_host,
    is_ip,
    is_registry,
)

# Defaults of the cluster address plan, shown in messages when a value is not set.
WIREGUARD_NETWORK = "192.168.0.0/20"
POD_CIDR = "10.1.0.0/16"  # microk8s (Calico) default
SERVICE_CIDR = "10.152.183.0/24"  # microk8s default
GPU_COUNT_MAX = 10  # GraVal accepts 1-10 GPUs per node (nvidia.com/gpu.count)
LANGS = ("en", "zh")

_CLUSTER_DOC = "inventories/example/group_vars/all/cluster.yml"
_EXAMPLE_DOC = "inventories/example/inventory.yml"


@dataclass(frozen=True)
class Var:
    name: str
    spec: Spec
    cluster: bool = False  # the same value on every host (group_vars/all)
    doc: str = ""  # where the operator reads about it
    default: Any = None  # cluster-wide values: what an unset host uses (None: no default)

    @property
    def where(self) -> str:
        return self.doc if "/" in self.doc else f"roles/{self.doc}/README.md"


def _ss58(en: str, zh: str) -> Str:
    return Str(en, zh, test=ss58_valid)


_HOTKEY = _ss58(
    "an SS58 address (base58, prefix 42, valid checksum), e.g. "
    "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ",
    "SS58 地址（base58、前缀 42、校验和正确），例如 "
    "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ",
)
_SSH_KEY = Str(
    "an SSH public key line (ssh-ed25519/ssh-rsa/ecdsa-sha2-nistp*/sk-... followed by base64)",
    "SSH 公钥行（ssh-ed25519/ssh-rsa/ecdsa-sha2-nistp*/sk-... 后跟 base64）",
    pattern=(
        r"\s*(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com"
        r"|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]{16,}={0,3}( [^\n]*)?\s*"
    ),
)
_PORT = Int(1, 65535)
_BOOL = Bool()
_NAME = Str(
    "a name of letters, digits, '_' and '-'",
    "由字母、数字、'_' 和 '-' 组成的名称",
    pattern=r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
)
_PACKAGE = Str(
    "a Debian package name (optionally =version), e.g. jq",
    "Debian 软件包名（可带 =版本），例如 jq",
    pattern=r"[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?(=[A-Za-z0-9.+~:\-]+)?",
)
_HOST = Str("a host name or an IP address", "主机名或 IP 地址", test=is_host)
_IP = Str("an IP address", "IP 地址", test=is_ip)
_NODEPORT = Int(30000, 32767)
_PORT_PROTO = Str(
    "port/tcp or port/udp with a port from 1 to 65535, e.g. 30500/tcp",
    "端口/tcp 或 端口/udp，端口为 1 到 65535，例如 30500/tcp",
    pattern=r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
    r"/(tcp|udp)",
)
_VALIDATOR = Record(
    {
        "hotkey": _HOTKEY,
        "api": Url(("https", "http"), "https://api.chutes.ai"),
        "registry": Str(
            "a registry host name, optionally with :port and an http:// or https:// scheme "
            "(none means HTTPS), no path, e.g. registry.chutes.ai",
            "镜像仓库主机名（可带 :端口，可带 http:// 或 https://，不带协议即 HTTPS；不带路径），"
            "例如 registry.chutes.ai",
            test=is_registry,
        ),
        "socket": Url(("wss", "ws"), "wss://ws.chutes.ai"),
    },
    required=("hotkey", "api", "registry", "socket"),
    text=(
        "a mapping with hotkey, api, registry and socket",
        "含 hotkey、api、registry、socket 的字典",
    ),
)
_SYSCTL_KEY = Str(
    "a sysctl key, e.g. net.core.somaxconn",
    "sysctl 键名，例如 net.core.somaxconn",
    pattern=r"[a-z0-9_][a-z0-9_.\-/*]*",
)
_SYSCTL_VALUE = Either(
    Int(-(2**62), 2**62),
    Str("a number or a string", "数字或字符串", pattern=r"[^\n]{0,1024}"),
)


def _lang() -> Spec:
    one = Str(choices=LANGS)
    return Either(one, ListOf(one, min_len=1, max_len=2), ansible_type="raw")


def _table(gpus: tuple[str, ...]) -> dict[str, Var]:
    gpu_model = Str(choices=(*gpus, "auto"))
    entries = [
        # Cluster-wide values (group_vars/all).
        Var(
            "wireguard_network",
            Network(8, 30, WIREGUARD_NETWORK),
            True,
            "wireguard",
            WIREGUARD_NETWORK,
        ),
        Var("chutes_pod_cidr", Network(8, 28, POD_CIDR), True, _CLUSTER_DOC, POD_CIDR),
        Var("chutes_service_cidr", Network(12, 28, SERVICE_CIDR), True, _CLUSTER_DOC, SERVICE_CIDR),
        Var("k8s_binaries_pod_cidr", Network(8, 28, POD_CIDR), True, "k8s_binaries"),
        Var("k8s_binaries_service_cidr", Network(12, 28, SERVICE_CIDR), True, "k8s_binaries"),
        Var(
            "chutes_kubernetes",
            Str(choices=("microk8s", "binaries")),
            True,
            "playbooks/kubernetes.yml",
            "microk8s",
        ),
        Var("chutes_cluster_private", _BOOL, True, _CLUSTER_DOC, False),
        Var("chutes_deploy_components", _BOOL, True, "playbooks/deploy.yml", True),
        Var("chutes_registry_port", _NODEPORT, True, _CLUSTER_DOC, 30500),
        Var("miner_api_node_port", _NODEPORT, True, _CLUSTER_DOC, 32000),
        Var("chutes_validators", ListOf(_VALIDATOR, min_len=1), True, _CLUSTER_DOC),
        Var("chutes_upstream_compat", _BOOL, True, "preflight", True),
        Var("chutes_lang", _lang(), True, _CLUSTER_DOC, ["en", "zh"]),
        Var("wireguard_topology", Str(choices=("hub", "mesh")), True, "wireguard", "hub"),
        Var("wireguard_hub_group", _NAME, True, "wireguard", "chutes_primary"),
        Var("wireguard_workers_group", _NAME, True, "wireguard", "chutes_workers"),
        # Per host (inventory.yml, host_vars or group_vars).
        Var("ansible_host", _HOST, doc=_EXAMPLE_DOC),
        Var("ansible_port", _PORT, doc=_EXAMPLE_DOC),
        Var("chutes_external_ip", IPv4(), doc=_EXAMPLE_DOC),
        Var("chutes_gpu_model", gpu_model, doc=_EXAMPLE_DOC),
        Var("chutes_gpu_count", Int(1, GPU_COUNT_MAX), doc=_EXAMPLE_DOC),
        Var("chutes_default_validator", _HOTKEY, doc=_CLUSTER_DOC),
        Var("miner_hotkey_path", AbsPath(ansible_type="path"), doc=_CLUSTER_DOC),
        Var(
            "nvidia_cuda_version",
            Str("a CUDA version like 12-6", "CUDA 版本，例如 12-6", pattern=r"[0-9]{2}-[0-9]"),
            doc=_CLUSTER_DOC,
        ),
        Var(
            "nvidia_driver_branch",
            Either(
                Int(400, 999),
                Str("a driver branch like 580", "驱动分支，例如 580", pattern=r"[4-9][0-9]{2}"),
                ansible_type="str",
            ),
            doc=_CLUSTER_DOC,
        ),
        Var("nvidia_infiniband", _BOOL, doc=_CLUSTER_DOC),
        # chutes.miner.wireguard
        Var("wireguard_address", IPv4("192.168.0.2"), doc="wireguard"),
        Var(
            "wireguard_endpoint",
            Str(
                "an IP address or DNS name other nodes dial, or empty (behind NAT)",
                "其他节点可拨入的 IP 地址或域名，或留空（位于 NAT 之后）",
                test=is_host,
                allow_empty=True,
            ),
            doc="wireguard",
        ),
        Var(
            "wireguard_interface",
            Str(
                "an interface name of 1-15 letters, digits or _=+.-, e.g. wg0",
                "1-15 个字母、数字或 _=+.- 组成的接口名，例如 wg0",
                pattern=r"[a-zA-Z0-9_=+.\-]{1,15}",
            ),
            doc="wireguard",
        ),
        Var("wireguard_port", _PORT, doc="wireguard"),
        Var("wireguard_mtu", Int(1280, 8920), doc="wireguard"),
        Var("wireguard_persistent_keepalive", Int(0, 65535), doc="wireguard"),
        Var("wireguard_key_dir", AbsPath(), doc="wireguard"),
        Var("wireguard_userspace", _BOOL, doc="wireguard"),
        Var("wireguard_rotate_key", _BOOL, doc="wireguard"),
        Var("wireguard_verify", _BOOL, doc="wireguard"),
        Var("wireguard_verify_handshake_max_age", Int(1, 86400), doc="wireguard"),
        # chutes.miner.base
        Var(
            "base_admin_user",
            Str(
                "a login name (lowercase letters, digits, '_' and '-', at most 32, not root)",
                "登录名（小写字母、数字、'_'、'-'，最多 32 个字符，不能是 root）",
                pattern=r"(?!root$)[a-z_][a-z0-9_-]{0,31}",
            ),
            doc="base",
        ),
        Var("base_admin_ssh_keys", ListOf(_SSH_KEY), doc="base"),  # non-empty: rule_required
        Var("base_admin_sudo_nopasswd", _BOOL, doc="base"),
        Var(
            "base_hostname",
            Str(
                "a host name (lowercase letters, digits, '-' and '.', at most 64 characters)",
                "主机名（小写字母、数字、'-' 和 '.'，最多 64 个字符）",
                pattern=r"[a-z0-9.\-]{1,64}",
            ),
            doc="base",
        ),
        Var("base_cloud_init_preserve_hostname", _BOOL, doc="base"),
        Var("base_packages", ListOf(_PACKAGE), doc="base"),
        Var("base_extra_packages", ListOf(_PACKAGE), doc="base"),
        Var("base_remove_packages", ListOf(_PACKAGE), doc="base"),
        Var("base_nofile_soft", Int(1024, 1048576), doc="base"),
        Var("base_nofile_hard", Int(1024, 1048576), doc="base"),
        Var("base_sysctl_overrides", MapOf(_SYSCTL_KEY, _SYSCTL_VALUE), doc="base"),
        Var("base_sysctl_apply_global", _BOOL, doc="base"),
        Var("base_ipv6_enabled", _BOOL, doc="base"),
        Var("base_unattended_upgrades", Str(choices=("disabled", "security")), doc="base"),
        Var("base_time_sync", Str(choices=("chrony", "timesyncd")), doc="base"),
        Var("base_ntp_servers", ListOf(_HOST), doc="base"),
        Var(
            "base_chrony_daemon_options",
            Str(
                "chronyd options on one line",
                "单行 chronyd 参数",
                pattern=r"[^\n\"'$`\\]*",
                allow_empty=True,
            ),
            doc="base",
        ),
        Var("base_dns_manage", _BOOL, doc="base"),
        Var("base_dns_servers", ListOf(_IP), doc="base"),
        Var("base_snap_data_dir", AbsPath(allow_empty=True, ansible_type="str"), doc="base"),
        Var("base_reboot_allowed", _BOOL, doc="base"),
        Var("base_reboot_timeout", Int(60, 86400), doc="base"),
        # chutes.miner.mirrors (mirrors_overrides and mirrors_custom_profile are checked in
        # depth by the mirrors role's own plan builder, run on the controller as well).
        Var(
            "mirrors_profile",
            Str(
                choices=(
                    "none",
                    "auto",
                    "tuna",
                    "ustc",
                    "aliyun",
                    "huawei",
                    "tencent",
                    "custom",
                    "airgap",
                )
            ),
            doc="mirrors",
        ),
        Var("mirrors_on_failure", Str(choices=("fail", "warn", "upstream")), doc="mirrors"),
        Var("mirrors_reprobe", _BOOL, doc="mirrors"),
        Var("mirrors_probe_timeout", Int(1, 300), doc="mirrors"),
        Var("mirrors_state_dir", AbsPath(), doc="mirrors"),
        Var("mirrors_overrides", MapOf(_NAME, Raw("a mapping", "字典")), doc="mirrors"),
        Var("mirrors_custom_profile", MapOf(_NAME, Raw("a list", "列表")), doc="mirrors"),
        Var("mirrors_require_digests", _BOOL, doc="mirrors"),
        # chutes.miner.preflight
        Var(
            "preflight_supported_os",
            MapOf(_NAME, ListOf(Str(pattern=r"[0-9][0-9.]*"))),
            doc="preflight",
        ),
        Var("preflight_gpu_host", _BOOL, doc="preflight"),
        Var(
            "preflight_gpu_model",
            Either(gpu_model, Str(allow_empty=True, max_len=0), ansible_type="str"),
            doc="preflight",
        ),
        Var("preflight_gpu_count", Int(0, GPU_COUNT_MAX), doc="preflight"),
        Var("preflight_storage_path", AbsPath(), doc="preflight"),
        Var("preflight_storage_min_free_gb", Int(0, 1_000_000), doc="preflight"),
        Var("preflight_ports", ListOf(_PORT_PROTO), doc="preflight"),
        Var("preflight_port_owners_allowed", ListOf(_NAME), doc="preflight"),
        Var("preflight_forwarding_required", _BOOL, doc="preflight"),
        Var("preflight_time_sync_required", _BOOL, doc="preflight"),
        Var("preflight_clock_max_skew_s", Float(0.0, 3600.0), doc="preflight"),
    ]
    return {var.name: var for var in entries}


ROLES = Path(__file__).resolve().parents[2] / "roles"


def _derived(option: Mapping[str, Any]) -> Spec:
    """A schema from an argument_specs option (type, elements, choices) for inputs the table
    does not refine: every role input is type-checked, new ones included."""
    kind = str(option.get("type", "raw"))
    choices = tuple(str(c) for c in option.get("choices") or ())
    if kind == "bool":
        return Bool()
    if kind == "int":
        return Int(-(2**63), 2**63 - 1)
    if kind == "float":
        return Float(-1e18, 1e18)
    if kind in ("str", "path"):
        if choices:
            return Str(choices=choices, ansible_type=kind)
        text = Str(allow_empty=True, ansible_type=kind)
        number = Either(Int(-(2**63), 2**63 - 1), Float(-1e18, 1e18))
        return Either(text, number, ansible_type=kind)  # Ansible turns numbers into strings
    if kind == "list":
        elements = option.get("elements")
        item = _derived({"type": elements}) if elements else Raw("anything", "任意值")
        return ListOf(item)
    if kind == "dict":
        return MapOf(Str(allow_empty=True), Raw("anything", "任意值"), "a mapping", "字典")
    return Raw("anything", "任意值")


def role_options(roles: Path = ROLES) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every option of every role's main entry point: name -> (role, option)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for spec_file in sorted(roles.glob("*/meta/argument_specs.yml")):
        try:
            data = yaml.load(spec_file.read_text(), Loader=loader)  # noqa: S506 - a safe loader
            options = data["argument_specs"]["main"].get("options") or {}
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
            continue
        role = spec_file.parent.parent.name
        for name, option in options.items():
            if isinstance(option, dict):
                out.setdefault(str(name), (role, option))
    return out


@lru_cache(maxsize=1)
def role_names(roles: Path = ROLES) -> frozenset[str]:
    """Every variable a role defines or takes: defaults and the options of every entry point."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    names: set[str] = set()
    for path in sorted(roles.glob("*/defaults/main.yml")) + sorted(
        roles.glob("*/meta/argument_specs.yml")
    ):
        try:
            data = yaml.load(path.read_text(), Loader=loader)  # noqa: S506 - a safe loader
        except (OSError, yaml.YAMLError):
            continue
        if path.name == "main.yml" and isinstance(data, dict):
            names.update(str(k) for k in data)
        elif isinstance(data, dict) and isinstance(data.get("argument_specs"), dict):
            for entry in data["argument_specs"].values():
                if isinstance(entry, dict) and isinstance(entry.get("options"), dict):
                    names.update(str(k) for k in entry["options"])
    return frozenset(names)


@lru_cache(maxsize=8)
def _cached(gpus: tuple[str, ...]) -> dict[str, Var]:
    table = _table(gpus)
    for name, (role, option) in role_options().items():
        if name not in table:
            table[name] = Var(name, _derived(option), doc=role)
    return table


def variables(gpus: Mapping[str, Any] | None = None) -> dict[str, Var]:
    """The variable table (with every role input); ``gpus`` sets the accepted GPU models."""
    names = tuple(sorted(str(name) for name in (gpus or {}))) or ("h200",)
    return _cached(names)


# Settings whose role default is a template of other values; not inputs of their own.
DERIVED = frozenset({"preflight_gpu_host", "preflight_gpu_model", "preflight_gpu_count"})

# Names an upstream (rayonlabs/chutes-miner) inventory uses that mean nothing here.
UPSTREAM_IGNORED = frozenset(
    {"ubuntu_major", "ubuntu_minor", "skip_cuda", "amd_sev", "cc_min_compute_capability"}
)

NODE_NAME = re.compile(
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)
HOSTNAME_MAX = 64  # HOST_NAME_MAX on Linux
