"""chutes.miner.microk8s_plan: input checks, the launch configuration, the bundle and snap
steps, the join plan, addons and labels of the microk8s role."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ansible_collections.chutes.miner.plugins.filter.microk8s_plan import microk8s_plan
from ansible_collections.chutes.miner.plugins.module_utils import microk8s

HOTKEY = "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ"
MIRRORS = {
    "profile": "tuna",
    "registries": {
        "docker.io": ["https://docker.m.daocloud.io", "https://docker.1ms.run"],
        "registry.k8s.io": [
            "https://k8s.m.daocloud.io",
            "https://registry.aliyuncs.com/v2/google_containers",
        ],
    },
    "registry_upstreams": {
        "docker.io": "https://registry-1.docker.io",
        "registry.k8s.io": "https://registry.k8s.io",
    },
    "dns": ["223.5.5.5", "119.29.29.29"],
}
NODES = {
    "cpu-0": {"node_ip": "192.168.0.1", "external_ip": "10.0.0.1", "addresses": ["192.168.0.1"]},
    "gpu-0": {"node_ip": "192.168.0.2", "external_ip": "10.0.0.2", "addresses": ["192.168.0.2"]},
}


def settings(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "microk8s_install_method": "offline",
        "microk8s_channel": "1.34/stable",
        "microk8s_bundle_url": "https://files.example.cn/microk8s",
        "microk8s_bundle_controller_dir": "",
        "microk8s_bundle_checksums": {},
        "microk8s_node_ip": "192.168.0.1",
        "microk8s_node_network": "192.168.0.0/20",
        "microk8s_pod_cidr": "10.1.0.0/16",
        "microk8s_service_cidr": "10.152.183.0/24",
        "microk8s_dns_upstreams": ["223.5.5.5", "119.29.29.29"],
        "microk8s_addons": [],
        "microk8s_apiserver_extra_sans": [],
        "microk8s_containerd_env": {},
        "microk8s_validators": [{"hotkey": HOTKEY}],
        "microk8s_registry_port": 30500,
        "microk8s_token_ttl": 300,
        "microk8s_drain_timeout": 300,
        "microk8s_ready_timeout": 300,
        "microk8s_remove_nodes": [],
        "mirrors_effective": MIRRORS,
    }
    return {**base, **over}


def check(**over: Any) -> dict[str, Any]:
    nodes = over.pop("nodes", NODES)
    result: dict[str, Any] = microk8s_plan(
        settings(**over), "check", nodes, ["cpu-0"], ["cpu-0", "gpu-0"]
    )
    return result


def test_good_inputs_pass_and_give_the_cluster_dns() -> None:
    assert check() == {"problems": [], "cluster_dns": "10.152.183.10"}
    assert check(microk8s_service_cidr="10.96.0.0/16")["cluster_dns"] == "10.96.0.10"


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"microk8s_install_method": "apt"}, "is not offline or store"),
        ({"microk8s_channel": "latest/stable"}, "is not a channel like 1.34/stable"),
        ({"microk8s_channel": "1.26/stable"}, "is not a channel like 1.34/stable"),
        ({"microk8s_bundle_url": ""}, "needs exactly one of microk8s_bundle_url"),
        ({"microk8s_bundle_controller_dir": "/srv/b"}, "needs exactly one of"),
        ({"microk8s_bundle_url": "ftp://x/b"}, "is not an http(s) URL"),
        ({"microk8s_bundle_checksums": {"microk8s.snap": "abc"}}, "is not a sha256"),
        ({"microk8s_dns_upstreams": []}, "microk8s_dns_upstreams is empty"),
        ({"microk8s_dns_upstreams": ["dns.example"]}, "is not an IPv4 address"),
        ({"microk8s_addons": ["community"]}, "community is not allowed: it clones"),
        ({"microk8s_addons": ["nvidia"]}, "nvidia is not allowed"),
        ({"microk8s_addons": ["ingress"]}, "ingress is not allowed"),
        ({"microk8s_addons": ["myrepo/thing"]}, "comes from an addon repository"),
        ({"microk8s_pod_cidr": "10.2.0.0/16"}, "keeps Calico's pool 10.1.0.0/16"),
        ({"microk8s_service_cidr": "192.168.0.0/24"}, "overlaps the node network"),
        ({"microk8s_service_cidr": "10.152.183.0/30"}, "with a /12 to /28 prefix"),
        ({"microk8s_token_ttl": 5}, "microk8s_token_ttl=5 must be a number of seconds"),
        ({"microk8s_remove_nodes": ["gpu-0"]}, "still in the inventory groups"),
        (
            {"nodes": {**NODES, "gpu-0": {**NODES["gpu-0"], "addresses": ["10.0.0.2"]}}},
            "is not an address of this host",
        ),
        (
            {"nodes": {**NODES, "gpu-0": {**NODES["gpu-0"], "node_ip": "192.168.0.1"}}},
            "is also cpu-0's",
        ),
        (
            {"nodes": {**NODES, "gpu-0": {**NODES["gpu-0"], "node_ip": "10.9.0.1"}}},
            "outside the node network",
        ),
    ],
)
def test_bad_inputs_are_refused_in_both_languages(over: dict[str, Any], needle: str) -> None:
    problems = check(**over)["problems"]
    assert any(needle in p["en"] for p in problems), problems
    assert all(p["zh"] and p["host"] for p in problems)


def test_every_problem_comes_at_once() -> None:
    problems = check(microk8s_dns_upstreams=[], microk8s_addons=["community"], microk8s_token_ttl=1)
    assert len(problems["problems"]) == 3


def test_the_primary_must_be_in_the_play() -> None:
    result = microk8s_plan(settings(), "check", NODES, ["cpu-0"], ["gpu-0"])
    assert "the primary is not in this play" in result["problems"][0]["en"]


class TestLaunchConfig:
    def primary(self, **over: Any) -> dict[str, Any]:
        config: dict[str, Any] = microk8s_plan(settings(**over), "launch_config", True, "cpu-0")
        return config

    def test_the_primary_gets_addons_dns_with_the_chosen_resolvers_and_rbac(self) -> None:
        config = self.primary(microk8s_addons=["metrics-server"])
        assert config["version"] == "0.1.0"
        assert config["addons"] == [
            {"name": "dns", "args": ["223.5.5.5,119.29.29.29"]},
            {"name": "rbac"},
            {"name": "metrics-server"},
        ]
        assert "addonRepositories" not in config
        assert config["extraKubeAPIServerArgs"] == {
            "--advertise-address": "192.168.0.1",
            "--service-cluster-ip-range": "10.152.183.0/24",
        }
        assert config["extraSANs"] == ["192.168.0.1"]

    def test_kubelet_runs_on_the_wireguard_address_under_the_inventory_name(self) -> None:
        config = microk8s_plan(
            settings(microk8s_node_ip="192.168.0.2"), "launch_config", False, "gpu-0"
        )
        assert config["extraKubeletArgs"] == {
            "--cluster-domain": "cluster.local",
            "--cluster-dns": "10.152.183.10",
            "--node-ip": "192.168.0.2",
            "--hostname-override": "gpu-0",
        }
        # Workers join an existing cluster: no addons of their own.
        assert config["addons"] == []
        assert "extraKubeAPIServerArgs" not in config

    def test_registries_come_from_mirrors_effective_with_the_upstream_last(self) -> None:
        regs = self.primary()["containerdRegistryConfigs"]
        assert regs["docker.io"] == (
            'server = "https://registry-1.docker.io"\n\n'
            '[host."https://docker.m.daocloud.io"]\n  capabilities = ["pull", "resolve"]\n\n'
            '[host."https://docker.1ms.run"]\n  capabilities = ["pull", "resolve"]\n'
        )
        k8s = regs["registry.k8s.io"]
        assert k8s.index("k8s.m.daocloud.io") < k8s.index("registry.aliyuncs.com")
        # A path-prefix mirror needs override_path; a host mirror does not.
        assert k8s.count("override_path = true") == 1
        assert k8s.rstrip().endswith("override_path = true")

    def test_the_validators_local_registry_names_are_plain_http(self) -> None:
        regs = self.primary()["containerdRegistryConfigs"]
        name = f"{HOTKEY.lower()}.localregistry.chutes.ai:30500"
        assert regs[name].startswith("# managed-by: chutes.miner.microk8s\n")
        assert f'server = "http://{name}"' in regs[name]
        assert f'[host."http://{name}"]' in regs[name]

    def test_no_mirrors_means_no_public_registry_entries(self) -> None:
        config = self.primary(mirrors_effective={}, microk8s_validators=[])
        assert "containerdRegistryConfigs" not in config

    def test_proxy_environment_only_when_given(self) -> None:
        assert "extraContainerdEnv" not in self.primary()
        env = {"https_proxy": "http://proxy:3128", "no_proxy": "127.0.0.1,.svc"}
        assert self.primary(microk8s_containerd_env=env)["extraContainerdEnv"] == env

    def test_it_is_stable_yaml(self) -> None:
        a = yaml.safe_dump(self.primary(), sort_keys=True)
        assert a == yaml.safe_dump(self.primary(), sort_keys=True)


SUMS = "\n".join(
    f"{c * 64}  {name}"
    for c, name in zip(
        "abcdef",
        ["core22.assert", "core22.snap", "microk8s.assert", "microk8s.snap", "snapd.assert", "x"],
        strict=True,
    )
)


def test_bundle_files_in_install_order_with_their_digests() -> None:
    bundle = microk8s_plan(SUMS, "bundle", "1.34/stable", {}, False)
    assert bundle["problems"] == []
    assert bundle["snaps"] == ["core22", "microk8s"]
    assert [f["name"] for f in bundle["files"]] == [
        "core22.assert",
        "core22.snap",
        "microk8s.assert",
        "microk8s.snap",
    ]
    assert bundle["files"][3]["sha256"] == "d" * 64


def test_a_pin_wins_and_a_missing_checksum_is_refused() -> None:
    bundle = microk8s_plan(SUMS, "bundle", "1.34/stable", {"microk8s.snap": "0" * 64}, False)
    assert bundle["files"][3]["sha256"] == "0" * 64
    # Debian needs snapd from the bundle: its .snap has no checksum in SUMS.
    debian = microk8s_plan(SUMS, "bundle", "1.34/stable", {}, True)
    assert debian["snaps"] == ["snapd", "core22", "microk8s"]
    assert [p["en"] for p in debian["problems"]] == [
        "the bundle has no checksum for snapd.snap (SHA256SUMS or microk8s_bundle_checksums)"
    ]


def test_older_channels_use_core20() -> None:
    assert microk8s.base_snap("1.31/stable") == "core20"
    assert microk8s.base_snap("1.34/stable") == "core22"


SNAP_LIST = """Name      Version   Rev    Tracking       Publisher   Notes
core22    20250110  1748   latest/stable  canonical✓  base
microk8s  v1.34.4   8611   1.34/stable    canonical✓  classic,held
snapd     2.67      23771  latest/stable  canonical✓  snapd
"""


def test_installed_snaps_are_not_installed_again() -> None:
    revs = {"core22": "1748", "microk8s": "8611"}
    steps = microk8s_plan(SNAP_LIST, "install", ["core22", "microk8s"], revs, False)
    assert steps == {"install": [], "problems": []}
    fresh = microk8s_plan("", "install", ["core22", "microk8s"], revs, False)
    assert fresh["install"] == ["core22", "microk8s"]


def test_a_new_microk8s_revision_needs_the_explicit_upgrade() -> None:
    revs = {"core22": "1748", "microk8s": "8700"}
    steps = microk8s_plan(SNAP_LIST, "install", ["core22", "microk8s"], revs, False)
    assert steps["install"] == []
    assert "upgrading is explicit" in steps["problems"][0]["en"]
    allowed = microk8s_plan(SNAP_LIST, "install", ["core22", "microk8s"], revs, True)
    assert allowed == {"install": ["microk8s"], "problems": []}


def test_snapd_is_never_downgraded() -> None:
    steps = microk8s_plan(SNAP_LIST, "install", ["snapd"], {"snapd": "20000"}, False)
    assert steps["install"] == []


def test_snap_list_and_assertion_parsing() -> None:
    assert microk8s.snap_list(SNAP_LIST)["microk8s"]["notes"] == "classic,held"
    assert microk8s_plan("type: snap-revision\nsnap-revision: 8611\n", "revision") == "8611"
    assert microk8s_plan("no revision here", "revision") == ""


def test_join_plan() -> None:
    nodes = ["cpu-0", "gpu-0", "gpu-1", "gpu-2"]
    plan = microk8s_plan(
        nodes, "join", "cpu-0", ["cpu-0", "gpu-0", "old-1"], ["gpu-0", "gpu-2"], []
    )
    assert plan == {"join": ["gpu-1"], "lost": ["gpu-2"], "remove": [], "strays": ["old-1"]}
    # A rerun: everyone is a node; nothing joins.
    again = microk8s_plan(nodes[:3], "join", "cpu-0", nodes[:3], ["gpu-0", "gpu-1"], [])
    assert again == {"join": [], "lost": [], "remove": [], "strays": []}
    removal = microk8s_plan(
        nodes[:2], "join", "cpu-0", ["cpu-0", "gpu-0", "old-1"], ["gpu-0"], ["old-1", "gone"]
    )
    assert removal["remove"] == ["old-1"] and removal["strays"] == []


def test_missing_addons() -> None:
    status = yaml.safe_dump(
        {
            "microk8s": {"running": True},
            "addons": [
                {"name": "dns", "status": "enabled"},
                {"name": "rbac", "status": "disabled"},
                {"name": "community", "status": "disabled"},
            ],
        }
    )
    wanted = ["dns:223.5.5.5", "rbac", "metrics-server"]
    assert microk8s_plan(status, "addons", wanted) == ["rbac", "metrics-server"]
    assert microk8s_plan("", "addons", wanted) == wanted


def test_label_changes_touch_only_owned_labels() -> None:
    want = {
        "cpu-0": {"chutes/external-ip": "10.0.0.1", "chutes/worker": None, "chutes/gpu-node": None},
        "gpu-0": {"chutes/external-ip": None, "chutes/worker": "true", "chutes/gpu-node": "true"},
        "gpu-9": {"chutes/worker": "true"},
    }
    now = {
        "cpu-0": {"chutes/external-ip": "10.0.0.1", "other": "x"},
        "gpu-0": {"chutes/external-ip": "10.0.0.2", "chutes/worker": "true"},
    }
    assert microk8s_plan(want, "labels", now) == {
        "gpu-0": ["chutes/external-ip-", "chutes/gpu-node=true"]
    }


def test_localregistry_names_are_lower_case_and_unique() -> None:
    names = microk8s_plan(
        [{"hotkey": HOTKEY}, {"hotkey": HOTKEY.lower()}], "localregistries", 30500
    )
    assert names == [f"{HOTKEY.lower()}.localregistry.chutes.ai:30500"]
