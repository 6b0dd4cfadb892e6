# Copyright: chutes.miner developers
# MIT License
"""Inventory validation of chutes.miner as plain Python: every problem, found at once.

``validate(hostvars, groups, ...)`` reads each host's variables through any mapping (Ansible's
lazily templated ``hostvars`` or plain dicts in tests), checks every variable against its
schema (``inventory_vars``), then runs the cross-variable rules in ``RULES``. Rules see only
values that passed their schema, so no input type can make them raise; a rule that still
fails is reported as a problem of its own, never as a traceback. Problems and notices carry
the host, the variable, a stable code and the message and fix in English and Chinese
(``inventory_messages``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_messages import (
    MESSAGES,
    NOTICES,
)
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_schema import (
    MARKER_PREFIX,
    Bool,
    Finding,
    Untemplatable,
    plain,
    show,
)
from ansible_collections.chutes.miner.plugins.plugin_utils.inventory_vars import (
    GPU_COUNT_MAX,
    HOSTNAME_MAX,
    NODE_NAME,
    POD_CIDR,
    SERVICE_CIDR,
    WIREGUARD_NETWORK,
    Var,
    role_names,
    variables,
)

PRIMARY, GPU, WORKERS = "chutes_primary", "chutes_gpu", "chutes_workers"
CHUTES_GROUPS = (PRIMARY, GPU, WORKERS)
FLAGS = {"is_primary": PRIMARY, "gpu_enabled": GPU}
ALL = "all"
# Variables that make a host outside the chutes groups look like a forgotten node.
NODE_VARS = ("chutes_gpu_model", "chutes_gpu_count", "wireguard_address", "chutes_external_ip")
EXTRA_READ = ("ansible_connection",)

_DOCUMENTATION = tuple(
    ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
# (network, English, Chinese): ranges that are never node addresses or cluster networks.
_SPECIAL = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "an unspecified address", "未指定地址（0.0.0.0/8）"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "a loopback address", "回环地址"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "a link-local address", "链路本地地址"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "a multicast address", "组播地址"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "a reserved address", "保留地址"),
)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
INVALID: Any = type("_Invalid", (), {"__repr__": lambda self: "INVALID"})()


@dataclass(frozen=True)
class Unresolved:
    """A variable whose template failed; ``error`` is the first line of the error."""

    error: str


@dataclass(frozen=True)
class Problem:
    code: str
    host: str
    var: str
    en: str
    zh: str
    fix_en: str
    fix_zh: str

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "host": self.host,
            "var": self.var,
            "en": self.en,
            "zh": self.zh,
            "fix_en": self.fix_en,
            "fix_zh": self.fix_zh,
        }


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def problem(code: str, host: str, variable: str = "", **fields: Any) -> Problem:
    """A problem (or notice) from the message catalog; ``fields`` fill its templates."""
    message = MESSAGES[code]
    values = _Fields({k: str(v) for k, v in fields.items()})
    values.setdefault("var", variable)
    values.setdefault("host", host)
    return Problem(
        code,
        host,
        variable,
        message.en.format_map(values),
        message.zh.format_map(values),
        message.fix_en.format_map(values),
        message.fix_zh.format_map(values),
    )


def _finding_problem(host: str, var: Var, label: str, finding: Finding) -> Problem:
    path = finding.path.replace(var.name, label, 1)
    return problem(
        finding.code,
        host,
        label,
        var=path,
        shown=finding.shown,
        kind_en=finding.kind_en,
        kind_zh=finding.kind_zh,
        expected_en=finding.expected_en.replace('"var"', f'"{var.name}"'),
        expected_zh=finding.expected_zh.replace('"var"', f'"{var.name}"'),
        where=var.where,
    )


def _read(host_vars: Any, name: str) -> Any:
    """One variable of one host that is set: its plain value or Unresolved (template error)."""
    try:
        return plain(host_vars[name])
    except Exception as exc:  # noqa: BLE001 - any templating error is the operator's to fix
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        first = lines[0].removeprefix(MARKER_PREFIX)
        return Unresolved(first[:200].rstrip(". "))  # the message adds its own full stop


def _hosts_text(hosts: Iterable[str], limit: int = 6) -> str:
    names = sorted(hosts)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" (+{len(names) - limit})"


@dataclass
class Context:
    """Everything the rules read; ``values`` hold only schema-checked values."""

    hosts: list[str]
    groups: dict[str, set[str]]
    table: dict[str, Var]
    gpus: Mapping[str, Any]
    nodeport_range: tuple[int, int]
    primary: set[str] = field(default_factory=set)
    gpu: set[str] = field(default_factory=set)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    mapped: dict[str, dict[str, Any]] = field(default_factory=dict)
    strays: dict[str, list[str]] = field(default_factory=dict)
    present: dict[str, set[str]] = field(default_factory=dict)
    known: frozenset[str] = frozenset()
    cluster_values: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notices: list[Problem] = field(default_factory=list)
    mirrors: Mapping[str, Any] | None = None

    def add(self, code: str, host: str, variable: str = "", **fields: Any) -> None:
        target = self.notices if code in NOTICES else self.problems
        target.append(problem(code, host, variable, **fields))

    def get(self, host: str, var: str) -> Any:
        return self.values.get(host, {}).get(var, UNSET)

    def label(self, host: str, var: str) -> str:
        return self.labels.get(host, {}).get(var, var)

    def cluster(self, var: str, default: Any) -> Any:
        """A cluster-wide value: the one valid value all hosts share, ``default`` when no host
        sets it, INVALID when it is wrong or differs (already reported)."""
        value = self.cluster_values.get(var, UNSET)
        return default if value is UNSET else value

    @property
    def workers(self) -> set[str]:
        return set(self.hosts) - self.primary


# --- reading the inventory ----------------------------------------------------------------


def _views(hostvars: Mapping[str, Any], hosts: Iterable[str]) -> dict[str, Any]:
    """Each host's variables (computing them is the slow part: once per host) and their names."""
    out: dict[str, Any] = {}
    for host in hosts:
        try:
            view = hostvars[host]
            names = set(view.keys())
        except Exception:  # noqa: BLE001 - a host whose variables cannot be listed has none
            view, names = {}, set()
        out[host] = (view, names)
    return out


