"""What the role renders for each node of a three-node cluster (cpu-0 primary, gpu-0 and
gpu-1 GPU workers): downloads through the mirrors, certificates, units, containerd, kubelet,
kube-proxy, the CNI config and the pod network between the nodes."""

from __future__ import annotations

import json
import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from tests.k8s_binaries.conftest import HOSTS, HOTKEY, LAB_MIRRORS, POD_CIDRS, ROLE, Render

NODES = list(HOSTS)


def unit_args(text: str) -> dict[str, str]:
    """--flag=value pairs of a unit's ExecStart."""
    exec_start = text.split("ExecStart=", 1)[1].split("\n\n", 1)[0]
    flags = [w for w in exec_start.replace("\\\n", " ").split() if w.startswith("--")]
    return dict(f[2:].split("=", 1) for f in flags)


def test_every_template_carries_the_managed_header() -> None:
    for path in sorted((ROLE / "templates").rglob("*.j2")):
        head = path.read_text().splitlines()[:3]
        assert any("ansible_managed" in line for line in head), path


def test_downloads_go_through_the_mirrors_and_only_where_needed() -> None:
    primary = Render("cpu-0").var("__k8s_binaries_my_artifacts")
    worker = Render("gpu-0").var("__k8s_binaries_my_artifacts")
    names = [a["name"] for a in primary]
    assert names == [
        "kubelet", "kube-proxy", "kubectl", "kube-apiserver", "kube-controller-manager",
        "kube-scheduler", "etcd", "containerd", "runc", "cni-plugins",
    ]  # fmt: skip
    assert [a["name"] for a in worker] == [
        "kubelet",
        "kube-proxy",
        "containerd",
        "runc",
        "cni-plugins",
    ]
    by_name = {a["name"]: a for a in primary}
    assert (
        by_name["kubelet"]["url"]
        == "http://10.89.77.2:8082/kubernetes/v1.34.4/bin/linux/amd64/kubelet"
    )
    assert by_name["etcd"]["url"] == (
        "http://10.89.77.2:8082/files/github.com/etcd-io/etcd/releases/download/v3.6.16/"
        "etcd-v3.6.16-linux-amd64.tar.gz"
    )
    assert by_name["etcd"]["checksum_urls"][1].endswith("/v3.6.16/SHA256SUMS")
    assert by_name["etcd"]["files"] == {
        "etcd-v3.6.16-linux-amd64/etcd": "/usr/local/bin/etcd",
        "etcd-v3.6.16-linux-amd64/etcdctl": "/usr/local/bin/etcdctl",
    }
    assert by_name["runc"]["dest"] == "/usr/local/sbin/runc"
    assert (
        by_name["containerd"]["files"]["bin/containerd-shim-runc-v2"]
        == "/usr/local/bin/containerd-shim-runc-v2"
    )
    assert sorted(by_name["cni-plugins"]["files"]) == [
        "bridge",
        "host-local",
        "loopback",
        "portmap",
    ]
    assert all("where" not in a and a["sha256"] == "" for a in primary)
    pinned = Render("gpu-0", {"k8s_binaries_checksums": {"runc": "ab" * 32}}).var(
        "__k8s_binaries_my_artifacts"
    )
    assert {a["name"]: a["sha256"] for a in pinned}["runc"] == "ab" * 32


def test_without_mirrors_the_upstream_urls_are_used() -> None:
    arts = Render("gpu-1", {"mirrors_effective": {}}).var("__k8s_binaries_my_artifacts")
    assert arts[0]["url"].startswith("https://dl.k8s.io/release/v1.34.4/bin/linux/amd64/")


def test_run_alone_it_reads_the_mirrors_roles_local_fact() -> None:
    """playbooks/kubernetes.yml on its own: no mirrors_effective in this run, but the fact file
    the mirrors role left on the host (ansible_local.chutes_mirrors) says the same."""
    facts = {"architecture": "x86_64", "ansible_local": {"chutes_mirrors": LAB_MIRRORS}}
    r = Render("gpu-1", {"ansible_facts": facts})
    r.templar.available_variables = {
        k: v for k, v in r.templar.available_variables.items() if k != "mirrors_effective"
    }
    arts = r.var("__k8s_binaries_my_artifacts")
    assert arts[0]["url"] == "http://10.89.77.2:8082/kubernetes/v1.34.4/bin/linux/amd64/kubelet"


