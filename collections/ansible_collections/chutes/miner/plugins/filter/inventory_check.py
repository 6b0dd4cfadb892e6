"""Filter ``chutes.miner.inventory_problems``: every inventory mistake, found at once.

Called on the controller by ``chutes.miner.preflight`` (tasks_from: inventory) before any
host is contacted. It reads the inventory through ``hostvars`` (templated lazily, one
variable at a time), so a broken variable becomes a reported problem instead of a crash.
Each problem carries the host, a stable code and the message in English and Chinese,
including how to fix it. The rules are in ``shared/spec/provisioning.md`` §0-§2.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.chutes.miner.plugins.test.ss58 import ss58_valid

DOCUMENTATION = r"""
name: inventory_problems
author: chutes.miner developers
version_added: 0.1.0
short_description: Validate a chutes.miner inventory and list every problem
description:
  - Returns C(problems) (host, code, en, zh), C(warnings), the effective group members
    (C(primary), C(gpu), C(workers)) and C(mapped) (per host, upstream variables copied to
    their new names).
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  groups:
    description: C(groups).
    type: dict
    required: true
  gpus:
    description: Supported GPU models, model name to a dict with C(vram_mib).
    type: dict
    required: true
  upstream_names:
    description: Upstream variable name to our name.
    type: dict
    default: {}
  nodeport_range:
    description: First and last NodePort.
    type: list
    default: [30000, 32767]
  upstream_compat:
    description: Honour upstream flags and names.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: inventory | Find every inventory problem
  ansible.builtin.set_fact:
    __preflight_inventory: >-
      {{ hostvars | chutes.miner.inventory_problems(groups, gpus=__preflight_gpus) }}
"""

RETURN = r"""
_value:
  description: Dict with problems, warnings, primary, gpu, workers, mapped.
  type: dict