def _candidates(
    views: Mapping[str, Any], groups: Mapping[str, Iterable[str]], compat: bool
) -> tuple[list[str], dict[str, set[str]]]:
    members = {g: {str(h) for h in groups.get(g) or []} for g in CHUTES_GROUPS}
    names = set().union(*members.values())
    if compat:
        for host, (_view, present) in views.items():
            if any(flag in present for flag in FLAGS):
                names.add(host)
    return sorted(names), members


def _load(
    ctx: Context, views: Mapping[str, Any], upstream_names: Mapping[str, str], compat: bool
) -> None:
    wanted = (*ctx.table, *EXTRA_READ, *(FLAGS if compat else ()))
    for host in ctx.hosts:
        view, present = views[host]
        raw = {name: _read(view, name) for name in wanted if name in present}
        labels: dict[str, str] = {}
        mapped: dict[str, Any] = {}
        for old, new in upstream_names.items() if compat else ():
            if old not in present:
                continue
            old_value = _read(view, old)
            if new not in raw:
                raw[new], labels[new], mapped[new] = old_value, old, old_value
            elif _differs(old_value, raw[new]):
                ctx.add(
                    "var_conflict",
                    host,
                    new,
                    old=old,
                    old_value=show(old_value),
                    new_value=show(raw[new]),
                )
        ctx.raw[host] = raw
        ctx.present[host] = present
        ctx.labels[host] = labels
        ctx.mapped[host] = mapped
    # Upstream names of node variables (external_ip, wireguard_ip) mark a stray host as well.
    node_vars = [
        *NODE_VARS,
        *(old for old, new in upstream_names.items() if compat and new in NODE_VARS),
    ]
    for host in sorted(ctx.groups[ALL] - set(ctx.hosts)):
        present = views[host][1] if host in views else set()
        found = [name for name in node_vars if name in present]
        if found:
            ctx.strays[host] = found


def _differs(a: Any, b: Any) -> bool:
    try:
        return bool(a != b)
    except Exception:  # noqa: BLE001
        return show(a) != show(b)


def _check_schemas(ctx: Context) -> None:
    for host in ctx.hosts:
        values: dict[str, Any] = {}
        for name, raw in ctx.raw[host].items():
            var = ctx.table.get(name)
            if var is None:
                values[name] = raw
                continue
            label = ctx.label(host, name)
            if isinstance(raw, Unresolved):
                ctx.add("unresolvable", host, label, error=raw.error)
                values[name] = INVALID
                continue
            parsed = var.spec.parse(raw, name)
            if parsed.ok:
                values[name] = parsed.value
            else:
                values[name] = INVALID
                for finding in parsed.findings:
                    ctx.problems.append(_finding_problem(host, var, label, finding))
        ctx.values[host] = values
    for var in ctx.table.values():
        if var.cluster:
            ctx.cluster_values[var.name] = _cluster_value(ctx, var)


