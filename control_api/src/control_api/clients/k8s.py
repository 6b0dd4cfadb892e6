"""Kubernetes behind narrow methods (contract §2.5, §7). Nothing else imports `kubernetes`."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)
GravalState = Literal["pending", "ready", "failed"]


@dataclass(frozen=True)
class NodeInfo:
    name: str
    uid: str
    labels: dict[str, str]
    ready: bool
    gpu_capacity: int
    cpus: int
    memory_gib: float

    @property
    def external_ip(self) -> str | None:
        return self.labels.get("chutes/external-ip")

    @property
    def gpu_count_label(self) -> int | None:
        value = self.labels.get("nvidia.com/gpu.count", "")
        return int(value) if value.isdigit() else None

    @property
    def gpu_memory_mib(self) -> int | None:
        value = self.labels.get("nvidia.com/gpu.memory", "")
        return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class GravalSpec:
    node: str
    nice: str
    image: str
    validator: str
    miner_ss58: str
    gpu_count: int
    cpu: int
    memory_gi: int
    remote_token_hosts: str
    runtime_class: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def job_name(self) -> str:
        return GRAVAL_JOB_PREFIX + self.nice

    @property
    def service_name(self) -> str:
        return graval_service_name(self.job_name)


GRAVAL_JOB_PREFIX = "graval-"


def graval_service_name(job_name: str) -> str:
    """The Service add-node creates beside the GraVal Job `graval-<nice>`."""
    return "graval-service-" + job_name.removeprefix(GRAVAL_JOB_PREFIX)


def build_kubeconfig(
    *, server: str, ca_pem: bytes | None, namespace: str, user: str, token: str
) -> dict[str, Any]:
    """A one-context kubeconfig (the shape `chutes-miner sync-kubeconfig` writes as YAML)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    context = f"chutes-{namespace}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": f"{context}-{user}", "user": {"token": token}}],
        "contexts": [
            {
                "name": context,
                "context": {
                    "cluster": context,
                    "user": f"{context}-{user}",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": context,
        "preferences": {},
    }


class KubeClient(Protocol):
    def get_node(self, name: str) -> NodeInfo | None: ...

    def node_busy(self, name: str) -> str | None:
        """A reason if chute pods or a graval Job already run on the node."""
        ...

    def label_node(self, name: str, labels: dict[str, str]) -> None: ...

    def runtime_class_exists(self, name: str) -> bool: ...

    def check_graval(self, spec: GravalSpec, labels: dict[str, str]) -> None:
        """The node label patch and the graval Service and Job, sent as server-side dry runs:
        KubeApiError for what the real calls would meet (403, 409, 422...), nothing changed."""
        ...

    def create_graval(self, spec: GravalSpec) -> int:
        """Create the Service then the Job; return the Service's nodePort."""
        ...

    def graval_state(self, spec: GravalSpec) -> tuple[GravalState, str]: ...

    def graval_url(self, spec: GravalSpec) -> str: ...

    def delete_graval(self, spec: GravalSpec, wait_s: float = 120.0) -> None: ...

    def service_account_kubeconfig(
        self, service_account: str, server: str, ttl_s: int
    ) -> dict[str, Any] | None:
        """Kubeconfig with a fresh token (TokenRequest) of a service account in the namespace;
        None when the account does not exist."""
        ...


class KubeUnavailable(Exception):
    """No Kubernetes API to talk to: none configured, or it did not answer."""


class KubeApiError(Exception):
    """The Kubernetes API refused a call: its HTTP `status`, `reason` (Forbidden, NotFound,
    AlreadyExists, Invalid...) and `message`, for `action` (what this service tried)."""

    def __init__(self, action: str, status: int, reason: str, message: str) -> None:
        self.action, self.status, self.reason, self.message = action, status, reason, message
        super().__init__(f"Kubernetes refused to {action} ({status} {reason}): {message}")

    @property
    def answer_status(self) -> int:
        """The status this service answers its own caller with: the API's own for a missing
        object, a conflict or an invalid object (400, 404, 409, 422); 502 when the API
        rejects this service's credentials or permissions (401, 403: our configuration, not
        the caller's request); 503 for anything else (429, 5xx: try again later)."""
        if self.status in (400, 404, 409, 422):
            return self.status
        if self.status in (401, 403):
            return 502
        return 503


class UnavailableKube:
    """Used when no cluster is reachable: add-node answers 503, everything else works."""

    def _fail(self) -> None:
        raise KubeUnavailable("kubernetes is not available to this process")

    def get_node(self, name: str) -> NodeInfo | None:
        self._fail()
        return None

    def node_busy(self, name: str) -> str | None:
        self._fail()
        return None

    def label_node(self, name: str, labels: dict[str, str]) -> None:
        self._fail()

    def runtime_class_exists(self, name: str) -> bool:
        self._fail()
        return False

    def check_graval(self, spec: GravalSpec, labels: dict[str, str]) -> None:
        self._fail()

    def create_graval(self, spec: GravalSpec) -> int:
        self._fail()
        return 0

    def graval_state(self, spec: GravalSpec) -> tuple[GravalState, str]:
        self._fail()
        return "failed", ""

    def graval_url(self, spec: GravalSpec) -> str:
        self._fail()
        return ""

    def delete_graval(self, spec: GravalSpec, wait_s: float = 120.0) -> None:
        self._fail()

    def service_account_kubeconfig(
        self, service_account: str, server: str, ttl_s: int
    ) -> dict[str, Any] | None:
        self._fail()
        return None


_SUFFIXES: dict[str, float] = {
    **{s: 2.0 ** (10 * (i + 1)) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: 10.0 ** (3 * (i + 1)) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
    "m": 1e-3,
    "u": 1e-6,
    "n": 1e-9,
}


def _quantity(value: str) -> float:
    """A Kubernetes resource quantity: binary/decimal suffixes, milli, or an exponent."""
    for suffix in (value[-2:], value[-1:]):
        if suffix in _SUFFIXES and len(value) > len(suffix):
            return float(value[: -len(suffix)]) * _SUFFIXES[suffix]
    return float(value)


def _quantity_gib(value: str) -> float:
    return _quantity(value) / 2**30


def _cpus(value: str) -> int:
    return int(_quantity(value) + 1e-9)


def _api_error(action: str, exc: Any) -> KubeApiError:
    """KubeApiError from the client's ApiException (its body is a Kubernetes Status)."""
    status, reason, message = int(exc.status or 0), str(exc.reason or ""), ""
    try:
        body = json.loads(exc.body)
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict):
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or "")
    return KubeApiError(action, status, reason, (message or str(exc.body or ""))[:400])


class RealKubeClient:
    """The `kubernetes` package behind KubeClient. Every call has a timeout; API errors become
    KubeApiError and transport errors KubeUnavailable, each naming the call."""

    def __init__(
        self, namespace: str, *, kubeconfig: str | None = None, timeout_s: float = 30.0
    ) -> None:
        from kubernetes import client, config  # imported here only: a slow import

        configuration = client.Configuration()
        if kubeconfig is not None:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
        self._api = client.ApiClient(configuration)
        self._ns = namespace
        self._core = client.CoreV1Api(self._api)
        self._batch = client.BatchV1Api(self._api)
        self._node_api = client.NodeV1Api(self._api)
        self._client = client
        self._timeout = (min(5.0, timeout_s), timeout_s)

    def _call(self, action: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, _request_timeout=self._timeout, **kwargs)
        except ApiException as exc:
            if not exc.status:  # raised by the client itself, e.g. a missing CA file
                raise KubeUnavailable(f"Kubernetes client error ({action}): {exc}") from None
            raise _api_error(action, exc) from None
        except (HTTPError, OSError) as exc:
            raise KubeUnavailable(
                f"Kubernetes API unreachable ({action}): {type(exc).__name__}: {exc}"[:400]
            ) from None

    def get_node(self, name: str) -> NodeInfo | None:
        try:
            node = self._call(f"get Node {name}", self._core.read_node, name)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise
        cap = node.status.capacity or {}
        ready = any(
            c.type == "Ready" and c.status == "True" for c in (node.status.conditions or [])
        )
        gpus = str(cap.get("nvidia.com/gpu", "0"))
        return NodeInfo(
            name=name,
            uid=node.metadata.uid,
            labels=dict(node.metadata.labels or {}),
            ready=ready,
            gpu_capacity=int(gpus) if gpus.isdigit() else 0,
            cpus=_cpus(str(cap.get("cpu", "0"))),
            memory_gib=_quantity_gib(str(cap.get("memory", "0"))),
        )

    def node_busy(self, name: str) -> str | None:
        pods = self._call(
            f"list chute Pods on node {name}",
            self._core.list_namespaced_pod,
            self._ns,
            label_selector="chutes/chute=true",
            field_selector=f"spec.nodeName={name}",
        )
        if pods.items:
            return "node already runs chute pods"
        jobs = self._call(
            f"list graval Jobs of node {name}",
            self._batch.list_namespaced_job,
            self._ns,
            label_selector=f"app=graval,graval-node={name}",
        )
        if jobs.items:
            return "a graval bootstrap job already exists for this node"
        return None

    def label_node(self, name: str, labels: dict[str, str]) -> None:
        self._call(
            f"label Node {name}", self._core.patch_node, name, {"metadata": {"labels": labels}}
        )

    def runtime_class_exists(self, name: str) -> bool:
        try:
            self._call(f"get RuntimeClass {name}", self._node_api.read_runtime_class, name)
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _graval_objects(self, spec: GravalSpec) -> tuple[Any, Any]:
        c = self._client
        selector = {"app": "graval", "graval-node": spec.node}
        svc = c.V1Service(
            metadata=c.V1ObjectMeta(
                name=spec.service_name, labels={**selector, "chute/chute": "false"}
            ),
            spec=c.V1ServiceSpec(
                type="NodePort",
                selector=selector,
                ports=[c.V1ServicePort(port=8000, target_port=8000, protocol="TCP")],
            ),
        )
        env = {
            "VALIDATOR_WHITELIST": spec.validator,
            "MINER_HOTKEY_SS58": spec.miner_ss58,
            "EXPECTED_GPU_COUNT": str(spec.gpu_count),
            "REMOTE_TOKEN_ALLOWED_HOSTS": spec.remote_token_hosts,
        }
        res = {
            "cpu": str(spec.cpu),
            "memory": f"{spec.memory_gi}Gi",
            "nvidia.com/gpu": str(spec.gpu_count),
        }
        pod = c.V1PodSpec(
            node_name=spec.node,
            restart_policy="OnFailure",
            runtime_class_name=spec.runtime_class,
            containers=[
                c.V1Container(
                    name="graval",
                    image=spec.image,
                    env=[c.V1EnvVar(name=k, value=v) for k, v in env.items()],
                    ports=[c.V1ContainerPort(container_port=8000)],
                    resources=c.V1ResourceRequirements(requests=res, limits=res),
                    readiness_probe=c.V1Probe(
                        http_get=c.V1HTTPGetAction(path="/ping", port=8000),
                        initial_delay_seconds=15,
                        period_seconds=10,
                        failure_threshold=3,
                    ),
                )
            ],
        )
        job = c.V1Job(
            metadata=c.V1ObjectMeta(
                name=spec.job_name, labels={**selector, "chute/chute": "false"}
            ),
            spec=c.V1JobSpec(
                parallelism=1,
                completions=1,
                backoff_limit=3,
                ttl_seconds_after_finished=300,
                template=c.V1PodTemplateSpec(metadata=c.V1ObjectMeta(labels=selector), spec=pod),
            ),
        )
        return svc, job

    def check_graval(self, spec: GravalSpec, labels: dict[str, str]) -> None:
        svc, job = self._graval_objects(spec)
        self._call(
            f"label Node {spec.node} (dry run)",
            self._core.patch_node,
            spec.node,
            {"metadata": {"labels": labels}},
            dry_run="All",
        )
        self._call(
            f"create Service {spec.service_name} (dry run)",
            self._core.create_namespaced_service,
            self._ns,
            svc,
            dry_run="All",
        )
        self._call(
            f"create Job {spec.job_name} (dry run)",
            self._batch.create_namespaced_job,
            self._ns,
            job,
            dry_run="All",
        )

    def create_graval(self, spec: GravalSpec) -> int:
        svc, job = self._graval_objects(spec)
        created = self._call(
            f"create Service {spec.service_name}",
            self._core.create_namespaced_service,
            self._ns,
            svc,
        )
        self._call(f"create Job {spec.job_name}", self._batch.create_namespaced_job, self._ns, job)
        return int(created.spec.ports[0].node_port)

    def _graval_pods(self, spec: GravalSpec) -> list[Any]:
        pods = self._call(
            f"list graval Pods of node {spec.node}",
            self._core.list_namespaced_pod,
            self._ns,
            label_selector=f"app=graval,graval-node={spec.node}",
        )
        return list(pods.items)

    def graval_state(self, spec: GravalSpec) -> tuple[GravalState, str]:
        """From the pod (failed, a waiting reason that will not clear, ready), else from the
        Job: once the container restarted backoffLimit times the Job controller fails the
        Job and deletes the pod, so "no pod" alone would read as still pending."""
        for pod in self._graval_pods(spec):
            if pod.status.phase == "Failed":
                return "failed", "bootstrap pod failed"
            for cs in pod.status.container_statuses or []:
                waiting = cs.state.waiting if cs.state else None
                if waiting and waiting.reason in {
                    "CrashLoopBackOff",
                    "ErrImagePull",
                    "ImagePullBackOff",
                    "InvalidImageName",
                    "CreateContainerConfigError",
                }:
                    return "failed", f"bootstrap pod {waiting.reason}"
                if cs.ready:
                    return "ready", ""
        jobs = self._call(
            f"list graval Jobs of node {spec.node}",
            self._batch.list_namespaced_job,
            self._ns,
            label_selector=f"app=graval,graval-node={spec.node}",
        )
        for job in jobs.items:
            for cond in (job.status.conditions if job.status else None) or []:
                # FailureTarget comes first; Failed only once the pods are gone
                if cond.type in ("FailureTarget", "Failed") and cond.status == "True":
                    return "failed", f"bootstrap job failed: {cond.reason or cond.type}"
        return "pending", ""

    def graval_url(self, spec: GravalSpec) -> str:
        return f"http://{spec.service_name}.{self._ns}.svc:8000"

    def delete_graval_objects(self, job_name: str) -> None:
        """Delete a GraVal Job (foreground: its pod first) and its Service; gone is fine."""
        body: dict[str, Any] = {"propagationPolicy": "Foreground"}
        for kind, call, name in (
            ("Job", self._batch.delete_namespaced_job, job_name),
            ("Service", self._core.delete_namespaced_service, graval_service_name(job_name)),
        ):
            try:
                self._call(f"delete {kind} {name}", call, name, self._ns, body=body)
            except KubeApiError as exc:
                if exc.status != 404:
                    raise

    def delete_graval(self, spec: GravalSpec, wait_s: float = 120.0) -> None:
        self.delete_graval_objects(spec.job_name)
        deadline = time.monotonic() + wait_s
        while True:
            pods = self._graval_pods(spec)
            if not pods:
                return
            if time.monotonic() >= deadline:
                # a pod on a node whose kubelet does not answer stays Terminating
                log.warning(
                    "k8s.graval_pods_remain",
                    extra={"node": spec.node, "pods": [p.metadata.name for p in pods]},
                )
                return
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    def service_account_kubeconfig(
        self, service_account: str, server: str, ttl_s: int
    ) -> dict[str, Any] | None:
        c = self._client
        request = c.AuthenticationV1TokenRequest(
            spec=c.V1TokenRequestSpec(audiences=[], expiration_seconds=ttl_s)
        )
        try:
            issued = self._call(
                f"create a token for ServiceAccount {service_account}",
                self._core.create_namespaced_service_account_token,
                service_account,
                self._ns,
                request,
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise
        ca_path = self._api.configuration.ssl_ca_cert
        ca_pem = None
        if ca_path:
            with open(ca_path, "rb") as fh:
                ca_pem = fh.read()
        return build_kubeconfig(
            server=server,
            ca_pem=ca_pem,
            namespace=self._ns,
            user=service_account,
            token=issued.status.token,
        )