"""

_UNSET = object()
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NODE_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SSH_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com"
    r"|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( .*)?$"
)
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
_GPU_COUNT_MAX = 10  # GraVal accepts 1-10 GPUs per node (nvidia.com/gpu.count)
_AUTO = "auto"

# code: (English, Chinese); fields are filled with str.format.
MESSAGES: dict[str, tuple[str, str]] = {
    "unresolvable": (
        "variable {var} cannot be templated ({error}); fix its value in the inventory.",
        "变量 {var} 无法解析（{error}）；请在 inventory 中修正它的值。",
    ),
    "no_primary": (
        "no primary host: put exactly one CPU host into group chutes_primary "
        "(or set is_primary: true on it).",
        "没有主节点：请把且只把一台 CPU 主机放入 chutes_primary 组（或在该主机上设置 is_primary: "
        "true）。",
    ),
    "many_primaries": (
        "{count} primary hosts ({hosts}): exactly one host may be in chutes_primary "
        "or carry is_primary: true; make the others workers.",
        "有 {count} 台主节点（{hosts}）：chutes_primary 组中（或 is_primary: true）只能有一台主机；"
        "请把其余主机改为工作节点。",
    ),
    "primary_is_gpu": (
        "the primary must be a CPU node, but it is also a GPU host; remove it from chutes_gpu "
        "(or set gpu_enabled: false).",
        "主节点必须是 CPU 节点，但它同时是 GPU 主机；请把它移出 chutes_gpu 组（或设置 gpu_enabled: "
        "false）。",
    ),
    "primary_is_worker": (
        "the primary is also in chutes_workers; remove it from that group.",
        "主节点同时属于 chutes_workers 组；请把它从该组移除。",
    ),
    "flag_conflict": (
        "{flag}: {value} disagrees with membership of group {group}; "
        "remove the upstream flag or make it match.",
        "{flag}: {value} 与 {group} 组成员关系矛盾；请删除该上游标志或使其一致。",
    ),
    "not_bool": (
        "{var} must be true or false, got {value!r}.",
        "{var} 必须是 true 或 false，当前为 {value!r}。",
    ),
    "bad_hostname": (
        "{name!r} is not a valid Kubernetes node name (lowercase letters, digits, '-' and '.', "
        "each label 1-63 characters starting and ending with a letter or digit); "
        "rename the host in the inventory.",
        "{name!r} 不是合法的 Kubernetes 节点名（只能使用小写字母、数字、'-' 和 '.'，每段 1-63 "
        "个字符，"
        "首尾必须是字母或数字）；请在 inventory 中重命名该主机。",
    ),
    "var_conflict": (
        "upstream {old}={old_value!r} and {new}={new_value!r} disagree; "
        "remove {old} or make both equal.",
        "上游变量 {old}={old_value!r} 与 {new}={new_value!r} 不一致；请删除 {old} 或使两者相同。",
    ),
    "missing_external_ip": (
        "chutes_external_ip is not set; set it to the host's static public IPv4 address.",
        "未设置 chutes_external_ip；请设置为该主机的静态公网 IPv4 地址。",
    ),
    "bad_external_ip": (
        "chutes_external_ip={value!r} is not an IPv4 address; use the host's static public IPv4.",
        "chutes_external_ip={value!r} 不是 IPv4 地址；请填写该主机的静态公网 IPv4 地址。",
    ),
    "private_external_ip": (
        "chutes_external_ip={value} is not a public address; validators must reach it. "
        "Use the public IPv4, or set chutes_cluster_private: true for a private test cluster.",
        "chutes_external_ip={value} 不是公网地址，验证者无法访问；请使用公网 IPv4，"
        "或在私有测试集群中设置 chutes_cluster_private: true。",
    ),
    "duplicate_external_ip": (
        "chutes_external_ip {value} is used by several hosts ({hosts}); "
        "every node needs its own public IPv4 with 1:1 ports.",
        "chutes_external_ip {value} 被多台主机使用（{hosts}）；每个节点需要独立的公网 IPv4 "
        "且端口一一对应。",
    ),
    "missing_wireguard_address": (
        "wireguard_address is not set; give the host a unique address inside "
        "wireguard_network ({network}).",
        "未设置 wireguard_address；请为该主机分配 wireguard_network（{network}）内唯一的地址。",
    ),
    "bad_wireguard_address": (
        "wireguard_address={value!r} is not a plain IPv4 address (no prefix length); "
        "e.g. 192.168.0.2.",
        "wireguard_address={value!r} 不是纯 IPv4 地址（不带前缀长度），例如 192.168.0.2。",
    ),
    "wireguard_outside": (
        "wireguard_address={value} is outside wireguard_network {network}; "
        "pick a host address inside it.",
        "wireguard_address={value} 不在 wireguard_network {network} 内；请选择该网段内的主机地址。",
    ),
    "wireguard_reserved": (
        "wireguard_address={value} is the network or broadcast address of {network}; "
        "pick a host address.",
        "wireguard_address={value} 是 {network} 的网络地址或广播地址；请选择一个主机地址。",
    ),
    "duplicate_wireguard_address": (
        "wireguard_address {value} is used by several hosts ({hosts}); each host needs its own.",
        "wireguard_address {value} 被多台主机使用（{hosts}）；每台主机需要唯一的地址。",
    ),
    "bad_wireguard_network": (
        "wireguard_network={value!r} is not an IPv4 network in CIDR form, e.g. 192.168.0.0/20.",
        "wireguard_network={value!r} 不是 CIDR 形式的 IPv4 网段，例如 192.168.0.0/20。",
    ),
    "inconsistent": (
        "{var} differs between hosts ({values}); it is cluster-wide: set it once in "
        "group_vars/all.",
        "{var} 在不同主机上取值不同（{values}）；这是集群级变量，请只在 group_vars/all "
        "中设置一次。",
    ),
    "bad_port": (
        "{var}={value!r} is not a port inside the NodePort range {low}-{high}; pick one inside it.",
        "{var}={value!r} 不在 NodePort 范围 {low}-{high} 内；请选择该范围内的端口。",
    ),
    "port_clash": (
        "chutes_registry_port and miner_api_node_port are both {value}; they must differ.",
        "chutes_registry_port 与 miner_api_node_port 都是 {value}；两者必须不同。",
    ),
    "bad_validators": (
        "chutes_validators must be a non-empty list of {{hotkey, api, registry, socket}}; got "
        "{value!r}.",
        "chutes_validators 必须是非空列表，元素为 {{hotkey, api, registry, socket}}；当前为 "
        "{value!r}。",
    ),
    "bad_hotkey": (
        "validator hotkey {value!r} is not a valid SS58 address (base58, prefix 42, checksum); "
        "copy it again from the validator's published hotkey.",
        "验证者 hotkey {value!r} 不是合法的 SS58 地址（base58、前缀 42、校验和）；"
        "请重新复制验证者公布的 hotkey。",
    ),
    "duplicate_hotkey": (
        "validator hotkey {value} is listed more than once in chutes_validators.",
        "验证者 hotkey {value} 在 chutes_validators 中出现了多次。",
    ),
    "validator_field": (
        "validator {hotkey}: {field} is missing or empty.",
        "验证者 {hotkey}：缺少 {field} 或其为空。",
    ),
    "no_ssh_keys": (
        "base_admin_ssh_keys is empty; add at least one SSH public key for {user}.",
        "base_admin_ssh_keys 为空；请为 {user} 添加至少一个 SSH 公钥。",
    ),
    "bad_ssh_key": (
        "base_admin_ssh_keys entry {value!r} is not an SSH public key "
        "(ssh-ed25519/ssh-rsa/ecdsa-... followed by base64).",
        "base_admin_ssh_keys 中的 {value!r} 不是 SSH 公钥（应为 ssh-ed25519/ssh-rsa/ecdsa-... 加 "
        "base64）。",
    ),
    "bad_admin_user": (
        "base_admin_user={value!r} is not a valid login name (not root; lowercase, digits, '_', "
        "'-').",
        "base_admin_user={value!r} 不是合法的登录名（不能是 root；只能用小写字母、数字、'_'、'-'）"
        "。",
    ),
    "missing_gpu_model": (
        "GPU host without chutes_gpu_model; set one of {models} (or 'auto' to read it with "
        "nvidia-smi).",
        "GPU 主机未设置 chutes_gpu_model；请设置为 {models} 之一（或设为 'auto' 由 nvidia-smi "
        "检测）。",
    ),
    "unsupported_gpu_model": (
        "chutes_gpu_model={value!r} is not a supported GPU model; use one of {models}.",
        "chutes_gpu_model={value!r} 不是受支持的 GPU 型号；请使用 {models} 之一。",
    ),
    "bad_gpu_count": (
        "chutes_gpu_count={value!r} must be a whole number from 1 to {max}.",
        "chutes_gpu_count={value!r} 必须是 1 到 {max} 之间的整数。",
    ),
}

_UPSTREAM_MAPPED_WARNING = (
    "{host}: upstream variable {old} copied to {new}; rename it in the inventory."
)


def _problem(host: str, code: str, **fields: Any) -> dict[str, str]:
    en, zh = MESSAGES[code]
    return {"host": host, "code": code, "en": en.format(**fields), "zh": zh.format(**fields)}


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _plain(value: Any) -> Any:
    """Strip Ansible's tagged types so values compare and print like plain YAML."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [_plain(v) for v in value]
    return value