def _cluster_value(ctx: Context, var: Var) -> Any:
    """Hosts without the variable use its default; every host must end up with one value."""
    default = UNSET
    if var.default is not None:
        default = var.spec.parse(var.default, var.name).value
    seen: dict[str, tuple[Any, list[str]]] = {}
    for host in ctx.hosts:
        value = ctx.get(host, var.name)
        if value is INVALID:
            return INVALID
        value = default if value is UNSET else value
        seen.setdefault(_key(value), (ctx.raw[host].get(var.name, UNSET), []))[1].append(host)
    if len(seen) > 1:
        texts = [(_hosts_text(hosts, 3), raw) for raw, hosts in seen.values()]
        ctx.add(
            "inconsistent",
            ALL,
            var.name,
            values="; ".join(f"{h}: {'not set' if r is UNSET else show(r)}" for h, r in texts),
            values_zh="; ".join(f"{h}：{'未设置' if r is UNSET else show(r)}" for h, r in texts),
        )
        return INVALID
    if not seen:
        return UNSET
    host = next(iter(seen.values()))[1][0]
    value = ctx.get(host, var.name)
    return UNSET if value is UNSET else value


def _flags(ctx: Context) -> None:
    ctx.primary = set(ctx.groups[PRIMARY])
    ctx.gpu = set(ctx.groups[GPU])
    for host in ctx.hosts:
        for flag, group in FLAGS.items():
            raw = ctx.raw[host].get(flag, UNSET)
            if raw is UNSET:
                continue
            if isinstance(raw, Unresolved):
                ctx.add("unresolvable", host, flag, error=raw.error)
                continue
            parsed = _FLAG_SPEC.parse(raw, flag)
            if not parsed.ok:
                for finding in parsed.findings:
                    ctx.problems.append(_finding_problem(host, _FLAG_VARS[flag], flag, finding))
                continue
            members = ctx.primary if group == PRIMARY else ctx.gpu
            if parsed.value:
                members.add(host)
            elif host in ctx.groups[group]:
                ctx.add("flag_conflict", host, flag, group=group)


_FLAG_SPEC = Bool()
_FLAG_VARS = {flag: Var(flag, _FLAG_SPEC, doc="preflight") for flag in FLAGS}


# --- rules ---------------------------------------------------------------------------------

Rule = Callable[[Context], None]


def rule_groups(ctx: Context) -> None:
    if not ctx.primary:
        ctx.add("no_primary", ALL)
    elif len(ctx.primary) > 1:
        ctx.add("many_primaries", ALL, count=len(ctx.primary), hosts=_hosts_text(ctx.primary))
    for host in sorted(ctx.primary):
        if host in ctx.gpu:
            ctx.add("primary_is_gpu", host)
        if host in ctx.groups[WORKERS]:
            ctx.add("primary_is_worker", host)
    if not ctx.gpu - ctx.primary:
        ctx.add("no_gpu_worker", ALL)
    for host, names in sorted(ctx.strays.items()):
        ctx.add("stray_host", host, names[0], vars=", ".join(names))


def _duplicates(ctx: Context, code: str, var: str, owners: Mapping[str, list[str]]) -> None:
    """One problem per value that several hosts share (``owners``: value -> hosts)."""
    for value, hosts in sorted(owners.items()):
        if len(hosts) > 1:
            names = ", ".join(hosts)
            ctx.add(code, names, var, hosts=names, shown=value)


def rule_hostnames(ctx: Context) -> None:
    owners: dict[str, list[str]] = {}
    for host in ctx.hosts:
        name, var = host, ""
        explicit = ctx.get(host, "base_hostname")
        if explicit is INVALID:
            continue
        if explicit is not UNSET:
            name, var = explicit, "base_hostname"
        owners.setdefault(name, []).append(host)
        if len(name) > HOSTNAME_MAX:
            ctx.add(
                "hostname_too_long", host, var, shown=show(name), length=len(name), max=HOSTNAME_MAX
            )
        elif not NODE_NAME.fullmatch(name):
            ctx.add("bad_node_name", host, var, shown=show(name))
    _duplicates(ctx, "duplicate_hostname", "base_hostname", {show(k): v for k, v in owners.items()})


def _classify(address: ipaddress.IPv4Address) -> tuple[str, str] | None:
    for net, en, zh in _SPECIAL:
        if address in net:
            return en, zh
    return None


def _is_placeholder(address: ipaddress.IPv4Address) -> bool:
    return any(address in net for net in _DOCUMENTATION)


def _literal_ipv4(text: Any) -> ipaddress.IPv4Address | None:
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "::1"})


