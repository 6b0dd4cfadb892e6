"""The control-plane fixture itself: RBAC is enforced, the controllers run, kubernetes.core's
server-side apply is idempotent against it, and it leaves nothing behind (tests/k8s/README.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.k8s import controlplane
from tests.k8s.controlplane import ControlPlane

NS = "cp-rbac"
SA = f"system:serviceaccount:{NS}:reader"

RBAC = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader, namespace: {NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reader, namespace: {NS}}}
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [create]
  - apiGroups: [batch]
    resources: [jobs]
    verbs: [delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reader, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}}
subjects:
  - {{kind: ServiceAccount, name: reader, namespace: {NS}}}
"""

# (namespace or "" for cluster scope, verb, resource, allowed)
MATRIX = [
    (NS, "get", "pods", True),
    (NS, "list", "pods", True),
    (NS, "watch", "pods", True),
    (NS, "create", "configmaps", True),
    (NS, "delete", "jobs.batch", True),
    (NS, "delete", "pods", False),
    (NS, "create", "pods", False),
    (NS, "get", "configmaps", False),
    (NS, "get", "secrets", False),
    (NS, "create", "jobs.batch", False),
    ("default", "get", "pods", False),
    ("kube-system", "get", "secrets", False),
    ("", "list", "nodes", False),
    ("", "create", "clusterroles.rbac.authorization.k8s.io", False),
    ("", "*", "*", False),
]


def _live_control_plane_dirs() -> set[str]:
    """Working directories named on the command line of a running process."""
    found = set()
    marker = str(controlplane.STATE_ROOT) + "/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        for arg in cmdline.split("\0"):
            if marker in arg:
                found.add(arg.split(marker, 1)[1].split("/", 1)[0])
    return found


def test_rbac_can_i_matrix(control_plane: ControlPlane) -> None:
    control_plane.apply(RBAC)
    answers = {
        (ns, verb, res): control_plane.can_i(verb, res, as_user=SA, namespace=ns)
        for ns, verb, res, _ in MATRIX
    }
    assert answers == {(ns, verb, res): allowed for ns, verb, res, allowed in MATRIX}
    # the admin (system:masters) may do anything; a user without bindings nothing
    assert control_plane.can_i("*", "*")
    assert not control_plane.can_i("get", "pods", as_user="jane", namespace=NS)


def test_service_account_token_is_authorized_by_rbac(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """A real request with the account's bound token: authenticated (the service-account
    key pair is wired), allowed where the Role allows, 403 elsewhere."""
    control_plane.apply(RBAC)
    config = control_plane.token_kubeconfig(
        tmp_path / "reader.kubeconfig", control_plane.token(NS, "reader"), NS
    )
    whoami = control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=config)
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == SA
    assert control_plane.kubectl("get", "pods", kubeconfig=config).returncode == 0
    denied = control_plane.kubectl("get", "secrets", kubeconfig=config, check=False)
    assert denied.returncode != 0
    assert f'User "{SA}" cannot list resource "secrets"' in denied.stderr


def test_controllers_run(control_plane: ControlPlane) -> None:
    """Default ServiceAccount and kube-root-ca.crt per namespace, Job -> Pod, and garbage
    collection of the Pod when its Job is deleted (no kubelet: the Pod stays Pending)."""
    control_plane.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: cp-controllers}\n")
    ns = "/api/v1/namespaces/cp-controllers"
    deadline = time.monotonic() + 30
    while control_plane.get(f"{ns}/serviceaccounts/default")[0] != 200:
        assert time.monotonic() < deadline, "no default ServiceAccount"
        time.sleep(0.2)
    while (found := control_plane.get(f"{ns}/configmaps/kube-root-ca.crt"))[0] != 200:
        assert time.monotonic() < deadline, "no kube-root-ca.crt"
        time.sleep(0.2)
    ca = json.loads(found[1])["data"]["ca.crt"]
    assert ca.strip() == control_plane.ca_cert.read_text().strip()

    control_plane.kubectl(
        "create", "job", "hello", "-n", "cp-controllers", "--image=example.invalid/hello:1"
    )
    pods = ("get", "pods", "-n", "cp-controllers", "-l", "job-name=hello", "-o", "json")
    while not (items := json.loads(control_plane.kubectl(*pods).stdout)["items"]):
        assert time.monotonic() < deadline, "the Job controller created no Pod"
        time.sleep(0.2)
    assert items[0]["status"]["phase"] == "Pending"
    control_plane.kubectl("delete", "job", "hello", "-n", "cp-controllers", "--wait=true")
    control_plane.kubectl(
        "wait", "--for=delete", f"pod/{items[0]['metadata']['name']}", "-n", "cp-controllers"
    )


PLAYBOOK = """
- name: Server-side apply twice, then in check mode
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    objects:
      - apiVersion: v1
        kind: Namespace
        metadata: {name: cp-apply}
      - apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings, namespace: cp-apply}
        data: {mode: test}
      - apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: cp-apply, labels: {app: web}}
        spec:
          replicas: 1
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
                - name: web
                  image: example.invalid/web:1
                  ports: [{containerPort: 8000}]
      - apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: cp-apply}
        spec:
          type: NodePort
          selector: {app: web}
          ports: [{port: 8000, targetPort: 8000, protocol: TCP}]
  tasks:
    - name: First apply
      kubernetes.core.k8s:
        definition: "{{ item }}"
        server_side_apply: {field_manager: chutes-tests}
      loop: "{{ objects }}"
      register: first
    - name: Second apply
      kubernetes.core.k8s:
        definition: "{{ item }}"
        server_side_apply: {field_manager: chutes-tests}
      loop: "{{ objects }}"
      register: second
    - name: Check-mode apply
      kubernetes.core.k8s:
        definition: "{{ item }}"
        server_side_apply: {field_manager: chutes-tests}
      loop: "{{ objects }}"
      check_mode: true
      register: third
    - name: Report
      ansible.builtin.copy:
        dest: "{{ result_file }}"
        mode: "0600"
        content: >-
          {{ {'first': first.results | map(attribute='changed') | list,
              'second': second.results | map(attribute='changed') | list,
              'check': third.results | map(attribute='changed') | list} | to_json }}
"""