class _HostView:
    """One host's variables, resolved one at a time; failures become problems."""

    def __init__(self, name: str, hostvars: Mapping[str, Any], problems: list[dict[str, str]]):
        self.name = name
        self._vars = hostvars[name]
        self._problems = problems
        self._cache: dict[str, Any] = {}
        self.mapped: dict[str, Any] = {}

    def get(self, var: str) -> Any:
        if var not in self._cache:
            try:
                value = self._vars.get(var, _UNSET) if var in self._vars else _UNSET
                self._cache[var] = _UNSET if value is _UNSET else _plain(value)
            except Exception as exc:  # noqa: BLE001 - any templating error is a user mistake
                self._problems.append(
                    _problem(self.name, "unresolvable", var=var, error=str(exc).splitlines()[0])
                )
                self._cache[var] = _UNSET
        return self._cache[var]

    def effective(self, var: str) -> Any:
        """The variable under its new name, or the upstream value copied to it."""
        return self.mapped[var] if var in self.mapped else self.get(var)


def _cluster_value(
    views: list[_HostView], var: str, default: Any, problems: list[dict[str, str]]
) -> Any:
    """A cluster-wide variable: must be the same on every host."""
    seen: dict[str, tuple[Any, list[str]]] = {}
    for view in views:
        value = view.effective(var)
        value = default if value is _UNSET else value
        seen.setdefault(repr(value), (value, []))[1].append(view.name)
    if len(seen) > 1:
        values = "; ".join(f"{', '.join(hosts)}: {value!r}" for value, hosts in seen.values())
        problems.append(_problem("all", "inconsistent", var=var, values=values))
    return next(iter(seen.values()))[0] if seen else default


def _collapse(problems: list[dict[str, str]], hosts: list[str]) -> list[dict[str, str]]:
    """Report a problem every host shares once, as host 'all'."""
    by_text: dict[tuple[str, str], list[dict[str, str]]] = {}
    for problem in problems:
        by_text.setdefault((problem["code"], problem["en"]), []).append(problem)
    out: list[dict[str, str]] = []
    for (_, _), group in by_text.items():
        names = {p["host"] for p in group}
        if len(hosts) > 1 and names == set(hosts):
            out.append({**group[0], "host": "all"})
        else:
            out.extend(group)
    return out


