# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Helpers of the wireguard modules: read wg-quick configs, ``wg show dump`` and the running
interface, and decide whether it needs a restart, a ``wg syncconf`` or nothing.

Everything but ``read_live`` and ``sha1_of`` is pure, so every decision is unit-tested
(tests/wireguard/test_plan.py).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type aliases only: managed hosts may run Python 3.8, where
    # collections.abc.Callable[...] and tuple[...] cannot be subscripted at run time
    from collections.abc import Callable

    # run(*args, data=None, check=True) -> (rc, stdout); fails the module on rc != 0 when check.
    Runner = Callable[..., tuple[int, str]]

# Keys only wg-quick understands; `wg syncconf` rejects them (what `wg-quick strip` drops).
WG_QUICK_ONLY = frozenset(
    {"address", "dns", "mtu", "table", "preup", "postup", "predown", "postdown", "saveconfig"}
)


@dataclass
class Config:
    """A wg-quick config: the [Interface] settings and the [Peer] sections, in file order."""

    interface: list[tuple[str, str]] = field(default_factory=list)
    peers: list[list[tuple[str, str]]] = field(default_factory=list)

    def get(self, key: str) -> list[str]:
        return [v for k, v in self.interface if k.lower() == key.lower()]


@dataclass(frozen=True)
class Peer:
    allowed_ips: frozenset[str]
    keepalive: int
    has_endpoint: bool


@dataclass(frozen=True)
class Live:
    """What `wg show <if> dump` and the kernel report about a running interface.

    ``Live.broken()`` stands for an active unit whose link is gone or does not answer.
    """

    private_key: str
    listen_port: int
    peers: dict[str, Peer]
    addresses: frozenset[str]
    mtu: int
    userspace: bool
    link_ok: bool = True

    @staticmethod
    def broken() -> Live:
        return Live("", 0, {}, frozenset(), 0, False, link_ok=False)


@dataclass(frozen=True)
class HostPaths:
    """Where the kernel is read; tests point these at a temporary directory."""

    sys_net: str = "/sys/class/net"
    ip_forward: str = "/proc/sys/net/ipv4/ip_forward"


def parse_config(text: str) -> Config:
    """Parse a wg-quick config; comments and blank lines are ignored, keys keep their case."""
    cfg = Config()
    section: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            name = line.strip("[]").strip().lower()
            if name == "interface":
                section = cfg.interface
            elif name == "peer":
                section = []
                cfg.peers.append(section)
            else:
                raise ValueError(f"unknown section {line}")
            continue
        key, sep, value = line.partition("=")
        if not sep or section is None:
            raise ValueError(f"not a 'Key = value' line inside a section: {raw!r}")
        section.append((key.strip(), value.strip()))
    return cfg


def _peer(section: list[tuple[str, str]]) -> tuple[str, Peer]:
    values = {k.lower(): v for k, v in section}
    allowed = frozenset(a.strip() for a in values.get("allowedips", "").split(",") if a.strip())
    keepalive = values.get("persistentkeepalive", "off")
    return values["publickey"], Peer(
        allowed_ips=allowed,
        keepalive=0 if keepalive in ("off", "") else int(keepalive),
        has_endpoint=bool(values.get("endpoint")),
    )


def desired_peers(cfg: Config) -> dict[str, Peer]:
    return dict(_peer(p) for p in cfg.peers)


def syncconf_input(cfg: Config, private_key: str) -> str:
    """The config `wg syncconf` takes: wg-quick-only keys dropped, the private key added."""
    lines = ["[Interface]", f"PrivateKey = {private_key}"]
    lines += [f"{k} = {v}" for k, v in cfg.interface if k.lower() not in WG_QUICK_ONLY]
    for peer in cfg.peers:
        lines += ["", "[Peer]"] + [f"{k} = {v}" for k, v in peer]
    return "\n".join(lines) + "\n"


def parse_dump(dump: str) -> tuple[str, int, dict[str, Peer]]:
    """`wg show <if> dump`: the interface line, then one tab-separated line per peer."""
    lines = [line.split("\t") for line in dump.splitlines() if line.strip()]
    private_key, _public, port = lines[0][:3]
    peers = {}
    for cols in lines[1:]:
        # public-key preshared-key endpoint allowed-ips latest-handshake rx tx keepalive
        allowed = frozenset() if cols[3] == "(none)" else frozenset(cols[3].split(","))
        peers[cols[0]] = Peer(
            allowed_ips=allowed,
            keepalive=0 if cols[7] == "off" else int(cols[7]),
            has_endpoint=cols[2] != "(none)",
        )
    return private_key, int(port), peers