def test_server_side_apply_idempotent_with_kubernetes_core(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    playbook = tmp_path / "apply.yml"
    playbook.write_text(textwrap.dedent(PLAYBOOK))
    env = {**os.environ, **control_plane.env(), "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            f"result_file={tmp_path / 'result.json'}",
            str(playbook),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result == {"first": [True] * 4, "second": [False] * 4, "check": [False] * 4}


def test_missing_binaries_fail_with_instructions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHUTES_K8S_DIR", str(tmp_path))
    with pytest.raises(controlplane.BinariesMissing) as missing:
        controlplane.binaries_dir()
    message = str(missing.value)
    assert "etcd, kube-apiserver, kube-controller-manager, kubectl" in message
    assert str(tmp_path / "bin") in message
    assert "make k8s-bin" in message and "tests/lab/k8s/build.sh" in message
    # the fixture body fails the test (pytest's Failed), it does not skip it
    with pytest.raises(pytest.fail.Exception, match="make k8s-bin"):
        next(controlplane.session_fixture())


def test_stop_leaves_nothing(control_plane: ControlPlane) -> None:
    cp = controlplane.start(bin_dir=control_plane.bin_dir)
    assert cp.alive() and cp.workdir.name in _live_control_plane_dirs()
    assert set(cp.timings) >= {"etcd_s", "apiserver_s", "controller_manager_s", "total_s"}
    pids = cp.pids()
    assert len(pids) == 3
    cp.stop()
    assert not cp.workdir.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert cp.workdir.name not in _live_control_plane_dirs()


def test_failed_start_leaves_nothing(control_plane: ControlPlane) -> None:
    """A process that exits during start: the error names it and quotes its log; etcd
    (already running) is stopped and the working directory removed."""
    with pytest.raises(controlplane.ControlPlaneError) as failed:
        controlplane.start(
            bin_dir=control_plane.bin_dir,
            controller_manager=False,
            extra_apiserver_args=["--no-such-flag"],
        )
    message = str(failed.value)
    assert message.startswith("kube-apiserver did not start: kube-apiserver exited")
    assert "unknown flag: --no-such-flag" in message
    marker = str(controlplane.STATE_ROOT) + "/"
    workdir = marker + message.split(marker, 1)[1].split("/", 1)[0]
    assert not Path(workdir).exists()
    assert Path(workdir).name not in _live_control_plane_dirs()


KILLED_OWNER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import controlplane
cp = controlplane.start(controller_manager=False)
print(json.dumps({"pids": cp.pids(), "workdir": str(cp.workdir)}), flush=True)
time.sleep(600)
"""


def test_killed_owner_leaves_nothing(control_plane: ControlPlane) -> None:
    """A process that dies without teardown (SIGKILL): its etcd and apiserver die with it
    (parent-death signal), and the next start removes its working directory."""
    env = {**os.environ, "CHUTES_K8S_DIR": str(control_plane.bin_dir.parent)}
    owner = subprocess.Popen(
        [sys.executable, "-c", KILLED_OWNER, str(Path(controlplane.__file__).parent)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    started = json.loads(owner.stdout.readline())
    owner.kill()
    owner.wait(10)
    deadline = time.monotonic() + 10
    while any(controlplane.pid_alive(pid) for pid in started["pids"]):
        assert time.monotonic() < deadline, "a control-plane process outlived its owner"
        time.sleep(0.1)
    assert Path(started["workdir"]).is_dir()
    controlplane._sweep_stale()  # what the next start() does first
    assert not Path(started["workdir"]).exists()


def test_serve_for_molecule(control_plane: ControlPlane, tmp_path: Path) -> None:
    """`python tests/k8s/controlplane.py serve`: the env file names a working admin
    kubeconfig while it runs; SIGTERM stops everything and removes the file."""
    env_file = tmp_path / "k8s.env"
    env = {**os.environ, "CHUTES_K8S_DIR": str(control_plane.bin_dir.parent)}
    serve = subprocess.Popen(
        [sys.executable, controlplane.__file__, "serve", "--no-controller-manager"]
        + ["--env-file", str(env_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not env_file.exists():
            assert serve.poll() is None, serve.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        exported = dict(
            line.removeprefix("export ").split("=", 1)
            for line in env_file.read_text().split("\n")
            if line
        )
        assert exported["K8S_AUTH_KUBECONFIG"] == exported["KUBECONFIG"]
        readyz = control_plane.kubectl(
            "get", "--raw", "/readyz", kubeconfig=Path(exported["KUBECONFIG"])
        )
        assert readyz.stdout.strip() == "ok"
        workdir = Path(exported["KUBECONFIG"]).parent
    finally:
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=60)
    assert serve.returncode == 0, err
    assert not env_file.exists() and not workdir.exists()
