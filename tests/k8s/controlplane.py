"""A throwaway Kubernetes control plane for tests: etcd, kube-apiserver and (by default)
kube-controller-manager as local processes, RBAC on (``--authorization-mode=Node,RBAC``).

No kubelet runs: objects are validated, admitted, authorized, stored and reconciled by the
controllers (default ServiceAccounts, ``kube-root-ca.crt``, Job -> Pod, garbage collection),
but no container ever starts. README.md next to this file says what it starts and how to use
it; ``python tests/k8s/controlplane.py serve`` runs one outside pytest (Molecule, a shell).

The binaries come from ``$CHUTES_K8S_DIR/bin`` (``make k8s-bin``, tests/lab/k8s/build.sh).
This module imports nothing from the repository, so control_api's tests load it by path.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[2]
BUILD_SH = REPO / "tests" / "lab" / "k8s" / "build.sh"
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
SERVICE_CIDR = "10.96.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
# Every control plane's working directory lives under this one, so a run that was killed
# (SIGKILL: no teardown) is cleaned up by the next start (see _sweep_stale).
STATE_ROOT = Path(tempfile.gettempdir()) / "chutes-k8s-controlplane"
# No kubelet posts node status: the node lifecycle controller would mark every Node object a
# test creates NotReady (then taint it) after the grace period.
DISABLED_CONTROLLERS = ("node-lifecycle-controller",)
# Metadata-level audit of every request (who, verb, resource, status) without bodies: tests
# read it to see which permissions a client really used.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message says why and what to do."""


class BinariesMissing(ControlPlaneError):
    pass


