"""chutes.miner.wireguard_interface against files in a temporary directory and a stand-in for
systemctl, wg, ip and sysctl that records every call: what it writes, starts, syncs and
leaves to the restart task. The kernel-module path is only testable here (the lab kernel has
no WireGuard module): it must use the plain wg-quick@wg0 unit without the wireguard-go drop-in.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chutes.miner.plugins.module_utils import wireguard as wgu
from ansible_collections.chutes.miner.plugins.module_utils.files import replace_file
from ansible_collections.chutes.miner.plugins.modules import wireguard_interface as wi

PRIVATE = "P" * 43 + "="
K1, K2 = "A" * 43 + "=", "B" * 43 + "="
DROPIN = "[Service]\nEnvironment=WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go\n"


def config(mtu: int = 1380, peers: tuple[str, ...] = (K1,)) -> str:
    text = (
        "[Interface]\nAddress = 192.168.0.1/20\nListenPort = 51820\n"
        f"MTU = {mtu}\nPostUp = wg set %i private-key /etc/wireguard/wg0.key\n"
    )
    for i, key in enumerate(peers, start=2):
        text += f"\n[Peer]\nPublicKey = {key}\nAllowedIPs = 192.168.0.{i}/32\n"
    return text


@dataclass
class FakeHost:
    """systemctl/wg/ip/sysctl of a host whose wg0 runs `running` (None: unit inactive)."""

    root: Path
    module: AnsibleModule
    running: str | None = None
    userspace: bool = False
    enabled: bool = False
    calls: list[tuple[str, ...]] = field(default_factory=list)
    stdin: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.running is not None:
            link = self.root / "sys" / "wg0"
            link.mkdir(parents=True)
            mtu = wgu.parse_config(self.running).get("MTU")[0]
            (link / "mtu").write_text(f"{mtu}\n")
            if self.userspace:
                (link / "tun_flags").write_text("0x1002\n")

    @property
    def paths(self) -> wgu.HostPaths:
        forward = self.root / "ip_forward"
        forward.write_text("0\n")
        return wgu.HostPaths(sys_net=str(self.root / "sys"), ip_forward=str(forward))

    def run(self, *args: str, data: str | None = None, check: bool = True) -> tuple[int, str]:
        self.calls.append(args)
        self.stdin.append(data)
        if args[:2] == ("systemctl", "is-active"):
            return (0 if self.running is not None else 3), ""
        if args[:2] == ("systemctl", "is-enabled"):
            return (0 if self.enabled else 1), ""
        if args[:3] == ("wg", "show", "wg0") and self.running is not None:
            cfg = wgu.parse_config(self.running)
            lines = [f"{PRIVATE}\tPUB\t51820\toff"]
            for key, peer in wgu.desired_peers(cfg).items():
                lines.append(f"{key}\t(none)\t(none)\t{','.join(peer.allowed_ips)}\t0\t0\t0\toff")
            return 0, "\n".join(lines) + "\n"
        if args[:2] == ("ip", "-o") and self.running is not None:
            return 0, "5: wg0    inet 192.168.0.1/20 scope global wg0\\n"
        return 0, ""

    def write(self, path: str, content: str, mode: int, dir_mode: int) -> None:
        replace_file(self.module, path, content.encode(), mode, dir_mode)

    def changes(self) -> list[tuple[str, ...]]:
        """Calls that change something (not the reads)."""
        reads = {
            ("systemctl", "is-active"),
            ("systemctl", "is-enabled"),
            ("wg", "show"),
            ("ip", "-o"),
        }
        return [c for c in self.calls if c[:2] not in reads]


def params(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    key = tmp_path / "etc" / "wireguard" / "wg0.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(PRIVATE + "\n")
    p = {
        "name": "wg0",
        "config": config(),
        "config_path": str(tmp_path / "etc" / "wireguard" / "wg0.conf"),
        "private_key_path": str(key),
        "userspace": False,
        "dropin_path": str(tmp_path / "systemd" / "wg-quick@.service.d" / "userspace.conf"),
        "dropin_content": DROPIN,
        "sysctl_path": str(tmp_path / "sysctl.d" / "60-chutes-miner-wireguard.conf"),
        "sysctl_content": "",
    }
    p.update(overrides)
    return p


def test_kernel_module_uses_the_plain_unit_without_the_dropin(
    tmp_path: Path, module: AnsibleModule
) -> None:
    p = params(tmp_path)
    dropin = Path(p["dropin_path"])
    dropin.parent.mkdir(parents=True)
    dropin.write_text(DROPIN)  # left from a host that used to run wireguard-go
    host = FakeHost(tmp_path, module)
    result = wi.reconcile(p, host.run, host.write, paths=host.paths)
    assert not dropin.exists()
    assert host.changes() == [
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--quiet", "wg-quick@wg0"),
        ("systemctl", "start", "wg-quick@wg0"),
    ]
    conf = Path(p["config_path"])
    assert conf.read_text() == p["config"] and stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert result["started"] and result["changed"] and not result["restart_required"]


def test_userspace_writes_the_dropin_before_starting(tmp_path: Path, module: AnsibleModule) -> None:
    p = params(tmp_path, userspace=True)
    host = FakeHost(tmp_path, module)
    wi.reconcile(p, host.run, host.write, paths=host.paths)
    assert Path(p["dropin_path"]).read_text() == DROPIN
    assert host.changes() == [
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--quiet", "wg-quick@wg0"),
        ("systemctl", "start", "wg-quick@wg0"),
    ]


def test_a_converged_host_is_left_alone(tmp_path: Path, module: AnsibleModule) -> None:
    p = params(tmp_path)
    Path(p["config_path"]).write_text(p["config"])
    host = FakeHost(tmp_path, module, running=p["config"], enabled=True)
    result = wi.reconcile(p, host.run, host.write, paths=host.paths)
    assert not result["changed"] and host.changes() == []


def test_a_new_peer_is_synced_with_the_key_on_stdin_only(
    tmp_path: Path, module: AnsibleModule
) -> None:
    p = params(tmp_path, config=config(peers=(K1, K2)))
    Path(p["config_path"]).write_text(config())
    host = FakeHost(tmp_path, module, running=config(), enabled=True)
    result = wi.reconcile(p, host.run, host.write, paths=host.paths)
    assert host.changes() == [("wg", "syncconf", "wg0", "/dev/stdin")]
    sent = host.stdin[host.calls.index(("wg", "syncconf", "wg0", "/dev/stdin"))]
    assert sent is not None and f"PrivateKey = {PRIVATE}" in sent and f"PublicKey = {K2}" in sent
    assert "MTU" not in sent and "PostUp" not in sent
    assert PRIVATE not in repr(result)
    assert result["synced"] and not result["restart_required"]


def test_an_mtu_change_is_left_to_the_restart_task(tmp_path: Path, module: AnsibleModule) -> None:
    p = params(tmp_path, config=config(mtu=1420, peers=(K1, K2)))
    Path(p["config_path"]).write_text(config())
    host = FakeHost(tmp_path, module, running=config(), enabled=True)
    result = wi.reconcile(p, host.run, host.write, paths=host.paths)
    assert result["restart_required"]
    assert any(r.startswith("MTU 1380 -> 1420") for r in result["restart_reasons"])
    assert not result["synced"] and host.changes() == []
    assert Path(p["config_path"]).read_text() == p["config"]


def test_forwarding_loads_its_sysctl_dropin(tmp_path: Path, module: AnsibleModule) -> None:
    sysctl = "net.ipv4.ip_forward = 1\n"
    p = params(tmp_path, sysctl_content=sysctl)
    Path(p["config_path"]).write_text(p["config"])
    host = FakeHost(tmp_path, module, running=p["config"], enabled=True)
    wi.reconcile(p, host.run, host.write, paths=host.paths)
    assert Path(p["sysctl_path"]).read_text() == sysctl
    assert host.changes() == [("sysctl", "-p", p["sysctl_path"])]


@pytest.mark.parametrize("userspace", [False, True])
def test_check_mode_changes_nothing(tmp_path: Path, module: AnsibleModule, userspace: bool) -> None:
    p = params(tmp_path, userspace=userspace, config=config(mtu=1420))
    host = FakeHost(tmp_path, module)
    result = wi.reconcile(p, host.run, host.write, check_mode=True, paths=host.paths)
    assert result["changed"] and result["written"]
    assert host.changes() == []
    assert not Path(p["config_path"]).exists() and not Path(p["dropin_path"]).exists()
