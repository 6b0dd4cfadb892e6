"""add-node in the lab, end to end (lab.sh add-node, after lab.sh up):

    the real `chutes-miner` CLI (0.9.0) on this machine
      -> the miner API in the lab cluster (node port on cpu-0)
      -> a GraVal bootstrap Job on the GPU node, run by its real kubelet and containerd from the
         lab's graval image (pulled through the lab mirror)
      -> the API reads the devices from the Job's Service
      -> registers them with the validator and polls the verification
      -> the server and its GPUs in the API's inventory, the node labelled, the Job cleaned up;
then a chute, as the validator publishes one:
      -> `chute_created` over the validator's socket -> the miner API's relay -> the Redis stream
      -> the scheduler (gepetto, deployed next to the API) fetches the chute and a launch
         config from the validator, claims the GPU and creates the code ConfigMap, the Service
         and the Job on the GPU node; the node's kubelet pulls the chute image through the
         registry proxy (<validator>.localregistry.chutes.ai) from the validator's registry
         and runs the cache-init step and the chute, which becomes Ready
      -> the chute answers on its node port with the launch token, GPU list and code it got
      -> instance_created / _verified / _activated: the deployment is active and verified
      -> `chute_deleted`: the scheduler tells the validator, removes the Job and Service and
         releases the GPU.

Stand-ins, for what cannot exist here: the validator (control_api/tests/standins.py, started by
this script on the lab network's gateway address, which inventories/lab names as its validator);
the GPUs (the graval lab image's stand-in Miner with made-up devices, and nvidia.com/gpu on the
GPU nodes from the lab's node-status step); the chute (the lab's lab-chute image, a small
program that answers as a started chute does: tests/lab/images/lab-chute/). Everything else is
the product.

Idempotent: a node already in the inventory is deleted first (through the CLI), so a rerun
proves the same path. Prints one line per step with its duration; exit 1 on the first failure,
with the pods, Jobs and events of the namespace.

    python tests/lab/add-node-e2e.py [--node gpu-0] [--timeout 600] [--no-chute]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "control_api"))  # its tests package: the stand-ins, the CLI venv

from control_api.scheduler.manifests import visible_devices  # noqa: E402
from tests.cli_venv import ensure_cli_venv  # noqa: E402
from tests.sched_validator import MinerApiStandin  # noqa: E402
from tests.standins import StandinValidator  # noqa: E402

LAB_DIR = Path(os.environ.get("CHUTES_LAB_DIR", "/tmp/chutes-miner-lab"))
LAB_KEY = os.environ.get("CHUTES_LAB_KEY", str(LAB_DIR / "id_ed25519"))
PRIMARY = "10.89.77.10"
KUBECONFIG = "/etc/chutes-miner/kubeconfig/admin.conf"
NAMESPACE = "chutes"


class Failed(Exception):
    pass


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float) -> Any:
    """Poll every 2 s until probe() is truthy; Failed after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(2)


def say(line: str) -> None:
    sys.stdout.write(f"lab: add-node: {line}\n")
    sys.stdout.flush()


def lab_validator() -> dict[str, object]:
    """The lab inventory's (only) validator, as the roles read it."""
    lab = yaml.safe_load((REPO / "inventories/lab/group_vars/all/lab.yml").read_text())
    return dict(lab["chutes_validators"][0])


