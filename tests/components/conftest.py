"""Fixtures of the component-role tests: a test inventory (the primary and a GPU node, both
local connections), a miner hotkey file, ``playbooks/deploy.yml`` run by ansible-playbook, and
the rendered manifest set (``miner_render_only``), parsed.

What runs where: render-only needs no host and no cluster; the apply tests use the real
control plane of ``tests/k8s/controlplane.py`` (API server without kubelets, so pods stay
Pending and the roles run with ``miner_wait: false``, the variable that exists for this)."""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from bittensor_wallet import Keypair

from tests.ansible_env import REPO, run_playbook
from tests.k8s import controlplane
from tests.k8s.controlplane import ControlPlane

PLAYBOOK = REPO / "playbooks" / "deploy.yml"
ROLES = REPO / "collections/ansible_collections/chutes/miner/roles"
# Two validators (one is mainnet's), so that routing per hotkey is visible in the renders.
VALIDATOR_A = "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ"
GPU_ADDRESS = "192.168.0.3"


def hotkey_file(path: Path, seed_byte: int) -> Keypair:
    seed = "0x" + f"{seed_byte:02x}" * 32
    key = Keypair.create_from_seed(seed)  # type: ignore[arg-type]  # hex str
    path.write_text(json.dumps({"ss58Address": key.ss58_address, "secretSeed": seed}))
    return key


def cluster_vars(cp: ControlPlane, data_dir: Path, **more: Any) -> dict[str, Any]:
    """Extra vars of a deploy against ``cp`` without kubelets: no client install, no wait."""
    return {
        "chutes_kubeconfig": str(cp.kubeconfig),
        "miner_postgres_data_dir": str(data_dir),
        "miner_common_k8s_client_install": False,
        "miner_wait": False,
        **more,
    }


@dataclass
class Deploy:
    """An inventory and hotkey for playbooks/deploy.yml; ``run`` returns (rc, output)."""

    inventory: Path
    hotkey: Path
    key: Keypair
    validator_b: str

    def run(
        self,
        *extra: str,
        env: dict[str, str] | None = None,
        extra_vars: dict[str, Any] | None = None,
    ) -> tuple[int, str]:
        variables = {"ansible_python_interpreter": sys.executable, **(extra_vars or {})}
        return run_playbook(PLAYBOOK, self.inventory, variables, *extra, env=env, timeout=900)


def recap(output: str, host: str = "cpu-0") -> dict[str, int]:
    """The PLAY RECAP counters of ``host``."""
    line = next(x for x in output.splitlines() if re.match(rf"^{re.escape(host)}\s+:", x))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


@pytest.fixture(scope="session")
def deploy(tmp_path_factory: pytest.TempPathFactory) -> Deploy:
    base = tmp_path_factory.mktemp("components")
    hotkey = base / "miner-hotkey.json"
    key = hotkey_file(hotkey, 0x11)
    other = Keypair.create_from_seed("0x" + "22" * 32)  # type: ignore[arg-type]  # hex str
    validator_b = other.ss58_address
    inventory = {
        "all": {
            "vars": {
                "miner_hotkey_path": str(hotkey),
                "chutes_validators": [
                    {
                        "hotkey": VALIDATOR_A,
                        "api": "https://api.chutes.ai",
                        "registry": "registry.chutes.ai",
                        "socket": "wss://ws.chutes.ai",
                    },
                    {
                        "hotkey": validator_b,
                        "api": "https://api.example.net",
                        "registry": "registry.example.net:5000",
                        "socket": "wss://ws.example.net",
                    },
                ],
                "miner_image_registry": "registry.example.cn/chutes",
            },
            "children": {
                "chutes_primary": {"hosts": {"cpu-0": {"ansible_connection": "local"}}},
                "chutes_gpu": {
                    "hosts": {
                        "gpu-0": {"ansible_connection": "local", "wireguard_address": GPU_ADDRESS}
                    }
                },
                "chutes_workers": {"children": {"chutes_gpu": {}}},
            },
        }
    }
    path = base / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return Deploy(path, hotkey, key, validator_b)


def load_dir(root: Path) -> dict[str, dict[str, Any]]:
    """``<group>/<file>`` -> the object, for every manifest under ``root``."""
    out = {}
    for path in sorted(root.glob("*/*.yaml")):
        out[f"{path.parent.name}/{path.name}"] = yaml.safe_load(path.read_text())
    return out


@dataclass
class Rendered:
    root: Path
    objects: dict[str, dict[str, Any]]
    first: str  # output of the first run
    second: str  # output of the rerun

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [
            o for o in self.objects.values() if o["kind"] == kind and o["metadata"]["name"] == name
        ]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} in the rendered set"
        return found[0]

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [o for o in self.objects.values() if o["kind"] in kinds]


@pytest.fixture(scope="session")
def rendered(deploy: Deploy, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """deploy.yml with miner_render_only, run twice into the same directory."""
    root = tmp_path_factory.mktemp("rendered") / "manifests"
    render = {"miner_render_only": True, "miner_render_dir": str(root)}
    rc, first = deploy.run(extra_vars=render)
    assert rc == 0, first[-4000:]
    rc, second = deploy.run(extra_vars=render)
    assert rc == 0, second[-4000:]
    return Rendered(root, load_dir(root), first, second)


@pytest.fixture(scope="module")
def fresh_control_plane() -> Iterator[ControlPlane]:
    """A control plane of this module's own (the roles' runs must not meet other tests'
    objects in namespace chutes); no controller manager: nothing here needs one."""
    try:
        cp = controlplane.start(controller_manager=False)
    except controlplane.BinariesMissing as exc:
        pytest.fail(str(exc))
    try:
        yield cp
    finally:
        cp.stop()


SECRETS = ("postgres-secret", "redis-secret", "registry-auth", "miner-credentials")


def read_secrets(cp: ControlPlane) -> dict[str, dict[str, str]]:
    """The generated Secrets in namespace chutes, decoded."""
    out = {}
    for name in SECRETS:
        live = json.loads(cp.kubectl("get", "secret", name, "-n", "chutes", "-o", "json").stdout)
        out[name] = {k: base64.b64decode(v).decode() for k, v in live["data"].items()}
    return out
