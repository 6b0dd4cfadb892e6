"""What the roles install from the PyPI mirror, the lab's mirror serves: `make lab` runs the
real roles against the lab mirror's static index (tests/lab/mirror/pypi-packages.txt), where a
pin missing from that list is found only after every earlier play has run."""

from __future__ import annotations

import yaml

from tests.ansible_env import REPO

ROLES = REPO / "collections/ansible_collections/chutes/miner/roles"
LAB_PACKAGES = REPO / "tests/lab/mirror/pypi-packages.txt"


def test_the_lab_index_serves_the_kubernetes_client_pins() -> None:
    served = {
        line.strip().lower()
        for line in LAB_PACKAGES.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    defaults = yaml.safe_load((ROLES / "miner_common/defaults/main.yml").read_text())
    pins = [str(p).lower() for p in defaults["miner_common_k8s_client_packages"]]
    assert pins and all("==" in p for p in pins), pins
    missing = [p for p in pins if p not in served]
    assert not missing, f"add to {LAB_PACKAGES.relative_to(REPO)}: {missing}"