def restart_reasons(
    old: Config | None, new: Config, live: Live | None, userspace: bool
) -> list[str]:
    """Why the running interface needs `wg-quick down/up`: an interface-level setting differs.

    ``old`` is the config on disk before this run (PostUp/PostDown cannot be read back from
    the kernel, so they are compared file to file); ``live`` is the running interface (None when
    it is not running: then it is started, not restarted).
    """
    if live is None:
        return []
    if not live.link_ok:
        return ["the unit is active but the link is gone or wg cannot read it"]
    reasons = []
    if old is not None:
        before = [(k.lower(), v) for k, v in old.interface if k.lower() in WG_QUICK_ONLY]
        after = [(k.lower(), v) for k, v in new.interface if k.lower() in WG_QUICK_ONLY]
        if before != after:
            reasons.append("the [Interface] settings in the config changed")
    addresses = frozenset(a.strip() for v in new.get("Address") for a in v.split(","))
    if addresses and addresses != live.addresses:
        reasons.append(f"address {sorted(live.addresses)} -> {sorted(addresses)}")
    mtu = new.get("MTU")
    if mtu and int(mtu[-1]) != live.mtu:
        reasons.append(f"MTU {live.mtu} -> {mtu[-1]}")
    port = new.get("ListenPort")
    if port and int(port[-1]) != live.listen_port:
        reasons.append(f"listen port {live.listen_port} -> {port[-1]}")
    if userspace != live.userspace:
        reasons.append(
            "implementation "
            + ("kernel -> wireguard-go" if userspace else "wireguard-go -> kernel module")
        )
    return reasons


def sync_reasons(new: Config, live: Live | None, private_key: str, file_changed: bool) -> list[str]:
    """Why the running interface needs `wg syncconf`: its key or peers differ from the config.

    Endpoints are compared only for presence: WireGuard roams to the address a peer really
    sends from, so a live endpoint may rightly differ from the configured one.
    """
    if live is None:
        return []
    reasons = []
    if file_changed:
        reasons.append("the config file changed (endpoints come only from it)")
    if live.private_key != private_key:
        reasons.append("the private key differs from the key file (rotated)")
    want = desired_peers(new)
    if set(want) != set(live.peers):
        added, removed = len(set(want) - set(live.peers)), len(set(live.peers) - set(want))
        reasons.append(f"peers differ (+{added} -{removed})")
    else:
        for key, peer in want.items():
            got = live.peers[key]
            if (peer.allowed_ips, peer.keepalive) != (got.allowed_ips, got.keepalive) or (
                peer.has_endpoint and not got.has_endpoint
            ):
                reasons.append(f"peer {key[:8]}... differs in AllowedIPs, keepalive or endpoint")
    return reasons


def runner(module: Any, name: str) -> Runner:
    """A Runner on an AnsibleModule; a failed systemctl call quotes the unit's journal."""

    def run(*args: str, data: str | None = None, check: bool = True) -> tuple[int, str]:
        rc, out, err = module.run_command(list(args), data=data, environ_update={"LC_ALL": "C"})
        if check and rc != 0:
            detail = ""
            if args[0] == "systemctl":
                journal = module.run_command(
                    ["journalctl", "-u", f"wg-quick@{name}", "-n", "15", "--no-pager"]
                )[1]
                detail = "\n" + journal
            # Never echo `out`: `wg show dump` holds the private key.
            module.fail_json(msg=f"{' '.join(args[:3])} failed (rc {rc}): {err.strip()}{detail}")
        return rc, out

    return run


def read_live(run: Runner, name: str, paths: HostPaths) -> Live | None:
    """The running interface ``name``, or None when ``wg-quick@<name>`` is not active."""
    if run("systemctl", "is-active", "--quiet", f"wg-quick@{name}", check=False)[0] != 0:
        return None
    sys_dir = os.path.join(paths.sys_net, name)
    rc, dump = run("wg", "show", name, "dump", check=False)
    if rc != 0 or not os.path.isdir(sys_dir):
        return Live.broken()  # deleted by hand, wireguard-go gone: a restart brings it back
    private_key, port, peers = parse_dump(dump)
    addresses = set()
    for line in run("ip", "-o", "addr", "show", "dev", name)[1].splitlines():
        cols = line.split()
        for i, col in enumerate(cols[:-3]):
            if col in ("inet", "inet6") and cols[i + 2 : i + 4] != ["scope", "link"]:
                addresses.add(cols[i + 1])
    with open(f"{sys_dir}/mtu", encoding="ascii") as fh:
        mtu = int(fh.read())
    userspace = os.path.exists(f"{sys_dir}/tun_flags")  # wireguard-go drives a TUN device
    return Live(private_key, port, peers, frozenset(addresses), mtu, userspace)


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def read_private_key(path: str) -> str:
    """The key file's content; empty when missing (check mode before the key exists)."""
    return (read_text(path) or "").strip()


def sha1_of(text: str | None) -> str | None:
    """What Jinja's ``hash('sha1')`` gives for the same text; None for a missing file."""
    return None if text is None else hashlib.sha1(text.encode("utf-8")).hexdigest()


def ip_forward(paths: HostPaths) -> bool:
    """Whether this network namespace forwards IPv4."""
    return (read_text(paths.ip_forward) or "0").strip() == "1"
