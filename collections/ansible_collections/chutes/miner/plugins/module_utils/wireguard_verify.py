# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""The reachability report of the ``chutes.miner.wireguard`` role's verify step.

Each node pings every other node over the tunnel and reads its handshakes (``ping <addr> ok``,
``ping <addr> fail``, ``now <epoch>`` and ``hs <public key> <epoch>`` lines); from those lines
this builds the matrix printed on every run and, for each failing pair, its likely cause in
English and Chinese. Pure: no Ansible, no network.
"""

from __future__ import annotations

from typing import Any


def rows(
    nodes: list[str], probes: dict[str, list[str]], net: dict[str, Any], hub: str
) -> dict[str, list[dict[str, Any]]]:
    """{node: [{peer, address, via, ping, handshake_age}]}: ``via`` is the peer itself when the
    node has it as a WireGuard peer, else the hub; ``handshake_age`` -1 means none yet."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in nodes:
        lines = [str(line) for line in probes.get(r) or []]
        now = next((_int(line.split()[-1]) for line in lines if line.startswith("now ")), 0)
        ok = [line.split()[1] for line in lines if _is_ping(line, "ok")]
        handshakes = {
            line.split()[1]: _int(line.split()[-1])
            for line in lines
            if line.startswith("hs ") and len(line.split()) > 1
        }
        out[r] = []
        for p in nodes:
            if p == r:
                continue
            via = p if net[p]["public_key"] in handshakes else hub
            ts = handshakes.get(net[via]["public_key"], 0)
            out[r].append(
                {
                    "peer": p,
                    "address": net[p]["address"],
                    "via": via,
                    "ping": net[p]["address"] in ok,
                    "handshake_age": (now - ts) if ts > 0 else -1,
                }
            )
    return out


def _int(text: str) -> int:
    """As Ansible's ``int`` filter: 0 for anything that is not a number."""
    try:
        return int(text)
    except ValueError:
        return 0


def _is_ping(line: str, result: str) -> bool:
    words = line.split()
    return len(words) >= 3 and words[0] == "ping" and line.endswith(" " + result)


def matrix(nodes: list[str], table: dict[str, list[dict[str, Any]]], hub: str) -> list[str]:
    """One line per node: ``ok``, ``FAIL`` or ``-`` per peer, ``*`` when through the hub."""
    width = max(max(len(n) for n in nodes), 9) + 2
    lines = ["from \\ to".ljust(width) + "".join(n.center(width) for n in nodes)]
    for r in nodes:
        line = r.ljust(width)
        for c in nodes:
            row = next((x for x in table.get(r, []) if x["peer"] == c), {})
            if r == c:
                cell = "-"
            else:
                cell = ("ok" if row.get("ping", False) else "FAIL") + (
                    "" if row.get("via", c) == c else "*"
                )
            line += cell.center(width)
        lines.append(line)
    return lines + [f"* = through the hub {hub} / 经中心节点 {hub} 转发"]


def failures(
    nodes: list[str],
    table: dict[str, list[dict[str, Any]]],
    net: dict[str, Any],
    max_age: int,
    interface: str,
) -> list[str]:
    """``node -> peer (address): cause`` for each pair without a ping reply or fresh handshake."""
    out = []
    for r in nodes:
        for row in table.get(r, []):
            age = row["handshake_age"]
            if row["ping"] and 0 <= age <= max_age:
                continue
            cause = _cause(r, row, net, max_age, interface)
            out.append(f"{r} -> {row['peer']} ({row['address']}): {cause}")
    return out


def _cause(r: str, row: dict[str, Any], net: dict[str, Any], max_age: int, interface: str) -> str:
    via, peer, age = row["via"], row["peer"], row["handshake_age"]
    v = net[via]
    endpoint, port = str(v.get("endpoint") or ""), v.get("port")
    if age < 0 and not endpoint:
        return (
            f"no handshake with {via}, which has no endpoint (behind NAT) and has not dialled in:"
            f" check its outbound UDP and keepalive / 与 {via} 没有握手："
            "它没有对端地址（位于 NAT 之后）且尚未主动连入；"
            "请检查它的出站 UDP 是否被安全组或防火墙拦截，以及 wireguard_persistent_keepalive"
        )
    if age < 0 and not net[r].get("endpoint") and via == peer:
        return (
            f"no handshake with {via}: {r} has no endpoint, so it must dial {endpoint}:{port};"
            f" check that UDP port is open there (security group / firewall of {via}) / 与 {via}"
            f" 没有握手：{r} 没有对端地址，必须主动连接 {endpoint}:{port}；"
            f"请检查 {via} 的云安全组和防火墙是否放行 UDP {port}"
        )
    if age < 0:
        return (
            f"no handshake with {via}: UDP {port} closed at {endpoint} (check the cloud security"
            f" group and firewall of {via}: allow UDP {port} from the other nodes), wrong endpoint,"
            f" NAT in between, or a stale public key / 与 {via} 没有握手：{endpoint} 的 UDP {port}"
            f" 端口不通。请先检查 {via} 的云安全组和防火墙，入方向须允许其他节点访问 UDP {port}；"
            "其次检查对端地址是否正确（应为公网 IP/EIP）、中间是否有 NAT、公钥是否过期"
        )
    if age > max_age:
        return (
            f"last handshake with {via} {age} s ago: the path broke (endpoint changed, UDP"
            f" blocked, NAT mapping expired) / 与 {via} 的上次握手在 {age}"
            " 秒前：链路已中断（对端地址变化、UDP 被安全组或防火墙拦截、NAT 映射过期）"
        )
    if via != peer:
        return (
            f"the hub {via} answers but does not forward to {peer}: check forwarding on the hub"
            f" and that {peer} is up / 中心节点 {via} 有响应但没有转发到 {peer}："
            f"请检查中心节点的 IP 转发设置，以及 {peer} 是否在线"
        )
    return (
        f"handshake ok but no ping reply: a firewall on {interface}, or AllowedIPs/route"
        f" mismatch / 握手正常但 ping 不通：{interface} 上有防火墙规则拦截，"
        "或 AllowedIPs/路由不匹配"
    )


def report(
    nodes: list[str],
    probes: dict[str, list[str]],
    net: dict[str, Any],
    hub: str,
    max_age: int,
    interface: str,
) -> dict[str, list[str]]:
    """``{matrix: [lines], failed: [lines]}``; nothing failed means every pair can talk."""
    table = rows(nodes, probes, net, hub)
    return {
        "matrix": matrix(nodes, table, hub),
        "failed": failures(nodes, table, net, int(max_age), interface),
    }
