"""The cluster DNS the role deploys (tasks/dns.yml, templates/kubernetes/coredns/): what each
template renders, and the role's own diff and apply commands against a real API server (the
control-plane fixture): created on the first run, nothing to change on the second, RBAC no wider
than CoreDNS needs, and a pod spec the restricted Pod Security level admits."""

from __future__ import annotations

import hashlib
import secrets
import shlex
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.controlplane import ControlPlane, free_port
from tests.k8s_binaries.conftest import ROLE, Render

OBJECTS = [
    "serviceaccount",
    "clusterrole",
    "clusterrolebinding",
    "configmap",
    "service",
    "deployment",
]
KINDS = {
    "serviceaccount": "ServiceAccount",
    "clusterrole": "ClusterRole",
    "clusterrolebinding": "ClusterRoleBinding",
    "configmap": "ConfigMap",
    "service": "Service",
    "deployment": "Deployment",
}
SA = "system:serviceaccount:kube-system:coredns"


def objects(r: Render) -> dict[str, dict[str, Any]]:
    """Each template rendered and parsed: exactly one document each."""
    out = {}
    for name in r.var("__k8s_binaries_coredns_objects"):
        docs = [d for d in yaml.safe_load_all(r.file(f"kubernetes/coredns/{name}.yaml.j2")) if d]
        assert len(docs) == 1, name
        out[name] = docs[0]
    return out


def pod_spec(r: Render) -> dict[str, Any]:
    spec: dict[str, Any] = objects(r)["deployment"]["spec"]["template"]["spec"]
    return spec


def test_one_object_per_template_in_apply_order() -> None:
    r = Render("cpu-0")
    assert r.var("__k8s_binaries_coredns_objects") == OBJECTS
    assert sorted(
        p.name for p in (ROLE / "templates" / "kubernetes" / "coredns").iterdir()
    ) == sorted(f"{o}.yaml.j2" for o in OBJECTS)
    for name, obj in objects(r).items():
        assert obj["kind"] == KINDS[name]
        assert (
            obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "chutes.miner.k8s_binaries"
        )
        assert obj["metadata"].get("namespace", "kube-system") == "kube-system"


