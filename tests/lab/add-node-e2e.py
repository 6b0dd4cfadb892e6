"""add-node in the lab, end to end (lab.sh add-node, after lab.sh up):

    the real `chutes-miner` CLI (0.9.0) on this machine
      -> the miner API in the lab cluster (node port on cpu-0)
      -> a GraVal bootstrap Job on the GPU node, run by its real kubelet and containerd from the
         lab's graval image (pulled through the lab mirror)
      -> the API reads the devices from the Job's Service
      -> registers them with the validator and polls the verification
      -> the server and its GPUs in the API's inventory, the node labelled, the Job cleaned up.

Stand-ins, for what cannot exist here: the validator (control_api/tests/standins.py, started by
this script on the lab network's gateway address, which inventories/lab names as its validator);
the GPUs (the graval lab image's stand-in Miner with made-up devices, and nvidia.com/gpu on the
GPU nodes from the lab's node-status step). Everything else is the product.

Idempotent: a node already in the inventory is deleted first (through the CLI), so a rerun
proves the same path. Prints one line per step with its duration; exit 1 on the first failure,
with the pods, Jobs and events of the namespace.

    python tests/lab/add-node-e2e.py [--node gpu-0] [--timeout 600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "control_api"))  # its tests package: the stand-ins, the CLI venv

from tests.cli_venv import ensure_cli_venv  # noqa: E402
from tests.standins import StandinValidator  # noqa: E402

LAB_DIR = Path(os.environ.get("CHUTES_LAB_DIR", "/tmp/chutes-miner-lab"))
LAB_KEY = os.environ.get("CHUTES_LAB_KEY", str(LAB_DIR / "id_ed25519"))
PRIMARY = "10.89.77.10"
KUBECONFIG = "/etc/chutes-miner/kubeconfig/admin.conf"
NAMESPACE = "chutes"


class Failed(Exception):
    pass


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
            f"-n {NAMESPACE} get pods,jobs,services -o wide; "
            f"kubectl --kubeconfig {KUBECONFIG} -n {NAMESPACE} get events "
            "--sort-by=.lastTimestamp | tail -25"
        )
    except Failed as exc:
        return str(exc)


class Journey:
    def __init__(self, node: str, timeout_s: float) -> None:
        self.node = node
        self.timeout_s = timeout_s
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
        validator = StandinValidator(
            str(self.validator_entry["hotkey"]), self.miner_ss58, host=host, port=int(port)
        ).start()
        try:
            self._journey(cli_venv, validator)
        finally:
            validator.stop()

    def _journey(self, cli_venv: Path, validator: StandinValidator) -> None:
        t = time.monotonic()
        names = [str(s.get("name")) for s in self.inventory(cli_venv)]
        self.step(f"API answers the CLI at {self.api} (servers: {names or 'none'})", t)
        if self.node in names:
            t = time.monotonic()
            self.cli(cli_venv, "delete-node", "--name", self.node)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", default="gpu-0")
    parser.add_argument("--timeout", type=float, default=600)
    opts = parser.parse_args()
    started = time.monotonic()
    try:
        Journey(opts.node, opts.timeout).run()
    except (Failed, subprocess.TimeoutExpired) as exc:
        sys.stderr.write(f"lab: add-node FAILED: {exc}\n{diagnostics()}\n")
        return 1
    say(f"end to end passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