def binaries_dir() -> Path:
    """``$CHUTES_K8S_DIR/bin`` (tests/lab/env.sh exports it), else the directory build.sh
    prints; BinariesMissing, saying how to build them, when a required binary is absent."""
    base = os.environ.get("CHUTES_K8S_DIR", "")
    source = "CHUTES_K8S_DIR"
    if not base:
        source = "tests/lab/k8s/build.sh --print-dir"
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            printed = subprocess.run(
                [str(BUILD_SH), "--print-dir"], capture_output=True, text=True, timeout=60
            ).stdout.split()
            base = printed[-1] if printed else ""
    bin_dir = Path(base) / "bin" if base else Path("<unknown>")
    missing = [b for b in REQUIRED if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise BinariesMissing(
            f"Kubernetes binaries missing: {', '.join(missing)} not found in {bin_dir} "
            f"(from {source}). Build them with `make k8s-bin` (runs tests/lab/k8s/build.sh; "
            "cached under /var/cache/chutes-miner-lab/k8s, tens of minutes cold on 2 cores, "
            "a no-op when current), then run the tests again. Tests that need a Kubernetes "
            "API server fail rather than skip without them."
        )
    return bin_dir


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


# -- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: x509.Name,
    issuer: _Pair | None,
    *,
    usage: x509.ObjectIdentifier | None = None,
    sans: Sequence[x509.GeneralName] = (),
    ca: bool | None = None,
) -> _Pair:
    """EC P-256 (fast to generate); a CA when ``ca``, by default when ``issuer`` is None
    (a root; ``ca=True`` with an issuer makes an intermediate)."""
    ca = issuer is None if ca is None else ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return _Pair(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _kubeconfig(path: Path, server: str, ca_pem: bytes, user: dict[str, str]) -> Path:
    """A one-context kubeconfig (JSON is valid YAML; kubectl and client libraries read it)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "chutes-test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": _b64(ca_pem),
                },
            }
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [
            {"name": "chutes-test", "context": {"cluster": "chutes-test", "user": "user"}}
        ],
        "current-context": "chutes-test",
    }
    return _write(path, json.dumps(config, indent=2).encode(), 0o600)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- processes ------------------------------------------------------------------------------


def _die_with_parent(argv: list[str]) -> list[str]:
    """``argv`` under ``setpriv --pdeathsig KILL`` (util-linux): the process gets SIGKILL when
    the one that started it dies, so a killed pytest worker leaves no etcd or apiserver
    behind. No Python runs between fork and exec (a preexec_fn could deadlock in a process
    with threads). Without setpriv, the next start's sweep still removes the directories."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale() -> None:
    """Remove the working directories of control planes whose owner process is gone."""
    if not STATE_ROOT.is_dir():
        return
    for entry in STATE_ROOT.iterdir():
        try:
            owner = int((entry / "owner.pid").read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and pid_alive(owner):
            continue
        with contextlib.suppress(FileNotFoundError):  # another process removed it meanwhile
            if owner or time.time() - entry.stat().st_mtime > 300:  # no pid: being created
                shutil.rmtree(entry, ignore_errors=True)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def failed(self) -> str | None:
        rc = self.popen.poll()
        if rc is None:
            return None
        return f"{self.name} exited with status {rc}; last lines of {self.log}:\n{_tail(self.log)}"

    def stop(self, grace_s: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(grace_s)
        # anything left in its process group (none of these binaries forks, but be sure)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


# -- the control plane ----------------------------------------------------------------------


@dataclass
class ControlPlane:
    """A running control plane. ``kubeconfig`` is an admin's (group system:masters)."""

    url: str
    address: str
    kubeconfig: Path
    ca_cert: Path
    bin_dir: Path
    workdir: Path
    audit_log: Path
    timings: dict[str, float] = field(default_factory=dict)
    _procs: list[_Process] = field(default_factory=list, repr=False)
    _ssl: ssl.SSLContext | None = field(default=None, repr=False)

    # -- using it ---------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should use this cluster as the admin: kubectl
        and client libraries read KUBECONFIG, kubernetes.core reads K8S_AUTH_KUBECONFIG."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "K8S_AUTH_KUBECONFIG": str(self.kubeconfig),
            "CHUTES_K8S_API": self.url,
        }

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl (the one built with the control plane) against this cluster."""
        argv = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig or self.kubeconfig)]
        done = subprocess.run(
            [*argv, *args], input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, ["kubectl", *args], done.stdout, done.stderr
            )
        return done

    def apply(self, manifest: str, field_manager: str = "chutes-tests") -> str:
        """Server-side apply of a YAML/JSON manifest (one or more documents)."""
        return self.kubectl(
            "apply", "--server-side", f"--field-manager={field_manager}", "-f", "-", input=manifest
        ).stdout

    def can_i(self, verb: str, resource: str, *, as_user: str = "", namespace: str = "") -> bool:
        """``kubectl auth can-i``, as ``as_user`` (impersonated) or as the admin: a
        SubjectAccessReview answered by the authorizers (Node, RBAC)."""
        args = ["auth", "can-i", verb, resource] + ([f"--as={as_user}"] if as_user else [])
        args += [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
        done = self.kubectl(*args, check=False)
        answer = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        if answer not in ("yes", "no"):
            raise ControlPlaneError(f"kubectl auth can-i {verb} {resource}: {done.stderr}")
        return answer == "yes"

    def token(self, namespace: str, service_account: str, duration_s: int = 3600) -> str:
        """A bound token for a ServiceAccount (TokenRequest, as ``kubectl create token``)."""
        return self.kubectl(
            "create", "token", service_account, "-n", namespace, f"--duration={duration_s}s"
        ).stdout.strip()

    def token_kubeconfig(self, path: Path, token: str, namespace: str = "") -> Path:
        """A kubeconfig that authenticates with ``token`` (a ServiceAccount's), for running a
        client as that account; ``namespace`` becomes the context's default."""
        _kubeconfig(path, self.url, self.ca_cert.read_bytes(), {"token": token})
        if namespace:
            config = json.loads(path.read_text())
            config["contexts"][0]["context"]["namespace"] = namespace
            _write(path, json.dumps(config, indent=2).encode(), 0o600)
        return path

    def get(self, path: str) -> tuple[int, bytes]:
        """GET a path of the API as the admin: (status, body)."""
        request = urllib.request.Request(self.url + path)
        try:
            with urllib.request.urlopen(request, timeout=5, context=self._ssl) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def audit_events(self) -> list[dict[str, Any]]:
        """Every request audited so far (Metadata level: user, verb, objectRef, status)."""
        events = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.audit_log.read_text().splitlines():
                if line.strip():
                    events.append(json.loads(line))
        return events

    def alive(self) -> bool:
        return all(p.failed() is None for p in self._procs)

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self._procs]

    # -- lifecycle --------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every process (newest first) and remove the working directory."""
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _spawn(self, name: str, argv: list[str]) -> _Process:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            try:
                popen = subprocess.Popen(
                    _die_with_parent(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ControlPlaneError(f"cannot run {argv[0]}: {exc}") from exc
        proc = _Process(name, popen, log)
        self._procs.append(proc)
        return proc

    def _wait(
        self, what: str, proc: _Process, ready: Callable[[], bool], timeout_s: float
    ) -> float:
        start = time.monotonic()
        deadline = start + timeout_s
        while True:
            failure = proc.failed()
            if failure:
                raise ControlPlaneError(f"{what} did not start: {failure}")
            if ready():
                return round(time.monotonic() - start, 2)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{what} not ready after {timeout_s:.0f} s; last lines of {proc.log}:\n"
                    f"{_tail(proc.log)}"
                )
            time.sleep(0.05)


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return int(resp.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def start(
    *,
    controller_manager: bool = True,
    address: str = "127.0.0.1",
    bin_dir: Path | None = None,
    extra_apiserver_args: Sequence[str] = (),
) -> ControlPlane:
    """Start etcd, kube-apiserver and (unless ``controller_manager=False``) the controller
    manager on ``address``; return when the API answers /readyz and, with the controller
    manager, the ``default`` ServiceAccount exists. Everything is stopped and removed again
    if any step fails. Raises BinariesMissing / ControlPlaneError with the reason."""
    bins = bin_dir or binaries_dir()
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    _sweep_stale()
    workdir = Path(tempfile.mkdtemp(prefix="cp-", dir=STATE_ROOT))
    (workdir / "owner.pid").write_text(str(os.getpid()))
    t0 = time.monotonic()
    port = free_port(address)
    cp = ControlPlane(
        url=f"https://{_url_host(address)}:{port}",
        address=address,
        kubeconfig=workdir / "admin.kubeconfig",
        ca_cert=workdir / "ca.crt",
        bin_dir=bins,
        workdir=workdir,
        audit_log=workdir / "audit.log",
    )
    try:
        _start(cp, port, controller_manager, list(extra_apiserver_args))
    except BaseException:
        cp.stop()
        raise
    cp.timings["total_s"] = round(time.monotonic() - t0, 2)
    return cp


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _start(cp: ControlPlane, port: int, with_kcm: bool, extra: list[str]) -> None:
    w, bins = cp.workdir, cp.bin_dir
    t0 = time.monotonic()
    # certificates, keys, kubeconfigs
    ca = _issue(_name("chutes-test-ca"), None)
    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    dns.append("kubernetes.default.svc.cluster.local")
    ips = {cp.address, "127.0.0.1", service_ip}
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)]
    serving = _issue(_name("kube-apiserver"), ca, usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans)
    admin = _issue(
        _name("chutes-test-admin", ["system:masters"]),
        ca,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    kcm = _issue(_name("system:kube-controller-manager"), ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write(w / "ca.crt", ca.cert_pem())
    _write(w / "ca.key", ca.key_pem(), 0o600)
    _write(w / "apiserver.crt", serving.cert_pem())
    _write(w / "apiserver.key", serving.key_pem(), 0o600)
    _write(w / "admin.crt", admin.cert_pem())
    _write(w / "admin.key", admin.key_pem(), 0o600)
    _write(w / "sa.key", _Pair(ca.cert, sa_key).key_pem(), 0o600)
    _write(
        w / "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    _write(w / "audit-policy.json", json.dumps(AUDIT_POLICY).encode())

    def cert_user(pair: _Pair) -> dict[str, str]:
        return {
            "client-certificate-data": _b64(pair.cert_pem()),
            "client-key-data": _b64(pair.key_pem()),
        }

    _kubeconfig(cp.kubeconfig, cp.url, ca.cert_pem(), cert_user(admin))
    _kubeconfig(w / "kcm.kubeconfig", cp.url, ca.cert_pem(), cert_user(kcm))
    context = ssl.create_default_context(cafile=str(w / "ca.crt"))
    context.load_cert_chain(str(w / "admin.crt"), str(w / "admin.key"))
    cp._ssl = context
    cp.timings["certs_s"] = round(time.monotonic() - t0, 2)

    # etcd: plain HTTP on loopback only, no fsync (a test store)
    client, peer = free_port(), free_port()
    etcd = cp._spawn(
        "etcd",
        [
            str(bins / "etcd"),
            "--name=default",
            f"--data-dir={w / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    etcd_health = f"http://127.0.0.1:{client}/health"
    cp.timings["etcd_s"] = cp._wait("etcd", etcd, lambda: _http_ok(etcd_health), 30)

    apiserver = cp._spawn(
        "kube-apiserver",
        [
            str(bins / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{client}",
            f"--bind-address={cp.address}",
            f"--advertise-address={cp.address}",
            f"--secure-port={port}",
            f"--cert-dir={w}",
            f"--tls-cert-file={w / 'apiserver.crt'}",
            f"--tls-private-key-file={w / 'apiserver.key'}",
            f"--client-ca-file={w / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={w / 'sa.pub'}",
            f"--service-account-signing-key-file={w / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--audit-policy-file={w / 'audit-policy.json'}",
            f"--audit-log-path={cp.audit_log}",
            "--audit-log-mode=blocking",
            "--profiling=false",
            *extra,
        ],
    )
    readyz = cp.url + "/readyz"
    cp.timings["apiserver_s"] = cp._wait(
        "kube-apiserver", apiserver, lambda: _http_ok(readyz, context), 90
    )
    if not with_kcm:
        return
    kcm_port = free_port(cp.address)
    disabled = ",".join(f"-{c}" for c in DISABLED_CONTROLLERS)
    controller_manager = cp._spawn(
        "kube-controller-manager",
        [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={w / 'kcm.kubeconfig'}",
            f"--authentication-kubeconfig={w / 'kcm.kubeconfig'}",
            f"--authorization-kubeconfig={w / 'kcm.kubeconfig'}",
            f"--bind-address={cp.address}",
            f"--secure-port={kcm_port}",
            f"--cert-dir={w / 'kcm'}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={w / 'sa.key'}",
            f"--root-ca-file={w / 'ca.crt'}",
            f"--cluster-signing-cert-file={w / 'ca.crt'}",
            f"--cluster-signing-key-file={w / 'ca.key'}",
            f"--controllers=*,{disabled}",
        ],
    )
    # ready for tests once it has created the default ServiceAccount (pods need it)
    cp.timings["controller_manager_s"] = cp._wait(
        "kube-controller-manager",
        controller_manager,
        lambda: cp.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        60,
    )


def session_fixture(controller_manager: bool = True) -> Iterator[ControlPlane]:
    """The body of a session-scoped pytest fixture (``yield from session_fixture()``): a
    control plane that cannot start fails the test with the reason, never skips it."""
    import pytest

    try:
        cp = start(controller_manager=controller_manager)
    except ControlPlaneError as exc:
        reason = str(exc)
    else:
        reason = ""
    if reason:
        pytest.fail(reason, pytrace=False)
    try:
        yield cp
    finally:
        cp.stop()


# -- outside pytest -------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    try:
        cp = start(controller_manager=not args.no_controller_manager, address=args.address)
    except ControlPlaneError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    try:
        lines = "".join(f"export {k}={v}\n" for k, v in cp.env().items())
        if args.env_file:
            Path(args.env_file).write_text(lines)
        sys.stdout.write(lines + f"# started in {cp.timings['total_s']} s: {cp.timings}\n")
        sys.stdout.flush()
        while not stop.wait(1):
            if not cp.alive():
                sys.stderr.write("a control-plane process died; stopping\n")
                return 1
    finally:
        cp.stop()
        if args.env_file:
            Path(args.env_file).unlink(missing_ok=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start one and keep it running until SIGTERM/SIGINT")
    serve.add_argument("--env-file", help="write KUBECONFIG=... export lines here too")
    serve.add_argument(
        "--address", default="127.0.0.1", help="listen address (default %(default)s)"
    )
    serve.add_argument("--no-controller-manager", action="store_true")
    args = parser.parse_args(argv)
    return _serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