def _is_loopback(address: str) -> bool:
    literal = _literal_ipv4(address)
    return literal.is_loopback if literal else address.lower().rstrip(".") in _LOOPBACK_NAMES


def rule_ansible_host(ctx: Context) -> None:
    targets: dict[tuple[str, int], list[str]] = {}
    for host in ctx.hosts:
        address = ctx.get(host, "ansible_host")
        connection = ctx.raw[host].get("ansible_connection")
        if address is UNSET:
            if connection != "local":
                ctx.add("missing_ansible_host", host, "ansible_host")
            continue
        if address is INVALID:
            continue
        port = ctx.get(host, "ansible_port")
        targets.setdefault((address.lower(), port if isinstance(port, int) else 22), []).append(
            host
        )
        if connection != "local" and _is_loopback(address) and port in (UNSET, 22):
            # 127.0.0.1 with a forwarded port is an SSH tunnel; without one it is the controller.
            ctx.add("loopback_ansible_host", host, "ansible_host", shown=show(address))
            continue
        literal = _literal_ipv4(address)
        if literal is None:
            continue
        special = _classify(literal)
        if special and not literal.is_loopback:
            ctx.add(
                "bad_ansible_host",
                host,
                "ansible_host",
                shown=show(address),
                what=special[0],
                what_zh=special[1],
            )
        elif _is_placeholder(literal):
            ctx.add(
                "placeholder_address", host, "ansible_host", var="ansible_host", shown=show(address)
            )
    shown = {(a if p == 22 else f"{a}:{p}"): hosts for (a, p), hosts in targets.items()}
    _duplicates(ctx, "duplicate_ansible_host", "ansible_host", shown)


def rule_external_ip(ctx: Context) -> None:
    private_ok = ctx.cluster("chutes_cluster_private", False) is True
    owners: dict[str, list[str]] = {}
    for host in ctx.hosts:
        address = ctx.get(host, "chutes_external_ip")
        label = ctx.label(host, "chutes_external_ip")
        if address is UNSET:
            ctx.add("missing_external_ip", host, label)
            continue
        if address is INVALID:
            continue
        owners.setdefault(str(address), []).append(host)
        special = _classify(address)
        if special:
            ctx.add(
                "special_address",
                host,
                label,
                var=label,
                shown=address,
                what=special[0],
                what_zh=special[1],
            )
        elif _is_placeholder(address):
            ctx.add("placeholder_address", host, label, var=label, shown=address)
        elif not (address.is_global and address not in _SHARED) and not private_ok:
            ctx.add("private_external_ip", host, label, shown=address)
    _duplicates(ctx, "duplicate_external_ip", "chutes_external_ip", owners)


def _network(ctx: Context, var: str, default: str) -> tuple[Any, bool]:
    value = ctx.cluster(var, UNSET)
    if value is UNSET:
        return ipaddress.IPv4Network(default), True
    return value, False


def wireguard_placement(
    host: str, label: str, address: ipaddress.IPv4Address, network: ipaddress.IPv4Network
) -> list[Problem]:
    """A valid address inside a valid network, and neither its network nor its broadcast
    address. The one WireGuard address rule: validation and the wireguard role use it."""
    if address not in network:
        return [problem("wireguard_outside", host, label, shown=address, network=network)]
    if address in (network.network_address, network.broadcast_address):
        return [problem("wireguard_reserved", host, label, shown=address, network=network)]
    return []


def wireguard_address_problems(host: str, address: Any, network: Any) -> list[Problem]:
    """Every problem of one node's wireguard_address in wireguard_network, from the raw values
    (any type; ``None``: not set), worded as inventory validation words them."""
    table = variables()
    out: list[Problem] = []
    parsed = {}
    for name, value in (("wireguard_network", network), ("wireguard_address", address)):
        if name == "wireguard_address" and value is None:
            shown_net = network if isinstance(network, str) else show(network)
            out.append(problem("missing_wireguard_address", host, name, network=shown_net))
            continue
        try:
            value = plain(value)
        except Untemplatable as exc:
            out.append(problem("unresolvable", host, name, error=str(exc)))
            continue
        parsed[name] = table[name].spec.parse(value, name)
        for finding in parsed[name].findings:
            out.append(_finding_problem(host, table[name], name, finding))
    if all(p.ok for p in parsed.values()) and len(parsed) == 2:
        out.extend(
            wireguard_placement(
                host,
                "wireguard_address",
                parsed["wireguard_address"].value,
                parsed["wireguard_network"].value,
            )
        )
    return out


