"""What the role renders for each node, per topology: peers, AllowedIPs, endpoints, keepalive,
forwarding (only on the hub, only when it relays) and no NAT anywhere; and which of the
kernel module or wireguard-go (with its drop-in) a host gets. Rendered with the role's own
defaults, vars and templates, as the play would on the controller."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from tests.wireguard.conftest import ROLE

NETWORK = "192.168.0.0/20"


def _trusted(value: Any) -> Any:
    """Role files are trusted templates, as Ansible's loader marks them."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    return value


def _load(relative: str) -> Any:
    return _trusted(yaml.safe_load((ROLE / relative).read_text()))


def _templar(host: str, hosts: dict[str, dict[str, Any]], **extra: Any) -> Templar:
    """The variables `host` sees in the play: defaults, inventory, vars/main.yml, and the
    facts that validate and keys collect (__wireguard_net) and install registers."""
    inventory = {
        "groups": {"chutes_primary": [next(iter(hosts))], "chutes_workers": list(hosts)[1:]},
        "inventory_hostname": host,
        "ansible_managed": "Ansible managed",
        "ansible_search_path": [str(ROLE)],
        "__wireguard_host": {"kernel": None},
        **hosts[host],
        **extra,
    }
    variables = {**_load("defaults/main.yml"), **inventory, **_load("vars/main.yml")}
    net = {}
    for name, values in hosts.items():
        own = Templar(loader=DataLoader(), variables={**_load("defaults/main.yml"), **values})
        net[name] = {
            "address": values["wireguard_address"],
            "port": 51820,
            "endpoint": str(own.template(trust_as_template("{{ wireguard_endpoint }}"))),
            "public_key": f"key-of-{name}",
        }
    variables["__wireguard_net"] = net
    return Templar(loader=DataLoader(), variables=variables)


def render(host: str, hosts: dict[str, dict[str, Any]], **extra: Any) -> str:
    source = (ROLE / "templates" / "etc" / "wireguard" / "wg.conf.j2").read_text()
    text = _templar(host, hosts, **extra).template(trust_as_template(source))
    return str(text)


def peers(conf: str) -> dict[str, dict[str, str]]:
    """PublicKey -> the peer's settings."""
    out = {}
    for block in conf.split("[Peer]")[1:]:
        values = dict(re.findall(r"^(\w+) = (.*)$", block, re.M))
        out[values.pop("PublicKey")] = values
    return out


def nodes(*nat: str, count: int = 3, **extra: Any) -> dict[str, dict[str, Any]]:
    """node-1 (the hub) .. node-<count>; the nodes named in `nat` have no endpoint."""
    hosts = {}
    for i in range(1, count + 1):
        name = f"node-{i}"
        hosts[name] = {"wireguard_address": f"192.168.0.{i}", "chutes_external_ip": f"10.0.0.{i}"}
        if name in nat:
            hosts[name]["wireguard_endpoint"] = ""
        hosts[name].update(extra)
    return hosts


def test_hub_topology_is_upstreams_star() -> None:
    hosts = nodes(wireguard_topology="hub")
    hub = render("node-1", hosts)
    assert peers(hub) == {
        "key-of-node-2": {"AllowedIPs": "192.168.0.2/32", "Endpoint": "10.0.0.2:51820"},
        "key-of-node-3": {"AllowedIPs": "192.168.0.3/32", "Endpoint": "10.0.0.3:51820"},
    }
    assert "PostUp = iptables -A FORWARD -i %i -o %i -j ACCEPT" in hub
    worker = render("node-2", hosts)
    assert peers(worker) == {
        "key-of-node-1": {
            "AllowedIPs": NETWORK,
            "Endpoint": "10.0.0.1:51820",
            "PersistentKeepalive": "25",
        }
    }
    assert "iptables" not in worker
    for conf in (hub, worker):
        assert "MASQUERADE" not in conf and "nat" not in conf
        assert "PrivateKey" not in conf
        assert "MTU = 1380" in conf


def test_mesh_peers_everyone_directly_without_forwarding() -> None:
    hosts = nodes("node-4", count=4, wireguard_topology="mesh")
    for host in hosts:
        conf = render(host, hosts)
        got = peers(conf)
        others = [h for h in hosts if h != host]
        assert sorted(got) == [f"key-of-{h}" for h in others]
        for other in others:
            peer = got[f"key-of-{other}"]
            assert peer["AllowedIPs"] == hosts[other]["wireguard_address"] + "/32"
            assert ("Endpoint" in peer) == (other != "node-4")
        # Every node but the hub keeps its paths open.
        assert ("PersistentKeepalive" in str(got)) == (host != "node-1")
        assert "iptables" not in conf and "MASQUERADE" not in conf
        assert (
            str(_templar(host, hosts).template(trust_as_template("{{ __wireguard_forward }}")))
            == "False"
        )


def test_mesh_pairs_both_behind_nat_go_through_the_hub() -> None:
    hosts = nodes("node-3", "node-4", count=4, wireguard_topology="mesh")
    hub = render("node-1", hosts)
    assert "PostUp = iptables -A FORWARD -i %i -o %i -j ACCEPT" in hub
    assert "MASQUERADE" not in hub
    three = peers(render("node-3", hosts))
    assert sorted(three) == ["key-of-node-1", "key-of-node-2"]  # no direct node-4 peer
    assert three["key-of-node-1"]["AllowedIPs"] == "192.168.0.1/32, 192.168.0.4/32"
    assert three["key-of-node-2"]["AllowedIPs"] == "192.168.0.2/32"
    # node-2 has an endpoint: it still peers with both NAT'd nodes directly.
    assert sorted(peers(render("node-2", hosts))) == [
        "key-of-node-1",
        "key-of-node-3",
        "key-of-node-4",
    ]


@pytest.mark.parametrize(
    ("wireguard_userspace", "kernel", "userspace"),
    [
        pytest.param(False, True, False, id="kernel-module"),
        pytest.param(False, False, True, id="no-module-falls-back"),
        pytest.param(True, None, True, id="userspace-asked"),
    ],
)
def test_kernel_module_or_wireguard_go(
    wireguard_userspace: bool, kernel: bool | None, userspace: bool
) -> None:
    """The configure task's arguments: the kernel path has no drop-in and the plain unit."""
    hosts = nodes(wireguard_topology="mesh", wireguard_userspace=wireguard_userspace)
    templar = _templar("node-2", hosts, __wireguard_host={"kernel": kernel})
    task = yaml.safe_load((ROLE / "tasks" / "configure.yml").read_text())[0]
    templar.available_variables = {**templar.available_variables, **_trusted(task["vars"])}
    args = _trusted(task["chutes.miner.wireguard_interface"])
    assert templar.template(args["userspace"]) is userspace
    wanted = templar.template(trust_as_template("{{ __wireguard_wanted_files }}"))
    dropin = templar.template(args["dropin_path"])
    assert (wanted[dropin] is not None) == userspace
    assert "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go" in templar.template(
        args["dropin_content"]
    )
    assert templar.template(trust_as_template("{{ __wireguard_unit }}")) == "wg-quick@wg0"
