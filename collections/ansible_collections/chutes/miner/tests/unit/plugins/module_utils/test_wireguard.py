"""Decisions of the wireguard modules (plugins/module_utils/wireguard.py): what a running
interface needs when the config changes: nothing, `wg syncconf`, or a restart."""

from __future__ import annotations

import pytest
from ansible_collections.chutes.miner.plugins.module_utils import wireguard as wgu

K1, K2, K3 = ("A" * 43 + "=", "B" * 43 + "=", "C" * 43 + "=")
PRIVATE = "P" * 43 + "="

CONFIG = f"""#
# Ansible managed
#
[Interface]
Address = 192.168.0.1/20
ListenPort = 51820
MTU = 1380
# The private key stays in /etc/wireguard/wg0.key
PostUp = wg set %i private-key /etc/wireguard/wg0.key

# node-2
[Peer]
PublicKey = {K1}
AllowedIPs = 192.168.0.2/32
Endpoint = 10.0.0.2:51820
PersistentKeepalive = 25

# node-3, behind NAT, relaying node-4
[Peer]
PublicKey = {K2}
AllowedIPs = 192.168.0.3/32, 192.168.0.4/32
"""

DUMP = (
    f"{PRIVATE}\tPUB\t51820\toff\n"
    f"{K1}\t(none)\t10.0.0.2:51820\t192.168.0.2/32\t1700000000\t10\t20\t25\n"
    f"{K2}\t(none)\t203.0.113.9:4242\t192.168.0.3/32,192.168.0.4/32\t1700000000\t10\t20\toff\n"
)


def live(**changes: object) -> wgu.Live:
    private_key, port, peers = wgu.parse_dump(DUMP)
    base = {
        "private_key": private_key,
        "listen_port": port,
        "peers": peers,
        "addresses": frozenset({"192.168.0.1/20"}),
        "mtu": 1380,
        "userspace": True,
    }
    base.update(changes)
    return wgu.Live(**base)  # type: ignore[arg-type]


def test_parse_config_keeps_sections_and_drops_comments() -> None:
    cfg = wgu.parse_config(CONFIG)
    assert cfg.get("Address") == ["192.168.0.1/20"]
    assert cfg.get("postup") == ["wg set %i private-key /etc/wireguard/wg0.key"]
    assert [dict(p)["PublicKey"] for p in cfg.peers] == [K1, K2]
    peers = wgu.desired_peers(cfg)
    assert peers[K2] == wgu.Peer(
        frozenset({"192.168.0.3/32", "192.168.0.4/32"}), keepalive=0, has_endpoint=False
    )
    assert peers[K1].keepalive == 25 and peers[K1].has_endpoint


@pytest.mark.parametrize("text", ["Address = 1.2.3.4/32\n", "[Interface]\nAddress\n", "[Bogus]\n"])
def test_parse_config_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        wgu.parse_config(text)


def test_syncconf_input_is_what_wg_strip_gives_plus_the_key() -> None:
    out = wgu.syncconf_input(wgu.parse_config(CONFIG), PRIVATE)
    assert out.startswith(f"[Interface]\nPrivateKey = {PRIVATE}\nListenPort = 51820\n")
    for wg_quick_only in ("Address", "MTU", "PostUp"):
        assert wg_quick_only not in out
    assert out.count("[Peer]") == 2 and f"PublicKey = {K2}" in out


def test_running_interface_that_matches_needs_nothing() -> None:
    cfg = wgu.parse_config(CONFIG)
    assert wgu.restart_reasons(cfg, cfg, live(), userspace=True) == []
    # node-3 roamed to another address: not a difference (WireGuard follows the peer).
    assert wgu.sync_reasons(cfg, live(), PRIVATE, file_changed=False) == []


def test_peer_changes_sync_and_never_restart() -> None:
    old = wgu.parse_config(CONFIG)
    new = wgu.parse_config(CONFIG + f"\n[Peer]\nPublicKey = {K3}\nAllowedIPs = 192.168.0.5/32\n")
    assert wgu.restart_reasons(old, new, live(), userspace=True) == []
    reasons = wgu.sync_reasons(new, live(), PRIVATE, file_changed=True)
    assert "peers differ (+1 -0)" in reasons
    # A peer removed by hand is put back even when the file did not change.
    dropped = live(peers={K1: live().peers[K1]})
    assert wgu.sync_reasons(old, dropped, PRIVATE, file_changed=False) == ["peers differ (+1 -0)"]


def test_rotated_key_syncs() -> None:
    cfg = wgu.parse_config(CONFIG)
    assert wgu.sync_reasons(cfg, live(), "N" * 43 + "=", file_changed=False) == [
        "the private key differs from the key file (rotated)"
    ]


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (("MTU = 1380", "MTU = 1420"), "MTU 1380 -> 1420"),
        (("ListenPort = 51820", "ListenPort = 51821"), "listen port 51820 -> 51821"),
        (("192.168.0.1/20", "192.168.0.9/20"), "address"),
        (
            (
                "PostUp = wg set",
                "PostUp = iptables -A FORWARD -i %i -o %i -j ACCEPT\nPostUp = wg set",
            ),
            "the [Interface] settings in the config changed",
        ),
    ],
)
def test_interface_level_changes_restart(edit: tuple[str, str], reason: str) -> None:
    old = wgu.parse_config(CONFIG)
    new = wgu.parse_config(CONFIG.replace(*edit))
    reasons = wgu.restart_reasons(old, new, live(), userspace=True)
    assert any(r.startswith(reason) for r in reasons), reasons


def test_switching_between_kernel_and_wireguard_go_restarts() -> None:
    cfg = wgu.parse_config(CONFIG)
    assert wgu.restart_reasons(cfg, cfg, live(userspace=True), userspace=False) == [
        "implementation wireguard-go -> kernel module"
    ]
    assert wgu.restart_reasons(cfg, cfg, live(userspace=False), userspace=False) == []


def test_stopped_interface_is_started_not_restarted_or_synced() -> None:
    cfg = wgu.parse_config(CONFIG)
    assert wgu.restart_reasons(None, cfg, None, userspace=False) == []
    assert wgu.sync_reasons(cfg, None, PRIVATE, file_changed=True) == []
    assert wgu.restart_reasons(cfg, cfg, wgu.Live.broken(), userspace=True) == [
        "the unit is active but the link is gone or wg cannot read it"
    ]
