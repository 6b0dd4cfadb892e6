"""Policy over the rendered manifest set: what every workload must have, ports that agree
between Services, containers, probes and NetworkPolicies, references that resolve inside the
set, and the NetworkPolicies that keep the registry-auth listener, PostgreSQL and Redis to the
pods that need them."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from tests.components.conftest import GPU_ADDRESS, Rendered

WORKLOADS = ("Deployment", "DaemonSet", "Job")
# The one documented exception to "no host namespaces": the registry proxy binds loopback in
# the GPU nodes' host network (miner_registry_proxy README).
HOST_NETWORK = {("DaemonSet", "registry")}
MINER_COMPONENTS = {"api", "migrate", "relay", "registry-auth", "gepetto"}


def pods(rendered: Rendered) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every workload in the set."""
    return [(w, w["spec"]["template"]) for w in rendered.of_kind(*WORKLOADS)]


def containers(rendered: Rendered) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for workload, pod in pods(rendered):
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            out.append((name, c, pod))
    return out


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_container_has_resources(rendered: Rendered) -> None:
    for name, c, _ in containers(rendered):
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"].get(part, {})), (name, part)


def test_long_running_containers_have_probes_on_declared_ports(rendered: Rendered) -> None:
    for name, c, _ in containers(rendered):
        if name.startswith("Job/"):
            continue
        ports = {p.get("name") for p in c.get("ports", [])} | {
            p["containerPort"] for p in c.get("ports", [])
        }
        for probe in ("readinessProbe", "livenessProbe"):
            assert probe in c, (name, probe)
            action = c[probe]
            port = (action.get("httpGet") or action.get("tcpSocket") or {}).get("port")
            assert port is None and "exec" in action or port in ports, (name, probe, port)


def test_images_are_pinned_below_one_registry_prefix(rendered: Rendered) -> None:
    seen = set()
    for name, c, _ in containers(rendered):
        image = c["image"]
        seen.add(image)
        assert image.startswith("registry.example.cn/chutes/"), (name, image)
        tag = image.rsplit("/", 1)[1].split("@")[0].partition(":")[2]
        assert tag and tag != "latest", (name, image)
        assert c["imagePullPolicy"] == "IfNotPresent", name
    graval = rendered.get("ConfigMap", "graval-bootstrap")["data"]["GRAVAL_BOOTSTRAP_IMAGE"]
    assert graval.startswith("registry.example.cn/chutes/") and not graval.endswith(":latest")
    assert len(seen) == 4  # control-api, postgres, redis, nginx


def test_nothing_privileged_and_host_network_only_where_documented(rendered: Rendered) -> None:
    for workload, pod in pods(rendered):
        key = (workload["kind"], workload["metadata"]["name"])
        spec = pod["spec"]
        assert bool(spec.get("hostNetwork")) == (key in HOST_NETWORK), key
        assert not spec.get("hostPID") and not spec.get("hostIPC"), key
        for c in spec["containers"]:
            ctx = c.get("securityContext", {})
            assert ctx.get("privileged") is False, key
            assert ctx.get("allowPrivilegeEscalation") is False, key
            assert not ctx.get("capabilities", {}).get("add"), key
    proxy = rendered.get("DaemonSet", "registry")["spec"]["template"]["spec"]
    assert proxy["securityContext"]["runAsNonRoot"] is True
    nginx = proxy["containers"][0]["securityContext"]
    assert nginx["readOnlyRootFilesystem"] is True and nginx["capabilities"]["drop"] == ["ALL"]


def test_only_the_api_and_scheduler_accounts_get_a_token(rendered: Rendered) -> None:
    accounts = {a["metadata"]["name"]: a for a in rendered.of_kind("ServiceAccount")}
    for workload, pod in pods(rendered):
        spec = pod["spec"]
        account = spec["serviceAccountName"]
        assert account in accounts, (workload["metadata"]["name"], account)
        mounts = spec.get("automountServiceAccountToken", True) and accounts[account].get(
            "automountServiceAccountToken", True
        )
        assert mounts == (account in ("control-api", "gepetto")), account
    assert accounts["default"]["automountServiceAccountToken"] is False


def test_every_referenced_secret_and_configmap_is_in_the_set(rendered: Rendered) -> None:
    secrets = {s["metadata"]["name"]: s for s in rendered.of_kind("Secret")}
    configmaps = {c["metadata"]["name"]: c for c in rendered.of_kind("ConfigMap")}
    refs = 0
    for name, c, pod in containers(rendered):
        for env in c.get("env", []):
            ref = env.get("valueFrom", {})
            if "secretKeyRef" in ref:
                s = ref["secretKeyRef"]
                assert s["key"] in secrets[s["name"]]["data"], (name, s)
                refs += 1
            if "configMapKeyRef" in ref:
                m = ref["configMapKeyRef"]
                assert m["key"] in configmaps[m["name"]]["data"], (name, m)
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps, name
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets, name
        for volume in pod["spec"].get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, name
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, name
    assert refs >= 20


def test_dependent_variables_are_defined_before_use(rendered: Rendered) -> None:
    """$(VAR) in env values and args is expanded by the kubelet only from earlier entries."""
    for name, c, _ in containers(rendered):
        defined: set[str] = set()
        for env in c.get("env", []):
            for used in re.findall(r"\$\((\w+)\)", env.get("value", "")):
                assert used in defined, (name, env["name"], used)
            defined.add(env["name"])
        for arg in c.get("args", []):
            for used in re.findall(r"\$\((\w+)\)", arg):
                assert used in defined, (name, used)