def test_service_is_the_address_kubelets_give_pods() -> None:
    r = Render("gpu-0")
    service = objects(r)["service"]
    kubelet = yaml.safe_load(r.file("var/lib/kubelet/config.yaml.j2"))
    assert service["metadata"]["name"] == "kube-dns"
    assert service["spec"]["clusterIP"] == "10.152.183.10" == kubelet["clusterDNS"][0]
    assert {(p["port"], p["protocol"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        (53, "UDP", "dns"),
        (53, "TCP", "dns-tcp"),
        (9153, "TCP", "metrics"),
    }
    assert service["spec"]["selector"] == {"k8s-app": "kube-dns"}
    chosen = Render("gpu-0", {"k8s_binaries_cluster_dns": "10.152.183.53"})
    assert objects(chosen)["service"]["spec"]["clusterIP"] == "10.152.183.53"
    assert yaml.safe_load(chosen.file("var/lib/kubelet/config.yaml.j2"))["clusterDNS"] == [
        "10.152.183.53"
    ]


def test_corefile_answers_the_cluster_domain_and_forwards_to_the_node() -> None:
    r = Render("cpu-0")
    corefile = objects(r)["configmap"]["data"]["Corefile"]
    lines = [line.strip() for line in corefile.splitlines()]
    assert lines[0] == ".:8053 {"
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in lines
    assert "forward . /etc/resolv.conf {" in lines
    for plugin in ("errors", "ready :8181", "health :8080 {", "cache 30", "loop"):
        assert plugin in lines, plugin
    # No resolver address anywhere: names outside the cluster go to the node's own resolvers.
    assert not [w for w in corefile.split() if w.count(".") == 3 and w.replace(".", "").isdigit()]
    other = objects(Render("cpu-0", {"k8s_binaries_cluster_domain": "chutes.internal"}))
    assert (
        "kubernetes chutes.internal in-addr.arpa ip6.arpa {"
        in other["configmap"]["data"]["Corefile"]
    )


def test_a_corefile_change_rolls_the_pods_and_nothing_else_does() -> None:
    def checksum(r: Render) -> str:
        objs = objects(r)
        annotation: str = objs["deployment"]["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]
        # The Corefile as the pods see it (the ConfigMap's value, which adds a final newline).
        assert annotation == hashlib.sha256(r.var("__k8s_binaries_corefile").encode()).hexdigest()
        return annotation

    base = checksum(Render("cpu-0"))
    assert checksum(Render("gpu-1")) == base
    assert checksum(Render("cpu-0", {"k8s_binaries_coredns_replicas": 3})) == base
    assert checksum(Render("cpu-0", {"k8s_binaries_cluster_domain": "chutes.internal"})) != base


def test_deployment_is_unprivileged_and_probed() -> None:
    r = Render("cpu-0")
    deployment = objects(r)["deployment"]
    assert deployment["spec"]["replicas"] == 2
    spec = pod_spec(r)
    assert spec["dnsPolicy"] == "Default"  # the node's resolv.conf, the forward target
    assert spec["serviceAccountName"] == "coredns"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    (container,) = spec["containers"]
    assert container["image"] == "registry.k8s.io/coredns/coredns:v1.13.2"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert all(p["containerPort"] >= 1024 for p in container["ports"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8181}
    assert container["resources"]["limits"] == {"memory": "170Mi"}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "70Mi"}
    assert container["volumeMounts"] == [
        {"name": "config", "mountPath": "/etc/coredns", "readOnly": True}
    ]
    moved = Render(
        "cpu-0",
        {
            "k8s_binaries_coredns_image": "10.89.77.2:5000/coredns/coredns:v1.13.2",
            "k8s_binaries_coredns_replicas": 1,
        },
    )
    assert pod_spec(moved)["containers"][0]["image"] == "10.89.77.2:5000/coredns/coredns:v1.13.2"
    assert objects(moved)["deployment"]["spec"]["replicas"] == 1


def test_clusterrole_reads_only_what_the_kubernetes_plugin_watches() -> None:
    objs = objects(Render("cpu-0"))
    assert objs["clusterrole"]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["endpoints", "services", "pods", "namespaces"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
    ]
    binding = objs["clusterrolebinding"]
    assert binding["roleRef"]["name"] == objs["clusterrole"]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}
    ]


# -- against a real API server ----------------------------------------------------------------


def role_commands(r: Render) -> dict[str, list[str]]:
    """The diff and apply commands of tasks/dns.yml, rendered as the role runs them."""
    tasks = yaml.safe_load((ROLE / "tasks" / "dns.yml").read_text())
    out = {}
    for task in tasks:
        cmd = task.get("ansible.builtin.command")
        if isinstance(cmd, dict) and "stdin" in cmd:
            verb = "diff" if " diff " in cmd["cmd"] else "apply"
            out[verb] = shlex.split(str(r.template(cmd["cmd"])))
    assert sorted(out) == ["apply", "diff"]
    return out


def run(argv: list[str], manifest: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=manifest, capture_output=True, text=True, timeout=60)


def test_role_applies_once_and_then_changes_nothing(control_plane: ControlPlane) -> None:
    kubectl = f"{control_plane.bin_dir / 'kubectl'} --kubeconfig {control_plane.kubeconfig}"
    # The fixture's Service network; the tenth address is the cluster DNS, as on a node.
    r = Render(
        "cpu-0", {"k8s_binaries_service_cidr": "10.96.0.0/16"}, __k8s_binaries_kubectl=kubectl
    )
    commands = role_commands(r)
    manifests = {o: r.file(f"kubernetes/coredns/{o}.yaml.j2") for o in OBJECTS}
    names = [
        "-n", "kube-system", "serviceaccount/coredns", "configmap/coredns", "service/kube-dns",
        "deployment/coredns", "clusterrole/chutes:coredns", "clusterrolebinding/chutes:coredns",
    ]  # fmt: skip
    # A fresh cluster as far as CoreDNS goes (other tests of this session apply its RBAC).
    control_plane.kubectl("delete", "--ignore-not-found", "--wait=true", *names)

    first = {o: run(commands["diff"], m) for o, m in manifests.items()}
    assert {o: d.returncode for o, d in first.items()} == dict.fromkeys(OBJECTS, 1), first
    for o, m in manifests.items():
        done = run(commands["apply"], m)
        assert done.returncode == 0, (o, done.stderr)

    def state() -> dict[str, str]:
        """What a rerun must not touch: every object's spec generation (resourceVersion moves
        with the Deployment's status), the Service address, and the ReplicaSets: a new one
        would mean a rollout, i.e. restarted pods."""
        got = control_plane.kubectl(
            "get", *names, "-o",
            "jsonpath={range .items[*]}{.kind} {.metadata.uid}/{.metadata.generation}"
            "/{.spec.clusterIP}{'\\n'}{end}",
        ).stdout  # fmt: skip
        out = dict(line.split() for line in got.splitlines())
        rs = control_plane.kubectl(
            "get", "replicasets", "-n", "kube-system", "-l", "k8s-app=kube-dns",
            "-o", "jsonpath={.items[*].metadata.name}",
        ).stdout  # fmt: skip
        out["ReplicaSets"] = rs
        return out

    applied = state()
    assert len(applied) == 7 and len(applied["ReplicaSets"].split()) == 1, applied
    assert applied["Service"].endswith("/10.96.0.10"), applied
    # The second run: every diff empty, so the role applies nothing and nothing is rewritten.
    second = {o: run(commands["diff"], m) for o, m in manifests.items()}
    assert {o: d.returncode for o, d in second.items()} == dict.fromkeys(OBJECTS, 0), second
    # Applied anyway, the same objects change nothing either.
    for o, m in manifests.items():
        assert run(commands["apply"], m).returncode == 0, o
    assert state() == applied
    # A changed Corefile is one diff (the ConfigMap, and the Deployment through its checksum).
    other = Render(
        "cpu-0",
        {
            "k8s_binaries_service_cidr": "10.96.0.0/16",
            "k8s_binaries_cluster_domain": "chutes.internal",
        },
        __k8s_binaries_kubectl=kubectl,
    )
    changed = {
        o
        for o in OBJECTS
        if run(commands["diff"], other.file(f"kubernetes/coredns/{o}.yaml.j2")).returncode == 1
    }
    assert changed == {"configmap", "deployment"}


@pytest.fixture(scope="module")
def coredns_rbac(control_plane: ControlPlane) -> ControlPlane:
    """The account, its ClusterRole and the binding, applied as the role applies them."""
    r = Render("cpu-0", {"k8s_binaries_service_cidr": "10.96.0.0/16"})
    for o in ("serviceaccount", "clusterrole", "clusterrolebinding"):
        control_plane.apply(r.file(f"kubernetes/coredns/{o}.yaml.j2"), "chutes.miner.k8s_binaries")
    return control_plane


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("list", "services", True),
        ("watch", "services", True),
        ("list", "endpointslices.discovery.k8s.io", True),
        ("watch", "endpointslices.discovery.k8s.io", True),
        ("list", "endpoints", True),
        ("watch", "pods", True),
        ("list", "namespaces", True),
        ("get", "services", False),
        ("list", "secrets", False),
        ("get", "configmaps", False),
        ("create", "services", False),
        ("delete", "pods", False),
        ("update", "endpointslices.discovery.k8s.io", False),
        ("list", "nodes", False),
    ],
)
def test_coredns_account_reads_only_what_it_needs(
    coredns_rbac: ControlPlane, verb: str, resource: str, allowed: bool
) -> None:
    assert coredns_rbac.can_i(verb, resource, as_user=SA) is allowed