def rule_wireguard_addresses(ctx: Context) -> None:
    network, _is_default = _network(ctx, "wireguard_network", WIREGUARD_NETWORK)
    owners: dict[str, list[str]] = {}
    shown_net = "?" if network is INVALID else str(network)
    for host in ctx.hosts:
        address = ctx.get(host, "wireguard_address")
        label = ctx.label(host, "wireguard_address")
        if address is UNSET:
            ctx.add("missing_wireguard_address", host, label, network=shown_net)
            continue
        if address is INVALID:
            continue
        owners.setdefault(str(address), []).append(host)
        if network is not INVALID:
            ctx.problems.extend(wireguard_placement(host, label, address, network))
    _duplicates(ctx, "duplicate_wireguard_address", "wireguard_address", owners)


_PLAN = (
    ("wireguard_network", WIREGUARD_NETWORK, "WireGuard tunnel", "WireGuard 隧道"),
    ("chutes_pod_cidr", POD_CIDR, "pod network", "Pod 网络"),
    ("chutes_service_cidr", SERVICE_CIDR, "service network", "Service 网络"),
)
# chutes.miner.k8s_binaries takes its networks from chutes_pod_cidr/chutes_service_cidr; set
# directly in the inventory, its own variables win and are the ones checked.
_ROLE_NETWORKS = {
    "chutes_pod_cidr": "k8s_binaries_pod_cidr",
    "chutes_service_cidr": "k8s_binaries_service_cidr",
}
_DEFAULT_EN, _DEFAULT_ZH = " (not set: the default)", "（未设置，使用默认值）"


def rule_address_plan(ctx: Context) -> None:
    nets = []
    for var, default, purpose, purpose_zh in _PLAN:
        network, is_default = _network(ctx, var, default)
        role_var = _ROLE_NETWORKS.get(var, "")
        if role_var and ctx.cluster(role_var, UNSET) is not UNSET:
            var, network, is_default = role_var, ctx.cluster(role_var, UNSET), False
        if network is INVALID:
            continue
        note = (_DEFAULT_EN, _DEFAULT_ZH) if is_default else ("", "")
        nets.append((var, network, note, purpose, purpose_zh))
        for special, en, zh in _SPECIAL:
            if network.overlaps(special):
                ctx.add(
                    "special_network",
                    ALL,
                    var,
                    network=network,
                    default=note[0],
                    default_zh=note[1],
                    what=f"{en}es ({special})",
                    what_zh=f"{zh}（{special}）",
                )
    for index, (var, network, note, _purpose, _purpose_zh) in enumerate(nets):
        for other, other_network, other_note, _other_purpose, _other_zh in nets[index + 1 :]:
            if network.overlaps(other_network):
                ctx.add(
                    "networks_overlap",
                    ALL,
                    var,
                    network=network,
                    default=note[0],
                    default_zh=note[1],
                    other=other,
                    other_network=other_network,
                    other_default=other_note[0],
                    other_default_zh=other_note[1],
                )
    for host in ctx.hosts:
        for addr_var in ("ansible_host", "chutes_external_ip"):
            address = ctx.get(host, addr_var)
            literal = (
                address if isinstance(address, ipaddress.IPv4Address) else _literal_ipv4(address)
            )
            if literal is None:
                continue
            for var, network, note, purpose, purpose_zh in nets:
                if literal in network:
                    ctx.add(
                        "network_contains_host",
                        host,
                        var,
                        network=network,
                        default=note[0],
                        default_zh=note[1],
                        addr_var=ctx.label(host, addr_var),
                        shown=literal,
                        purpose=purpose,
                        purpose_zh=purpose_zh,
                    )


def rule_wireguard_groups(ctx: Context) -> None:
    for var, default, need, need_zh in (
        ("wireguard_hub_group", PRIMARY, "exactly one", "恰好一台"),
        ("wireguard_workers_group", WORKERS, "at least one", "至少一台"),
    ):
        name = ctx.cluster(var, UNSET)
        if name is UNSET or name is INVALID or name == default:
            continue
        count = len(ctx.groups.get(name, set()))
        if (count != 1) if var == "wireguard_hub_group" else (count == 0):
            ctx.add(
                "group_size",
                ALL,
                var,
                shown=name,
                count=count,
                need=need,
                need_zh=need_zh,
                default=default,
            )


def rule_hub_endpoint(ctx: Context) -> None:
    if len(ctx.primary) != 1 or len(ctx.hosts) < 2:
        return
    (hub,) = ctx.primary
    endpoint = ctx.get(hub, "wireguard_endpoint")
    external = ctx.get(hub, "chutes_external_ip")
    if endpoint == "" or (endpoint is UNSET and external is UNSET):
        ctx.add("hub_without_endpoint", hub, "wireguard_endpoint")