def test_control_plane_units() -> None:
    r = Render("cpu-0")
    api = unit_args(r.file("etc/systemd/system/kube-apiserver.service.j2"))
    assert api["bind-address"] == api["advertise-address"] == "192.168.0.1"
    assert api["authorization-mode"] == "Node,RBAC"
    assert api["enable-admission-plugins"] == "NodeRestriction"
    assert api["service-cluster-ip-range"] == "10.152.183.0/24"
    assert api["secure-port"] == "6443"
    assert api["kubelet-certificate-authority"] == "/etc/kubernetes/pki/ca.crt"
    cm = unit_args(r.file("etc/systemd/system/kube-controller-manager.service.j2"))
    assert cm["allocate-node-cidrs"] == "true" and cm["cluster-cidr"] == "10.1.0.0/16"
    assert cm["node-cidr-mask-size"] == "24"
    etcd = unit_args(r.file("etc/systemd/system/etcd.service.j2"))
    assert etcd["listen-client-urls"] == "https://127.0.0.1:2379"
    assert etcd["initial-cluster"] == "cpu-0=https://192.168.0.1:2380"
    assert etcd["client-cert-auth"] == etcd["peer-client-cert-auth"] == "true"
    extra = Render(
        "cpu-0", {"k8s_binaries_apiserver_extra_args": {"audit-log-maxage": 7, "profiling": "true"}}
    )
    api = unit_args(extra.file("etc/systemd/system/kube-apiserver.service.j2"))
    assert api["audit-log-maxage"] == "7" and api["profiling"] == "true"


def test_apiserver_certificate_names() -> None:
    sans = Render(
        "cpu-0", {"k8s_binaries_apiserver_extra_sans": ["203.0.113.10", "api.example.cn", "DNS:x"]}
    ).var("__k8s_binaries_apiserver_sans")
    assert sans[:2] == ["IP:192.168.0.1", "IP:10.152.183.1"]
    assert "DNS:kubernetes.default.svc.cluster.local" in sans
    assert sans[-3:] == ["IP:203.0.113.10", "DNS:api.example.cn", "DNS:x"]


def test_node_certificates_name_the_node() -> None:
    certs = {c["name"]: c for c in Render("gpu-1").var("__k8s_binaries_node_certs")}
    assert certs["kubelet-client"]["cn"] == "system:node:gpu-1"
    assert certs["kubelet-client"]["o"] == "system:nodes"
    assert certs["kubelet-server"]["sans"] == ["IP:192.168.0.3", "DNS:gpu-1"]
    assert certs["kube-proxy"]["cn"] == "system:kube-proxy"