def test_services_reach_a_declared_container_port(rendered: Rendered) -> None:
    for svc in rendered.of_kind("Service"):
        selected = [
            (w, pod)
            for w, pod in pods(rendered)
            if matches(svc["spec"]["selector"], pod["metadata"]["labels"])
        ]
        assert [w["kind"] for w, _ in selected] == ["Deployment"], svc["metadata"]["name"]
        ports = selected[0][1]["spec"]["containers"][0]["ports"]
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert any(target in (p["name"], p["containerPort"]) for p in ports), (svc, target)
    api = rendered.get("Service", "api")
    assert api["spec"]["type"] == "NodePort" and api["spec"]["externalTrafficPolicy"] == "Local"
    assert api["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "nodePort": 32000, "protocol": "TCP"}
    ]
    internal = rendered.get("Service", "api-internal")
    assert internal["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in internal["spec"]["ports"]] == [8001]
    # the proxy's URL names that Service and port
    auth_url = "http://api-internal.chutes.svc.cluster.local:8001/registry/auth"
    assert auth_url in rendered.get("ConfigMap", "registry-nginx-config")["data"]["nginx.conf"]


def test_registry_proxy_listens_on_loopback_at_the_registry_port(rendered: Rendered) -> None:
    proxy = rendered.get("DaemonSet", "registry")["spec"]["template"]["spec"]
    nginx = proxy["containers"][0]
    assert nginx["ports"] == [
        {"name": "registry", "containerPort": 30500, "hostPort": 30500, "protocol": "TCP"}
    ]
    for probe in ("readinessProbe", "livenessProbe"):
        assert nginx[probe]["httpGet"]["host"] == "127.0.0.1"
        assert nginx[probe]["httpGet"]["path"] == "/healthz"
    assert proxy["nodeSelector"] == {"chutes/gpu-node": "true"}
    conf = rendered.get("ConfigMap", "registry-nginx-config")["data"]["nginx.conf"]
    assert "listen 127.0.0.1:30500 default_server;" in conf
    assert "X-Registry-Auth-Token" not in conf.replace("# ", "")  # the token is in the Secret
    config = rendered.get("ConfigMap", "miner-api-config")["data"]
    assert config["REGISTRY_PROXY_PORT"] == "30500"


def _policies_for(rendered: Rendered, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        p
        for p in rendered.of_kind("NetworkPolicy")
        if matches(p["spec"]["podSelector"].get("matchLabels", {}), labels)
    ]


def _pod_labels(rendered: Rendered, name: str) -> dict[str, str]:
    labels: dict[str, dict[str, str]] = {
        w["metadata"]["name"]: pod["metadata"]["labels"] for w, pod in pods(rendered)
    }
    return labels[name]


def test_registry_auth_is_reachable_only_from_the_registry_proxy(rendered: Rendered) -> None:
    (policy,) = _policies_for(rendered, _pod_labels(rendered, "registry-auth"))
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8001}]
    peers = rule["from"]
    selectors = [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p]
    blocks = [p["ipBlock"]["cidr"] for p in peers if "ipBlock" in p]
    assert len(selectors) + len(blocks) == len(peers)  # no namespaceSelector, nothing else
    proxy_labels = _pod_labels(rendered, "registry")
    for selector in selectors:
        admitted = [
            n
            for w, pod in pods(rendered)
            if matches(selector, pod["metadata"]["labels"])
            for n in [w["metadata"]["name"]]
        ]
        assert admitted == ["registry"] and matches(selector, proxy_labels)
    assert blocks == [f"{GPU_ADDRESS}/32"]  # the GPU node's own address, nothing wider
    for cidr in blocks:
        assert ipaddress.ip_network(cidr).num_addresses == 1


def _admitted(rendered: Rendered, policy: dict[str, Any], port: int) -> list[str]:
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}  # same namespace, no ipBlock
    selector = peer["podSelector"]["matchLabels"]
    return sorted(
        w["metadata"]["name"]
        for w, pod in pods(rendered)
        if matches(selector, pod["metadata"]["labels"])
    )


def test_postgres_and_redis_only_from_miner_components(rendered: Rendered) -> None:
    (pg,) = _policies_for(rendered, _pod_labels(rendered, "postgres"))
    jobs = {j["metadata"]["name"] for j in rendered.of_kind("Job")}
    assert _admitted(rendered, pg, 5432) == sorted({"api", "gepetto"} | jobs)
    (redis,) = _policies_for(rendered, _pod_labels(rendered, "redis"))
    assert _admitted(rendered, redis, 6379) == ["api", "gepetto", "relay"]
    for policy in (pg, redis):
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        (egress,) = policy["spec"]["egress"]
        assert {p["port"] for p in egress["ports"]} == {53} and "to" not in egress
    admitted = set(_admitted(rendered, pg, 5432)) | set(_admitted(rendered, redis, 6379))
    names = {"migrate" if n.startswith("migrate-") else n for n in admitted}
    assert names <= MINER_COMPONENTS


def test_migrations_job_is_named_after_its_pod_template(rendered: Rendered) -> None:
    (job,) = rendered.of_kind("Job")
    assert re.fullmatch(r"migrate-[0-9a-f]{10}", job["metadata"]["name"])
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    api = rendered.get("Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "CONTROL_API_MIGRATE", "value": "false"} in api["env"]


def test_relay_runs_two_replicas_and_the_api_one(rendered: Rendered) -> None:
    assert rendered.get("Deployment", "relay")["spec"]["replicas"] == 2
    assert rendered.get("Deployment", "api")["spec"]["replicas"] == 1
    for name in ("postgres", "redis"):
        assert rendered.get("Deployment", name)["spec"]["strategy"] == {"type": "Recreate"}