def test_pod_spec_meets_the_restricted_pod_security_level(control_plane: ControlPlane) -> None:
    """The API server's own Pod Security admission, enforcing `restricted`, admits the CoreDNS
    pod (a server-side dry run in a namespace of its own; the account and the priority class
    belong to kube-system and say nothing about privileges)."""
    ns = "coredns-psa"
    control_plane.apply(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                },
            }
        )
    )
    spec = {
        k: v
        for k, v in pod_spec(Render("cpu-0")).items()
        if k not in ("serviceAccountName", "priorityClassName")
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "coredns", "namespace": ns},
        "spec": spec,
    }
    done = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod), check=False
    )
    assert done.returncode == 0, done.stderr
    # The same check refuses a root container: the admission above was a real one.
    spec["securityContext"] = {**spec["securityContext"], "runAsNonRoot": False}
    refused = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod), check=False
    )
    assert refused.returncode != 0 and "restricted" in refused.stderr, refused.stderr


def dns_query(port: int, name: str, qtype: int = 1) -> tuple[int, list[str]]:
    """One UDP query to 127.0.0.1:port: (response code, A record addresses)."""
    qid = secrets.randbits(16)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = (
        struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", qtype, 1)
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for attempt in range(3):  # UDP: a resolver retries too
            s.sendto(packet, ("127.0.0.1", port))
            try:
                data = s.recv(4096)
                break
            except TimeoutError:
                if attempt == 2:
                    raise
    rid, flags, _, ancount = struct.unpack(">HHHH", data[:8])
    assert rid == qid
    pos = 12 + len(question) + 4
    addresses = []
    for _ in range(ancount):
        pos += 2 if data[pos] & 0xC0 == 0xC0 else len(data[pos:].split(b"\0", 1)[0]) + 1
        rtype, _, _, rdlength = struct.unpack(">HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1:
            addresses.append(socket.inet_ntoa(data[pos : pos + rdlength]))
        pos += rdlength
    return flags & 0xF, addresses


def test_coredns_answers_service_names_from_the_api_with_its_own_account(
    coredns_rbac: ControlPlane, tmp_path: Path
) -> None:
    """The CoreDNS binary the lab builds, with the role's Corefile and the ServiceAccount's token
    (the ClusterRole is all it has), against the real API server: ready once its watches are
    synced, and a Service name resolves to the ClusterIP the API allocated."""
    cp = coredns_rbac
    coredns = cp.bin_dir / "coredns"
    assert coredns.is_file(), f"{coredns} missing: run make k8s-bin (tests/lab/k8s/build.sh)"
    cp.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: dns-probe}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: dns-probe}\n"
        "spec: {selector: {app: web}, ports: [{port: 80}]}\n"
    )
    cluster_ip = cp.kubectl(
        "get", "-n", "dns-probe", "service/web", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    kubeconfig = cp.token_kubeconfig(
        tmp_path / "coredns.kubeconfig", cp.token("kube-system", "coredns")
    )
    dns, health, ready, metrics = (free_port() for _ in range(4))
    corefile = (
        str(Render("cpu-0").var("__k8s_binaries_corefile"))
        .replace(".:8053 {", f".:{dns} {{\n    bind 127.0.0.1")
        .replace("health :8080", f"health 127.0.0.1:{health}")
        .replace("ready :8181", f"ready 127.0.0.1:{ready}")
        .replace("prometheus :9153", f"prometheus 127.0.0.1:{metrics}")
        .replace("ip6.arpa {", f"ip6.arpa {{\n        kubeconfig {kubeconfig} chutes-test", 1)
    )
    assert f"kubeconfig {kubeconfig}" in corefile and f":{dns} {{" in corefile
    (tmp_path / "Corefile").write_text(corefile)
    proc = subprocess.Popen(
        [str(coredns), "-conf", str(tmp_path / "Corefile"), "-dns.port", str(dns)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ready}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "CoreDNS never became ready"
            time.sleep(0.3)
        answers = [
            dns_query(dns, "web.dns-probe.svc.cluster.local"),
            dns_query(dns, "absent.dns-probe.svc.cluster.local"),
        ]
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=15)
    assert answers == [(0, [cluster_ip]), (3, [])], output  # NOERROR with the address, NXDOMAIN
    # Its account could do all it needed: no watch was refused.
    assert "forbidden" not in output.lower(), output