def inventory_problems(
    hostvars: Mapping[str, Any],
    groups: Mapping[str, list[str]],
    gpus: Mapping[str, Any],
    upstream_names: Mapping[str, str] | None = None,
    nodeport_range: list[int] | None = None,
    upstream_compat: bool = True,
) -> dict[str, Any]:
    problems: list[dict[str, str]] = []
    warnings: list[str] = []
    low, high = nodeport_range or [30000, 32767]
    upstream_names = upstream_names or {}
    models = ", ".join(sorted(gpus))

    in_primary = set(groups.get("chutes_primary", []))
    in_gpu = set(groups.get("chutes_gpu", []))
    in_workers = set(groups.get("chutes_workers", []))
    candidates = in_primary | in_gpu | in_workers
    flagged = set()
    if upstream_compat:
        for host in groups.get("all", []):
            host_vars = hostvars[host]
            if "is_primary" in host_vars or "gpu_enabled" in host_vars:
                flagged.add(host)
    names = sorted(candidates | flagged)
    views = [_HostView(h, hostvars, problems) for h in names]

    primary: set[str] = set(in_primary)
    gpu: set[str] = set(in_gpu)
    host_problems: list[dict[str, str]] = []

    for view in views:
        host = view.name
        if upstream_compat:
            for flag, group, members in (
                ("is_primary", "chutes_primary", primary),
                ("gpu_enabled", "chutes_gpu", gpu),
            ):
                value = view.get(flag)
                if value is _UNSET:
                    continue
                if not _is_bool(value):
                    host_problems.append(_problem(host, "not_bool", var=flag, value=value))
                    continue
                listed = host in (in_primary if group == "chutes_primary" else in_gpu)
                if value:
                    members.add(host)
                elif listed:
                    host_problems.append(
                        _problem(host, "flag_conflict", flag=flag, value="false", group=group)
                    )
            for old, new in upstream_names.items():
                old_value, new_value = view.get(old), view.get(new)
                if old_value is _UNSET:
                    continue
                if new_value is _UNSET:
                    view.mapped[new] = old_value
                    warnings.append(_UPSTREAM_MAPPED_WARNING.format(host=host, old=old, new=new))
                elif old_value != new_value:
                    host_problems.append(
                        _problem(
                            host,
                            "var_conflict",
                            old=old,
                            new=new,
                            old_value=old_value,
                            new_value=new_value,
                        )
                    )

        if not _NODE_NAME.fullmatch(host) or len(host) > 253:
            host_problems.append(_problem(host, "bad_hostname", name=host))

    workers = set(names) - primary
    if not primary:
        problems.append(_problem("all", "no_primary"))
    elif len(primary) > 1:
        problems.append(
            _problem("all", "many_primaries", count=len(primary), hosts=", ".join(sorted(primary)))
        )
    for host in sorted(primary):
        if host in gpu:
            host_problems.append(_problem(host, "primary_is_gpu"))
        if host in in_workers:
            host_problems.append(_problem(host, "primary_is_worker"))

    # Cluster-wide values.
    network_value = _cluster_value(views, "wireguard_network", "192.168.0.0/20", problems)
    network: ipaddress.IPv4Network | None = None
    try:
        network = ipaddress.IPv4Network(str(network_value), strict=True)
    except ValueError:
        problems.append(_problem("all", "bad_wireguard_network", value=network_value))
    private_ok = _cluster_value(views, "chutes_cluster_private", False, problems)
    if not _is_bool(private_ok):
        problems.append(_problem("all", "not_bool", var="chutes_cluster_private", value=private_ok))
        private_ok = False

    ports: dict[str, int] = {}
    for port_var, default in (("chutes_registry_port", 30500), ("miner_api_node_port", 32000)):
        value = _cluster_value(views, port_var, default, problems)
        port = _as_int(value)
        if port is None or not low <= port <= high:
            problems.append(
                _problem("all", "bad_port", var=port_var, value=value, low=low, high=high)
            )
        else:
            ports[port_var] = port
    if len(ports) == 2 and len(set(ports.values())) == 1:
        problems.append(_problem("all", "port_clash", value=ports["chutes_registry_port"]))

    validators = _cluster_value(views, "chutes_validators", _UNSET, problems)
    if validators is not _UNSET:
        if not isinstance(validators, list) or not validators:
            problems.append(_problem("all", "bad_validators", value=validators))
        else:
            seen_keys: set[str] = set()
            for entry in validators:
                if not isinstance(entry, Mapping):
                    problems.append(_problem("all", "bad_validators", value=entry))
                    continue
                hotkey = entry.get("hotkey")
                if not ss58_valid(hotkey):
                    problems.append(_problem("all", "bad_hotkey", value=hotkey))
                elif hotkey in seen_keys:
                    problems.append(_problem("all", "duplicate_hotkey", value=hotkey))
                seen_keys.add(str(hotkey))
                for field in ("api", "registry", "socket"):
                    if not entry.get(field):
                        problems.append(
                            _problem("all", "validator_field", hotkey=hotkey, field=field)
                        )
    for view in views:
        default_validator = view.effective("chutes_default_validator")
        if default_validator is not _UNSET and not ss58_valid(default_validator):
            host_problems.append(_problem(view.name, "bad_hotkey", value=default_validator))

    # Per-host values.
    external: dict[str, list[str]] = {}
    tunnel: dict[str, list[str]] = {}
    for view in views:
        host, var = view.name, view.effective

        ext = var("chutes_external_ip")
        if ext is _UNSET or ext in ("", None):
            host_problems.append(_problem(host, "missing_external_ip"))
        else:
            try:
                address = ipaddress.IPv4Address(str(ext))
            except ValueError:
                host_problems.append(_problem(host, "bad_external_ip", value=ext))
            else:
                external.setdefault(str(address), []).append(host)
                public = address.is_global and address not in _SHARED_ADDRESS_SPACE
                if not public and not private_ok:
                    host_problems.append(_problem(host, "private_external_ip", value=address))

        wg = var("wireguard_address")
        if wg is _UNSET or wg in ("", None):
            host_problems.append(_problem(host, "missing_wireguard_address", network=network_value))
        else:
            try:
                wg_address = ipaddress.IPv4Address(str(wg))
            except ValueError:
                host_problems.append(_problem(host, "bad_wireguard_address", value=wg))
            else:
                tunnel.setdefault(str(wg_address), []).append(host)
                if network is not None:
                    if wg_address not in network:
                        host_problems.append(
                            _problem(host, "wireguard_outside", value=wg_address, network=network)
                        )
                    elif wg_address in (network.network_address, network.broadcast_address):
                        host_problems.append(
                            _problem(host, "wireguard_reserved", value=wg_address, network=network)
                        )

        user = var("base_admin_user")
        if user is not _UNSET and (
            not isinstance(user, str) or user == "root" or not _USER_NAME.fullmatch(user)
        ):
            host_problems.append(_problem(host, "bad_admin_user", value=user))
        keys = var("base_admin_ssh_keys")
        if keys is _UNSET or not keys:
            host_problems.append(
                _problem(host, "no_ssh_keys", user=user if user is not _UNSET else "the admin user")
            )
        else:
            for key in keys if isinstance(keys, list) else [keys]:
                if not isinstance(key, str) or not _SSH_KEY.fullmatch(key.strip()):
                    host_problems.append(_problem(host, "bad_ssh_key", value=str(key)[:40]))

        if host in gpu:
            model = var("chutes_gpu_model")
            if model is _UNSET or model in ("", None):
                host_problems.append(_problem(host, "missing_gpu_model", models=models))
            elif model != _AUTO and model not in gpus:
                host_problems.append(
                    _problem(host, "unsupported_gpu_model", value=model, models=models)
                )
            count = var("chutes_gpu_count")
            if model != _AUTO or count is not _UNSET:
                number = _as_int(count)
                if number is None or not 1 <= number <= _GPU_COUNT_MAX:
                    host_problems.append(
                        _problem(
                            host,
                            "bad_gpu_count",
                            value=None if count is _UNSET else count,
                            max=_GPU_COUNT_MAX,
                        )
                    )

    for value, hosts in sorted(external.items()):
        if len(hosts) > 1:
            problems.append(
                _problem(
                    ", ".join(hosts), "duplicate_external_ip", value=value, hosts=", ".join(hosts)
                )
            )
    for value, hosts in sorted(tunnel.items()):
        if len(hosts) > 1:
            problems.append(
                _problem(
                    ", ".join(hosts),
                    "duplicate_wireguard_address",
                    value=value,
                    hosts=", ".join(hosts),
                )
            )

    return {
        "problems": problems + _collapse(host_problems, names),
        "warnings": warnings,
        "hosts": names,
        "primary": sorted(primary),
        "gpu": sorted(gpu),
        "workers": sorted(workers),
        "mapped": {view.name: view.mapped for view in views if view.mapped},
    }


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"inventory_problems": inventory_problems}