def rule_ports(ctx: Context) -> None:
    registry = ctx.cluster("chutes_registry_port", 30500)
    api = ctx.cluster("miner_api_node_port", 32000)
    low, high = ctx.nodeport_range
    for var, value in (("chutes_registry_port", registry), ("miner_api_node_port", api)):
        if isinstance(value, int) and not low <= value <= high:
            ctx.add(
                "out_of_range",
                ALL,
                var,
                var=var,
                shown=value,
                expected_en=f"a NodePort from {low} to {high}",
                expected_zh=f"{low} 到 {high} 之间的 NodePort",
                where=ctx.table[var].where,
            )
    if isinstance(registry, int) and registry == api:
        ctx.add("port_clash", ALL, "miner_api_node_port", shown=registry)


def rule_validators(ctx: Context) -> None:
    validators = ctx.cluster("chutes_validators", UNSET)
    if not isinstance(validators, list):
        return
    seen: set[str] = set()
    for entry in validators:
        hotkey = entry["hotkey"]
        if hotkey in seen:
            ctx.add("duplicate_hotkey", ALL, "chutes_validators", shown=hotkey)
        seen.add(hotkey)


def rule_required(ctx: Context) -> None:
    """Inputs whose role default is empty but that every node needs."""
    var = ctx.table["base_admin_ssh_keys"]
    expected = ("at least one SSH public key line", "至少一行 SSH 公钥")
    for host in ctx.hosts:
        keys = ctx.get(host, var.name)
        if keys is UNSET or keys == []:
            ctx.add(
                "missing" if keys is UNSET else "empty",
                host,
                ctx.label(host, var.name),
                var=ctx.label(host, var.name),
                expected_en=expected[0],
                expected_zh=expected[1],
                where=var.where,
            )


def rule_nofile(ctx: Context) -> None:
    for host in ctx.hosts:
        soft = ctx.get(host, "base_nofile_soft")
        hard = ctx.get(host, "base_nofile_hard")
        soft = 40000 if soft is UNSET else soft
        hard = 40001 if hard is UNSET else hard
        if isinstance(soft, int) and isinstance(hard, int) and soft > hard:
            ctx.add("nofile_order", host, "base_nofile_soft", soft=soft, hard=hard)


def rule_gpus(ctx: Context) -> None:
    models = ", ".join(sorted(ctx.gpus))
    upstream_auto: list[str] = []
    for host in sorted(ctx.gpu):
        model = ctx.get(host, "chutes_gpu_model")
        count = ctx.get(host, "chutes_gpu_count")
        if model is UNSET:
            if host not in ctx.groups[GPU]:  # an upstream GPU host (gpu_enabled): detect it
                ctx.mapped.setdefault(host, {})["chutes_gpu_model"] = "auto"
                ctx.values[host]["chutes_gpu_model"] = "auto"
                upstream_auto.append(host)
                continue
            ctx.add("missing_gpu_model", host, "chutes_gpu_model", models=models)
        elif model not in (INVALID, "auto") and count is UNSET:
            ctx.add(
                "missing_gpu_count", host, "chutes_gpu_count", shown=show(model), max=GPU_COUNT_MAX
            )
    if upstream_auto:
        ctx.add(
            "upstream_gpu_auto",
            ALL,
            "chutes_gpu_model",
            count=len(upstream_auto),
            hosts=_hosts_text(upstream_auto),
        )


_MIRROR_VARS = (
    "mirrors_profile",
    "mirrors_overrides",
    "mirrors_custom_profile",
    "mirrors_on_failure",
)


def _mirror_errors(
    mirrors: Mapping[str, Any], profile: str, overrides: Any, custom: Any, on_failure: str
) -> Any:
    """The errors of the mirrors role's plan builder for these inputs (it may raise)."""
    from ansible_collections.chutes.miner.plugins.module_utils.mirrors_plan import (
        PlanRequest,
        build_plan,
    )

    plan = build_plan(
        PlanRequest(
            mirrors["catalog"],
            mirrors["profiles"],
            mirrors["upstream"],
            mirrors["defaults"],
            profile=profile,
            overrides=overrides,
            custom=custom,
            on_failure=on_failure,
        )
    )
    return [(str(e.get("en", "")), str(e.get("zh", ""))) for e in plan.get("errors", [])]


def _mirror_var(text: str, profile: str, overrides: Mapping[str, Any], custom: Any) -> str:
    """The variable an error of the plan builder is about."""
    head = text.split(":", 1)[0].split(" ", 1)[0].split(".", 1)[0]
    if head in _MIRROR_VARS:
        return head
    if profile in ("custom", "airgap") and head in custom:
        return "mirrors_custom_profile"
    return "mirrors_overrides" if head in overrides else "mirrors_profile"