@pytest.mark.parametrize("host", NODES)
def test_containerd_config(host: str) -> None:
    config = tomllib.loads(Render(host).file("etc/containerd/config.toml.j2"))
    assert config["version"] == 3
    images = config["plugins"]["io.containerd.cri.v1.images"]
    assert images["registry"]["config_path"] == "/etc/containerd/certs.d"
    assert images["pinned_images"]["sandbox"] == "registry.k8s.io/pause:3.10.1"
    runc = config["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
    assert runc["options"] == {"BinaryName": "/usr/local/sbin/runc", "SystemdCgroup": True}
    assert config["imports"] == ["/etc/containerd/conf.d/*.toml"]
    assert config["plugins"]["io.containerd.cri.v1.runtime"]["restrict_oom_score_adj"] is False
    cgroupfs = tomllib.loads(
        Render(host, {"k8s_binaries_cgroup_driver": "cgroupfs"}).file(
            "etc/containerd/config.toml.j2"
        )
    )
    assert not cgroupfs["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"][
        "runc"
    ]["options"]["SystemdCgroup"]


def test_validator_local_registry_entry() -> None:
    r = Render("gpu-0")
    (name,) = r.var("__k8s_binaries_localregistries")
    assert name == HOTKEY.lower() + ".localregistry.chutes.ai:30500"
    hosts = tomllib.loads(r.file("etc/containerd/certs.d/localregistry.hosts.toml.j2", item=name))
    assert hosts == {
        "server": f"http://{name}",
        "host": {f"http://{name}": {"capabilities": ["pull", "resolve"]}},
    }
    assert Render("gpu-0", {"chutes_validators": []}).var("__k8s_binaries_localregistries") == []


def kubelet_config(host: str, inventory: dict[str, Any] | None = None) -> dict[str, Any]:
    text = Render(host, inventory).file("var/lib/kubelet/config.yaml.j2")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def test_kubelet_config_production_and_lab() -> None:
    config = kubelet_config("gpu-0")
    assert config["kind"] == "KubeletConfiguration"
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["cgroupDriver"] == "systemd" and config["failSwapOn"] is True
    assert "cgroupRoot" not in config
    assert config["clusterDNS"] == ["10.152.183.10"]
    assert config["tlsCertFile"] == "/var/lib/kubelet/pki/kubelet-server.crt"
    lab = kubelet_config(
        "gpu-0",
        {
            "k8s_binaries_kubelet_cgroup_root": "/kubelet",
            "k8s_binaries_kubelet_fail_swap_on": False,
            "k8s_binaries_kubelet_config_overrides": {"evictionHard": {"nodefs.available": "0%"}},
        },
    )
    assert lab["cgroupRoot"] == "/kubelet" and lab["failSwapOn"] is False
    assert lab["evictionHard"] == {"nodefs.available": "0%"}
    assert lab["authentication"] == config["authentication"]


def test_kube_proxy_config() -> None:
    config = yaml.safe_load(Render("gpu-1").file("var/lib/kube-proxy/config.yaml.j2"))
    assert config["mode"] == "iptables" and config["clusterCIDR"] == "10.1.0.0/16"
    assert config["hostnameOverride"] == "gpu-1"
    assert config["conntrack"] == {"maxPerCore": 32768}
    lab = yaml.safe_load(
        Render("gpu-1", {"k8s_binaries_kube_proxy_conntrack_max_per_core": 0}).file(
            "var/lib/kube-proxy/config.yaml.j2"
        )
    )
    assert lab["conntrack"] == {"maxPerCore": 0}


def test_kubeconfigs() -> None:
    r = Render("gpu-0")
    files = {f["name"] + ":" + f["kind"]: f for f in r.var("__k8s_binaries_node_files")}
    kubelet = yaml.safe_load(
        r.file("etc/kubernetes/kubeconfig.j2", item=files["kubelet:kubeconfig"])
    )
    assert kubelet["clusters"][0]["cluster"] == {
        "server": "https://192.168.0.1:6443",
        "certificate-authority": "/etc/kubernetes/pki/ca.crt",
    }
    assert kubelet["users"][0] == {
        "name": "system:node:gpu-0",
        "user": {
            "client-certificate": "/var/lib/kubelet/pki/kubelet-client.crt",
            "client-key": "/var/lib/kubelet/pki/kubelet-client.key",
        },
    }
    admin = yaml.safe_load(
        Render("cpu-0").file(
            "etc/kubernetes/kubeconfig.j2",
            item={
                "user": "kubernetes-admin",
                "embed": {"ca.crt": "Q0E=", "admin.crt": "Q1JU", "admin.key": "S0VZ"},
            },
        )
    )
    assert admin["users"][0]["user"] == {
        "client-certificate-data": "Q1JU",
        "client-key-data": "S0VZ",
    }
    assert admin["clusters"][0]["cluster"]["certificate-authority-data"] == "Q0E="


@pytest.mark.parametrize("host", NODES)
def test_cni_config_uses_the_nodes_pod_subnet(host: str) -> None:
    conf = json.loads(Render(host).file("etc/cni/net.d/10-chutes.conflist.j2"))
    bridge, portmap = conf["plugins"]
    assert bridge["ipam"]["ranges"] == [[{"subnet": POD_CIDRS[host]}]]
    assert bridge["mtu"] == 1330 and bridge["ipMasq"] is False
    assert portmap["type"] == "portmap"


@pytest.mark.parametrize("host", NODES)
def test_pod_network_routes_every_other_node_over_its_wireguard_address(host: str) -> None:
    script = Render(host).file("usr/local/sbin/chutes-pod-network.j2")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    for other, values in HOSTS.items():
        cidr = POD_CIDRS[other]
        route = f'ip route replace {cidr} via {cidr.split("/")[0]} dev "$dev" onlink'
        fdb = f'dev "$dev" dst {values["wireguard_address"]} self permanent'
        assert (route in script) == (other != host), (other, script)
        assert (fdb in script) == (other != host)
    assert f"local_ip={HOSTS[host]['wireguard_address']}" in script
    assert f"pods={POD_CIDRS[host]}" in script


def test_pod_network_script_passes_shellcheck() -> None:
    script = Render("cpu-0").file("usr/local/sbin/chutes-pod-network.j2")
    result = subprocess.run(
        ["shellcheck", "-s", "bash", "-"], input=script, text=True, capture_output=True
    )
    assert result.returncode == 0, result.stdout


def test_labels_follow_the_groups() -> None:
    net = Render("cpu-0").var("__k8s_binaries_net")
    assert net["cpu-0"]["labels"] == {
        "chutes/external-ip": "10.89.77.10",
        "chutes/worker": None,
        "chutes/gpu-node": None,
    }
    assert net["gpu-0"]["labels"] == {
        "chutes/external-ip": "10.89.77.11",
        "chutes/worker": "true",
        "chutes/gpu-node": "true",
    }


def test_label_changes_touch_only_what_differs() -> None:
    now = {
        "cpu-0": {"chutes/external-ip": "10.89.77.10", "chutes/worker": "true", "other": "x"},
        "gpu-0": {
            "chutes/external-ip": "10.89.77.11",
            "chutes/worker": "true",
            "chutes/gpu-node": "true",
        },
        "gpu-1": {"chutes/external-ip": "1.2.3.4"},
    }
    lines = [f"{name} {json.dumps(labels)}" for name, labels in now.items()]
    changes = Render("cpu-0").template(
        "{{ __k8s_binaries_label_changes }}", __k8s_binaries_node_list={"stdout_lines": lines}
    )
    assert changes == {
        "cpu-0": ["chutes/worker-"],
        "gpu-1": ["chutes/external-ip=10.89.77.12", "chutes/gpu-node=true", "chutes/worker=true"],
    }


def _restart(render: Render, service: str, **registered: Any) -> str:
    """The state the start tasks give a service (control_plane.yml, node.yml)."""
    task = yaml.safe_load((ROLE / "tasks" / "node.yml").read_text())[-1]
    state = task["ansible.builtin.systemd_service"]["state"]
    return str(render.template(state, item=service, **registered))


def test_only_services_whose_inputs_changed_restart() -> None:
    r = Render("cpu-0")
    nothing = {"__k8s_binaries_install": {"changed": False, "changed_files": []}}
    for service in ["etcd", "kube-apiserver", "kubelet", "containerd", "chutes-pod-network"]:
        assert _restart(r, service, **nothing) == "started"
    runc = {"__k8s_binaries_install": {"changed": True, "changed_files": ["/usr/local/sbin/runc"]}}
    assert _restart(r, "containerd", **runc) == "restarted"
    assert _restart(r, "kubelet", **runc) == "started"
    cert = {
        "__k8s_binaries_primary_certs_signed": {
            "results": [{"changed": True, "item": {"item": {"name": "apiserver"}}}]
        }
    }
    assert _restart(r, "kube-apiserver", **cert) == "restarted"
    assert _restart(r, "etcd", **cert) == "started"
    unit = {
        "__k8s_binaries_node_written": {
            "results": [
                {"changed": True, "item": {"kind": "config", "name": "kubelet"}},
                {"changed": False, "item": {"kind": "unit", "name": "kube-proxy"}},
            ]
        }
    }
    assert _restart(r, "kubelet", **unit) == "restarted"
    assert _restart(r, "kube-proxy", **unit) == "started"
