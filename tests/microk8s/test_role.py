"""chutes.miner.microk8s run for real by playbooks/kubernetes.yml on two test nodes (mk-a the
primary, mk-b a GPU worker) that are copy-on-write roots of this machine in a private mount
and network namespace (tests/sandbox/run.sh), reached with the chroot connection. The
Snap Store, snapd and microk8s cannot exist here: small stand-ins named `snap` and
`microk8s` (tests/microk8s/standins) record every call and keep the state the role reads. The
offline bundle (fake snaps with real assertion revisions and SHA256SUMS) is served over http.

What this proves: /etc/microk8s.yaml exists (with the mirrors and resolvers) before the first
`snap install`; ack before install, base before microk8s, `--classic`, `refresh --hold`; the
worker joins the primary's node address with the token the role registered; labels and
kubeconfig per the contract; a rerun and a check-mode run change nothing and call no install,
add-node or join; a tampered bundle and bad inputs stop the run before any snap is installed,
with messages in English and Chinese. What it cannot prove: that real microk8s accepts these
files and commands (a host with the real bundle does).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.ansible_env import REPO
from tests.sandbox import (
    calls,
    failed_msgs,
    install,
    inventory_hosts,
    needs_namespaces,
    play,
    written,
)

PLAYBOOK = REPO / "playbooks" / "kubernetes.yml"
STANDINS = Path(__file__).resolve().parent / "standins"
HOTKEY = "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ"
LOCALREG = f"{HOTKEY.lower()}.localregistry.chutes.ai:30500"
NODES = {"mk-a": "192.168.0.1", "mk-b": "192.168.0.2"}
REVISIONS = {"snapd": "23771", "core22": "1748", "microk8s": "8611"}

pytestmark = needs_namespaces


def _setup(work: Path, tamper: str = "") -> None:
    """The stand-ins in every node, and the offline bundle on the test web server."""
    install(work, STANDINS / "snap", "/usr/bin/snap")
    install(work, STANDINS / "microk8s", "/usr/local/share/standin/microk8s")
    # The directory the snapd package ships (the stand-in replaces snapd).
    (work / "setup/all/var/lib/snapd/snap").mkdir(parents=True, exist_ok=True)
    directory = work / "www"
    directory.mkdir(parents=True, exist_ok=True)
    sums = []
    for snap, rev in REVISIONS.items():
        files = {
            f"{snap}.snap": f"stand-in {snap} snap, revision {rev}\n".encode(),
            f"{snap}.assert": (
                f"type: snap-revision\nsnap-name: {snap}\nsnap-revision: {rev}\n".encode()
            ),
        }
        for name, data in files.items():
            (directory / name).write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            sums.append(f"{'0' * 64 if name == tamper else digest}  {name}")
    (directory / "SHA256SUMS").write_text("\n".join(sums) + "\n")


def _inventory(work: Path, **extra: Any) -> Path:
    hosts = inventory_hosts(work, NODES)
    hosts = {
        name: {
            **hosts[name],
            "wireguard_address": ip,
            "chutes_external_ip": f"203.0.113.{ip.rsplit('.', 1)[1]}",
        }
        for name, ip in NODES.items()
    }
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "community.general.chroot",
                "ansible_python_interpreter": sys.executable,
                "wireguard_network": "192.168.0.0/20",
                "chutes_validators": [{"hotkey": HOTKEY}],
                "microk8s_bundle_url": "http://127.0.0.1:8717/",
                "mirrors_effective": {
                    "profile": "custom",
                    "registries": {"docker.io": ["https://docker.m.daocloud.io"]},
                    "registry_upstreams": {"docker.io": "https://registry-1.docker.io"},
                    "dns": ["223.5.5.5", "119.29.29.29"],
                },
                **extra,
            },
            "children": {
                "chutes_primary": {"hosts": {"mk-a": hosts["mk-a"]}},
                "chutes_workers": {"hosts": {"mk-b": hosts["mk-b"]}},
                "chutes_gpu": {"hosts": {"mk-b": {}}},
            },
        }
    }
    path = work / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def _snap(work: Path, node: str) -> list[dict[str, Any]]:
    return calls(work, node, "/var/log/standin-snap.log")


def _mk(work: Path, node: str) -> list[dict[str, Any]]:
    return calls(work, node, "/var/log/standin-microk8s.log")


def _play(work: Path, inventory: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    return play(work, NODES, inventory, PLAYBOOK, *args)


def _converge_rerun_check(work: Path) -> dict[str, Any]:
    _setup(work)
    inventory = _inventory(work)
    runs = {}
    snap_calls = {}
    for name, args in (("converge", ()), ("rerun", ()), ("check", ("--check",))):
        rc, report, tail = _play(work, inventory, *args)
        assert rc == 0, (name, failed_msgs(report), tail)
        runs[name] = report
        snap_calls[name] = {n: len(_snap(work, n)) for n in NODES}
    return {"work": work, "runs": runs, "snap_calls": snap_calls}


def _check_launch_config_is_written_before_the_first_install(cluster: dict[str, Any]) -> None:
    work = cluster["work"]
    for node in NODES:
        recorded = _snap(work, node)
        hooks = [c["install_hook"] for c in recorded if "install_hook" in c]
        assert len(hooks) == 1 and hooks[0]["launch_config_present"], recorded
        text = written(work, node, "/etc/microk8s.yaml").read_text()
        assert hooks[0]["launch_config_sha256"] == hashlib.sha256(text.encode()).hexdigest()


def _check_ack_then_install_snapd_base_microk8s_classic_then_hold(cluster: dict[str, Any]) -> None:
    bundle = "/var/lib/chutes-miner/snaps"
    for node in NODES:
        argvs = [c["argv"] for c in _snap(cluster["work"], node) if "argv" in c]
        changes = [a for a in argvs if a[0] != "list"]
        assert changes == [
            ["ack", f"{bundle}/snapd.assert"],
            ["install", f"{bundle}/snapd.snap"],
            ["ack", f"{bundle}/core22.assert"],
            ["install", f"{bundle}/core22.snap"],
            ["ack", f"{bundle}/microk8s.assert"],
            ["install", f"{bundle}/microk8s.snap", "--classic"],
            ["refresh", "--hold", "microk8s"],
        ], argvs


def _check_launch_configs(cluster: dict[str, Any]) -> None:
    work = cluster["work"]
    primary = yaml.safe_load(written(work, "mk-a", "/etc/microk8s.yaml").read_text())
    worker = yaml.safe_load(written(work, "mk-b", "/etc/microk8s.yaml").read_text())
    assert primary["addons"] == [
        {"name": "dns", "args": ["223.5.5.5,119.29.29.29"]},
        {"name": "rbac"},
    ]
    assert worker["addons"] == []
    assert worker["extraKubeletArgs"]["--node-ip"] == "192.168.0.2"
    assert worker["extraKubeletArgs"]["--hostname-override"] == "mk-b"
    assert primary["extraKubeAPIServerArgs"]["--advertise-address"] == "192.168.0.1"
    regs = primary["containerdRegistryConfigs"]
    assert sorted(regs) == sorted(["docker.io", LOCALREG])
    assert '[host."https://docker.m.daocloud.io"]' in regs["docker.io"]
    assert oct(written(work, "mk-a", "/etc/microk8s.yaml").stat().st_mode & 0o777) == "0o600"


def _check_registry_entries_in_certs_d(cluster: dict[str, Any]) -> None:
    certs = "/var/snap/microk8s/current/args/certs.d"
    for node in NODES:
        own = written(cluster["work"], node, f"{certs}/{LOCALREG}/hosts.toml").read_text()
        assert own.startswith("# managed-by: chutes.miner.microk8s")
        assert f'server = "http://{LOCALREG}"' in own
        mirror = written(cluster["work"], node, f"{certs}/docker.io/hosts.toml").read_text()
        assert "docker.m.daocloud.io" in mirror


def _check_worker_joins_the_primary_over_its_node_address_once(cluster: dict[str, Any]) -> None:
    work = cluster["work"]
    joins = [c["argv"] for c in _mk(work, "mk-b") if c["argv"][0] == "join"]
    assert len(joins) == 1
    where, token, check = joins[0][1].split("/")
    assert where == "192.168.0.1:25000" and len(token) == 32 and joins[0][2] == "--worker"
    adds = [c["argv"] for c in _mk(work, "mk-a") if c["argv"][0] == "add-node"]
    assert adds == [["add-node", "--token", token, "--token-ttl", "300", "--format", "token-check"]]
    assert not any(c["argv"][0] == "join" for c in _mk(work, "mk-a"))
    assert written(work, "mk-b", "/var/snap/microk8s/current/var/lock/clustered.lock").exists()


def _check_addons_labels_and_contract(cluster: dict[str, Any]) -> None:
    work = cluster["work"]
    state = json.loads((work / "shared" / "cluster.json").read_text())
    assert state["addons"] == {"dns": "223.5.5.5,119.29.29.29", "rbac": ""}
    assert state["nodes"]["mk-a"] == {
        "kubernetes.io/hostname": "mk-a",
        "chutes/external-ip": "203.0.113.1",
    }
    assert state["nodes"]["mk-b"] == {
        "kubernetes.io/hostname": "mk-b",
        "chutes/external-ip": "203.0.113.2",
        "chutes/worker": "true",
        "chutes/gpu-node": "true",
    }
    kubeconfig = written(work, "mk-a", "/etc/chutes-miner/kubeconfig/admin.conf")
    assert "server: https://192.168.0.1:16443" in kubeconfig.read_text()
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert not written(work, "mk-b", "/etc/chutes-miner/kubeconfig/admin.conf").exists()
    facts = {}
    for run in cluster["runs"]["converge"]["plays"]:
        for task in run["tasks"]:
            if task["task"]["name"].endswith(
                "Export the common Kubernetes contract for later roles"
            ):
                facts = task["hosts"]["mk-b"]["ansible_facts"]
    assert facts["chutes_kubernetes_api"] == "https://192.168.0.1:16443"
    assert facts["chutes_containerd_certs_dir"] == "/var/snap/microk8s/current/args/certs.d"
    assert facts["chutes_cluster_dns"] == "10.152.183.10"


def _check_a_rerun_and_a_check_run_change_nothing(cluster: dict[str, Any], run: str) -> None:
    stats = cluster["runs"][run]["stats"]
    assert {n: stats[n]["changed"] for n in NODES} == dict.fromkeys(NODES, 0)
    before = cluster["snap_calls"]["converge" if run == "rerun" else "rerun"]
    work = cluster["work"]
    for node in NODES:
        new = _snap(work, node)[before[node] :]
        assert all(c.get("argv", ["list"])[0] == "list" for c in new), new
    m_calls = [c["argv"][0] for n in NODES for c in _mk(work, n)]
    assert m_calls.count("join") == 1 and m_calls.count("add-node") == 1


def test_install_join_rerun_and_check_mode(tmp_path: Path) -> None:
    # One test, not one per check: under pytest-xdist a module fixture would converge the
    # nodes once per worker.
    cluster = _converge_rerun_check(tmp_path)
    _check_launch_config_is_written_before_the_first_install(cluster)
    _check_ack_then_install_snapd_base_microk8s_classic_then_hold(cluster)
    _check_launch_configs(cluster)
    _check_registry_entries_in_certs_d(cluster)
    _check_worker_joins_the_primary_over_its_node_address_once(cluster)
    _check_addons_labels_and_contract(cluster)
    for run in ("rerun", "check"):
        _check_a_rerun_and_a_check_run_change_nothing(cluster, run)


def test_a_tampered_bundle_installs_nothing(tmp_path: Path) -> None:
    _setup(tmp_path, tamper="microk8s.snap")
    rc, report, tail = _play(tmp_path, _inventory(tmp_path))
    assert rc != 0, tail
    msg = failed_msgs(report)
    assert "bundle file(s) failed, nothing was installed" in msg, msg
    assert "microk8s.snap" in msg and "未安装任何内容" in msg
    for node in NODES:
        assert not [c for c in _snap(tmp_path, node) if c.get("argv", [""])[0] != "list"]
        assert not written(tmp_path, node, "/etc/microk8s.yaml").exists()


def test_bad_inputs_are_refused_before_anything_is_touched(tmp_path: Path) -> None:
    _setup(tmp_path)
    inventory = _inventory(
        tmp_path, microk8s_dns_upstreams=[], microk8s_addons=["community"], microk8s_token_ttl=1
    )
    rc, report, tail = _play(tmp_path, inventory)
    assert rc != 0, tail
    msg = failed_msgs(report)
    assert "3 problem(s), nothing was changed" in msg and "未做任何更改" in msg, msg
    assert "microk8s_dns_upstreams is empty" in msg and "community is not allowed" in msg
    for node in NODES:
        assert _snap(tmp_path, node) == []
        assert not (tmp_path / "upper" / node / "etc" / "microk8s.yaml").exists()