def _mirror_findings(
    mirrors: Mapping[str, Any],
    profile: str,
    overrides: dict[str, Any],
    custom: dict[str, Any],
    on_failure: str,
) -> list[tuple[str, str, dict[str, str]]]:
    """(code, variable, fields) of every problem of one set of mirror inputs.

    One call of the plan builder sees everything, but it stops early on an unknown resource
    and can raise on shapes it does not expect; then each resource entry is checked on its
    own, so one broken entry neither hides nor stops the others."""
    out: list[tuple[str, str, dict[str, str]]] = []
    try:
        errors = _mirror_errors(mirrors, profile, overrides, custom, on_failure)
        complete = not any(en.startswith(_MIRROR_VARS) for en, _zh in errors)
    except Exception:  # noqa: BLE001 - narrowed down entry by entry below
        errors, complete = [], False
    seen = {en for en, _zh in errors}
    for en, zh in errors:
        out.append(
            (
                "mirrors_input",
                _mirror_var(en, profile, overrides, custom),
                {"text_en": en, "text_zh": zh},
            )
        )
    if complete:
        return out
    on_failure = on_failure if on_failure in ("fail", "warn", "upstream") else "fail"
    for var, data in (("mirrors_custom_profile", custom), ("mirrors_overrides", overrides)):
        for res, value in data.items():
            if res not in mirrors["defaults"]:  # every resource has its defaults
                continue  # reported as an unknown resource above
            one = {res: value}
            try:
                if var == "mirrors_custom_profile":
                    found = _mirror_errors(mirrors, "custom", {}, one, on_failure)
                else:
                    found = _mirror_errors(mirrors, "none", one, {}, on_failure)
            except Exception as exc:  # noqa: BLE001 - a shape the role cannot read
                error = f"{type(exc).__name__}: {exc}"[:120]
                out.append(
                    ("mirrors_unreadable", f"{var}.{res}", {"shown": show(value), "error": error})
                )
                continue
            for en, zh in found:
                if en not in seen:
                    seen.add(en)
                    out.append(("mirrors_input", var, {"text_en": en, "text_zh": zh}))
    return out


def rule_mirrors(ctx: Context) -> None:
    if not ctx.mirrors:
        return
    inputs: dict[str, tuple[list[str], tuple[Any, ...]]] = {}
    for host in ctx.hosts:
        values = [ctx.get(host, name) for name in _MIRROR_VARS]
        if any(v is INVALID for v in values):
            continue
        profile = "none" if values[0] is UNSET else str(values[0])
        overrides = {} if values[1] is UNSET else dict(values[1])
        custom = {} if values[2] is UNSET else dict(values[2])
        on_failure = "fail" if values[3] is UNSET else str(values[3])
        key = _key((profile, overrides, custom, on_failure))
        inputs.setdefault(key, ([], (profile, overrides, custom, on_failure)))[0].append(host)
    where = ctx.table["mirrors_profile"].where
    for hosts, args in inputs.values():
        for code, var, fields in _mirror_findings(ctx.mirrors, *args):
            for host in hosts:
                ctx.add(code, host, var, where=where, **fields)