def on_primary(command: str) -> str:
    ssh = ["ssh", "-i", LAB_KEY, "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
    ssh += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    done = subprocess.run(
        [*ssh, f"root@{PRIMARY}", command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise Failed(f"on cpu-0: {command}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def kubectl(args: str) -> str:
    return on_primary(f"kubectl --kubeconfig {KUBECONFIG} {args}")


def diagnostics() -> str:
    try:
        return kubectl(
            f"-n {NAMESPACE} get pods,jobs,services,configmaps -o wide; "
            f"kubectl --kubeconfig {KUBECONFIG} -n {NAMESPACE} get events "
            "--sort-by=.lastTimestamp | tail -25"
        )
    except Failed as exc:
        return str(exc)


class Journey:
    def __init__(self, node: str, timeout_s: float, chute: bool = True) -> None:
        self.node = node
        self.timeout_s = timeout_s
        self.chute = chute
        hotkey_path = LAB_DIR / "lab/hotkey.json"
        if not hotkey_path.is_file():
            raise Failed(f"no lab hotkey at {hotkey_path}: run `make lab` first")
        self.hotkey = hotkey_path
        self.miner_ss58 = json.loads(hotkey_path.read_text())["ss58Address"]
        self.validator_entry = lab_validator()
        # the node port the deployed Service has (miner_api_node_port), read from the cluster
        port = kubectl(f"-n {NAMESPACE} get service api -o jsonpath='{{.spec.ports[0].nodePort}}'")
        self.api = f"http://{PRIMARY}:{port.strip()}"

    def step(self, name: str, started: float) -> None:
        took = time.monotonic() - started
        say(f"{name} ({took:.1f} s)")

    def cli(self, cli_venv: Path, *args: str, timeout: float = 120) -> str:
        env = {**os.environ, "HOTKEY": str(self.hotkey), "MINER_API": self.api}
        env.pop("KUBECONFIG", None)
        done = subprocess.run(
            [str(cli_venv / "bin/chutes-miner"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input="y\n",
            check=False,
        )
        if done.returncode != 0:
            raise Failed(
                f"chutes-miner {' '.join(args)}: rc={done.returncode}\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def inventory(self, cli_venv: Path) -> list[dict[str, object]]:
        out = self.cli(cli_venv, "local-inventory", "--raw-json")
        return list(json.loads(out or "[]"))

    def run(self) -> None:
        t = time.monotonic()
        cli_venv = ensure_cli_venv()
        self.step(f"real chutes-miner CLI ready ({cli_venv})", t)

        url = str(self.validator_entry["api"])
        host, port = url.removeprefix("http://").rsplit(":", 1)
        # One server, as the validator's: its node routes (add-node), its socket (the relay)
        # and the routes the scheduler calls (chutes, launch configs, instances).
        miner_api = MinerApiStandin(self.miner_ss58)
        validator = StandinValidator(
            str(self.validator_entry["hotkey"]),
            self.miner_ss58,
            host=host,
            port=int(port),
            also=miner_api.add_routes,
        ).start()
        try:
            self._journey(cli_venv, validator)
            if self.chute:
                self._chute(cli_venv, validator, miner_api)
        finally:
            validator.stop()

    def _journey(self, cli_venv: Path, validator: StandinValidator) -> None:
        t = time.monotonic()
        names = [str(s.get("name")) for s in self.inventory(cli_venv)]
        self.step(f"API answers the CLI at {self.api} (servers: {names or 'none'})", t)
        if self.node in names:
            t = time.monotonic()
            self.cli(cli_venv, "delete-node", "--name", self.node)
            # the scheduler removes the server (after undeploying what runs on it) from the
            # server_deleted event the API publishes: wait for that, as an operator would
            wait_for(
                f"{self.node} to leave the inventory",
                lambda: self.node not in [str(s.get("name")) for s in self.inventory(cli_venv)],
                300,
            )
            self.step(f"{self.node} was in the inventory: deleted through the CLI first", t)

        t = time.monotonic()
        args = ["add-node", "--name", self.node, "--validator", validator.hotkey]
        args += ["--hourly-cost", "2.5", "--gpu-short-ref", "h200", "--agent-api", "http://x"]
        out = self.cli(cli_venv, *args, timeout=self.timeout_s)
        if "completed server bootstrapping" not in out:
            raise Failed(f"add-node did not complete:\n{out}")
        self.step(f"add-node {self.node}: GraVal Job ran, devices registered, verified", t)

        registered = validator.state.registered
        if len(registered) != 1:
            raise Failed(f"the validator saw {len(registered)} registrations, expected 1")
        gpus = registered[0]["nodes"]
        servers = {str(s["name"]): s for s in self.inventory(cli_venv)}
        if self.node not in servers:
            raise Failed(f"{self.node} is not in local-inventory after add-node: {list(servers)}")
        labels = json.loads(kubectl(f"get node {self.node} -o jsonpath='{{.metadata.labels}}'"))
        if labels.get("chutes/validator") != validator.hotkey:
            raise Failed(f"node {self.node} lacks the chutes/validator label: {labels}")
        say(
            f"validator registered {len(gpus)} GPU(s) of {self.node}; "
            f"inventory lists it; node labelled for {validator.hotkey[:8]}..."
        )

    def of_node(self, cli_venv: Path, key: str) -> list[dict[str, Any]]:
        """`deployments` or `gpus` of this node's server in local-inventory ([] when absent)."""
        servers = {str(s["name"]): s for s in self.inventory(cli_venv)}
        return list(dict(servers.get(self.node) or {}).get(key) or [])

    def deployments(self, cli_venv: Path) -> list[dict[str, Any]]:
        return self.of_node(cli_venv, "deployments")

    def _chute(
        self, cli_venv: Path, validator: StandinValidator, miner_api: MinerApiStandin
    ) -> None:
        images = json.loads((LAB_DIR / "miner-images.json").read_text())["images"]
        if "lab-chute" not in images:
            raise Failed("no lab-chute image: run `make lab` (or build-miner-images.sh)")
        image = f"{images['lab-chute']['repository']}:{images['lab-chute']['tag']}"
        chute_id = str(uuid.uuid4())  # as the validator names chutes; a rerun never collides
        code = f"# the lab's chute {chute_id}\nprint('hello from the lab')\n"
        miner_api.add_chute(chute_id, image=image, code=code, name="lab-chute")
        t = time.monotonic()
        validator.broadcast("chute_created", {"chute_id": chute_id, "version": "1"})
        selector = f"chutes/chute-id={chute_id}"

        def ready_pod() -> dict[str, Any] | None:
            pods = json.loads(kubectl(f"-n {NAMESPACE} get pods -l {selector} -o json"))
            for pod in pods["items"]:
                phase = pod["status"].get("phase")
                if phase in ("Failed", "Succeeded"):
                    raise Failed(f"the chute pod ended: {phase}: {pod['status']}")
                conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
                if conditions.get("Ready") == "True":
                    return dict(pod)
            return None

        pod = wait_for("the chute pod to be Ready", ready_pod, self.timeout_s)
        if pod["spec"]["nodeName"] != self.node:
            raise Failed(f"the chute runs on {pod['spec']['nodeName']}, not {self.node}")
        cleaner = kubectl(f"-n {NAMESPACE} logs {pod['metadata']['name']} -c cache-init")
        if f"kept {chute_id}" not in cleaner:
            raise Failed(f"the cache-init step did not run the cache cleaner: {cleaner!r}")
        self.step(
            f"chute_created -> relay -> scheduler -> Job on {self.node}; image pulled through "
            "the registry proxy, cache-init ran, the chute is Ready",
            t,
        )

        t = time.monotonic()
        [dep] = wait_for("the deployment in the inventory", lambda: self.deployments(cli_venv), 60)
        node_ip = str(dep["host"])  # the server's address, where validators reach chutes
        url = f"http://{node_ip}:{dep['port']}/_lab"
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - the lab's node
            seen = json.loads(answer.read())
        env = seen["env"]
        expected_gpus = visible_devices(tuple(sorted(str(g["gpu_id"]) for g in dep["gpus"])))
        problems = []
        if env["CHUTES_LAUNCH_JWT"] != miner_api.state.issued.get(str(dep["config_id"])):
            problems.append("CHUTES_LAUNCH_JWT is not the token issued for its config_id")
        if env["CHUTES_PORT_PRIMARY"] != str(dep["port"]):
            problems.append(f"CHUTES_PORT_PRIMARY {env['CHUTES_PORT_PRIMARY']} != {dep['port']}")
        if sorted(str(env["NVIDIA_VISIBLE_DEVICES"]).split(",")) != expected_gpus.split(","):
            problems.append(f"NVIDIA_VISIBLE_DEVICES {env['NVIDIA_VISIBLE_DEVICES']!r}")
        if seen["code"] != code:
            problems.append(f"code at {seen['code_path']}: {seen['code']!r}")
        if seen["options"].get("miner-ss58") != self.miner_ss58:
            problems.append(f"--miner-ss58 {seen['options'].get('miner-ss58')}")
        if problems:
            raise Failed("the chute got the wrong launch: " + "; ".join(problems))
        self.step(
            f"the chute answers on {node_ip}:{dep['port']} (its node port) with its launch "
            f"token, {len(dep['gpus'])} GPU(s) as {expected_gpus[:12]}..., and its code",
            t,
        )

        t = time.monotonic()
        config_id = str(dep["config_id"])
        instance_id = miner_api.add_instance(chute_id, config_id, active=True, verified=True)
        for reason in ("instance_created", "instance_verified", "instance_activated"):
            data = {"instance_id": instance_id, "chute_id": chute_id, "config_id": config_id}
            validator.broadcast(reason, data)

        def activated() -> dict[str, Any] | None:
            for d in self.deployments(cli_venv):
                if d["instance_id"] == instance_id and d["active"] and d["verified_at"]:
                    return d
            return None

        dep = wait_for("the deployment to be active and verified", activated, 60)
        if dep["stub"]:
            raise Failed(f"an activated deployment is still a stub: {dep}")
        self.step(f"instance {instance_id[:8]}... created, verified, activated", t)

        t = time.monotonic()
        miner_api.state.chutes.pop((chute_id, "1"))
        validator.broadcast("chute_deleted", {"chute_id": chute_id, "version": "1"})

        def gone() -> bool:
            left = kubectl(f"-n {NAMESPACE} get jobs,services,pods -l {selector} -o name")
            return not left.strip() and not self.deployments(cli_venv)

        wait_for("the chute's objects and deployment to go", gone, 180)
        if (chute_id, instance_id) not in miner_api.state.deleted_instances:
            raise Failed(f"the validator was not told: {miner_api.state.deleted_instances}")
        claimed = [g for g in self.of_node(cli_venv, "gpus") if g.get("deployment_id")]
        if claimed:
            raise Failed(f"GPUs still claimed after chute_deleted: {claimed}")
        if miner_api.state.bad_signatures:
            raise Failed(f"bad signatures on {miner_api.state.bad_signatures}")
        self.step("chute_deleted: validator told, Job, Service and pod gone, GPU released", t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", default="gpu-0")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--no-chute", action="store_true", help="add-node only")
    opts = parser.parse_args()
    started = time.monotonic()
    try:
        Journey(opts.node, opts.timeout, chute=not opts.no_chute).run()
    except (Failed, subprocess.TimeoutExpired) as exc:
        sys.stderr.write(f"lab: add-node FAILED: {exc}\n{diagnostics()}\n")
        return 1
    say(f"end to end passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