def _key(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - unprintable values are never shared
        return f"id:{id(value)}"


# Prefixes of the collection's own variables: an unknown name with one of them is a typo.
PREFIXES = (
    "chutes_", "base_", "gpu_resources_", "k8s_binaries_", "microk8s_", "miner_", "mirrors_",
    "nvidia_", "preflight_", "wireguard_",
)  # fmt: skip


def _near(name: str, known: Iterable[str]) -> str:
    """The known name one edit (insert, delete, replace, swap of neighbours) away, or ''.
    Two edits would already turn helper names such as chutes_lab into chutes_lang."""
    best, best_distance = "", 2
    for other in sorted(known):
        if abs(len(other) - len(name)) < best_distance:
            distance = _distance(name, other, best_distance)
            if distance < best_distance:
                best, best_distance = other, distance
    return best


def _distance(a: str, b: str, limit: int) -> int:
    """Edit distance with adjacent swaps (optimal string alignment), cut off at ``limit``."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) >= limit:
            return limit
        previous2, previous = previous, current
    return previous[-1]


def rule_unknown_variables(ctx: Context) -> None:
    """A name with the collection's prefix that no role reads, a small typo away from one that
    some role does read: as written it is silently ignored and the default applies."""
    suggestions: dict[str, str] = {}
    for host in ctx.hosts:
        for name in sorted(ctx.present.get(host, ())):
            if not name.startswith(PREFIXES) or name in ctx.known:
                continue
            if name not in suggestions:
                suggestions[name] = _near(name, ctx.known)
            if suggestions[name]:
                ctx.add("unknown_variable", host, name, suggestion=suggestions[name])


def rule_upstream_notice(ctx: Context) -> None:
    pairs: dict[tuple[str, str], int] = {}
    for host in ctx.hosts:
        for new, old in ctx.labels[host].items():
            pairs[(old, new)] = pairs.get((old, new), 0) + 1
    if pairs:
        text = ", ".join(f"{old} → {new} ({count})" for (old, new), count in sorted(pairs.items()))
        ctx.add("upstream_names", ALL, "", pairs=text)


RULES: list[Rule] = [
    rule_groups,
    rule_hostnames,
    rule_ansible_host,
    rule_external_ip,
    rule_wireguard_addresses,
    rule_address_plan,
    rule_wireguard_groups,
    rule_hub_endpoint,
    rule_ports,
    rule_validators,
    rule_required,
    rule_nofile,
    rule_gpus,
    rule_mirrors,
    rule_unknown_variables,
    rule_upstream_notice,
]


@dataclass
class Result:
    problems: list[Problem]
    notices: list[Problem]
    hosts: list[str]
    primary: list[str]
    gpu: list[str]
    workers: list[str]
    changes: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "problems": [p.as_dict() for p in self.problems],
            "notices": [p.as_dict() for p in self.notices],
            "hosts": self.hosts,
            "primary": self.primary,
            "gpu": self.gpu,
            "workers": self.workers,
            "changes": self.changes,
        }


def validate(
    hostvars: Mapping[str, Any],
    groups: Mapping[str, Iterable[str]],
    gpus: Mapping[str, Any],
    *,
    upstream_names: Mapping[str, str] | None = None,
    upstream_compat: Any = True,
    nodeport_range: tuple[int, int] = (30000, 32767),
    mirrors: Mapping[str, Any] | None = None,
    rules: Iterable[Rule] | None = None,
) -> Result:
    """Every problem of the inventory: schema findings first, then the cross-variable rules."""
    table = variables(gpus)
    all_hosts = {str(h) for h in groups.get(ALL) or []}
    early: list[Problem] = []
    compat_parsed = table["chutes_upstream_compat"].spec.parse(
        upstream_compat, "chutes_upstream_compat"
    )
    compat = compat_parsed.value if compat_parsed.ok else True
    for finding in compat_parsed.findings:
        early.append(
            _finding_problem(
                ALL, table["chutes_upstream_compat"], "chutes_upstream_compat", finding
            )
        )
    views = _views(
        hostvars, sorted(all_hosts | {str(h) for g in CHUTES_GROUPS for h in groups.get(g) or []})
    )
    names, members = _candidates(views, groups, compat)
    known = {str(g): {str(h) for h in (groups.get(g) or [])} for g in groups}
    ctx = Context(
        hosts=names,
        groups={**known, **members, ALL: all_hosts},
        table=table,
        gpus=gpus,
        nodeport_range=nodeport_range,
        mirrors=mirrors,
        problems=early,
        known=frozenset(
            {
                *table,
                *role_names(),
                *FLAGS,
                *(upstream_names or {}),
                *(upstream_names or {}).values(),
            }
        ),
    )
    _load(ctx, views, upstream_names or {}, compat)
    _flags(ctx)
    _check_schemas(ctx)
    for rule in RULES if rules is None else rules:
        try:
            rule(ctx)
        except Exception as exc:  # noqa: BLE001 - a broken rule must not hide the others
            ctx.add(
                "rule_failed",
                ALL,
                "",
                rule=rule.__name__,
                error=f"{type(exc).__name__}: {exc}"[:200],
            )
    return Result(
        problems=ctx.problems,
        notices=ctx.notices,
        hosts=ctx.hosts,
        primary=sorted(ctx.primary),
        gpu=sorted(ctx.gpu),
        workers=sorted(ctx.workers),
        changes=_changes(ctx),
    )


def _changes(ctx: Context) -> list[dict[str, Any]]:
    """add_host arguments for the hosts whose groups or variables must change (usually none)."""
    out = []
    for host in ctx.hosts:
        wanted = {PRIMARY} if host in ctx.primary else {WORKERS}
        if host in ctx.gpu:
            wanted.add(GPU)
        missing = sorted(g for g in wanted if host not in ctx.groups[g])
        mapped = ctx.mapped.get(host) or {}
        if missing or mapped:
            out.append({"name": host, "groups": missing, "vars": dict(mapped)})
    return out
