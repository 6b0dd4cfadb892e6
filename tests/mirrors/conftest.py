"""Shared fixtures of the mirrors tests: the catalog, the role's data, the plugins."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import yaml

from tests.ansible_env import REPO

COLLECTION = REPO / "collections" / "ansible_collections" / "chutes" / "miner"
ROLE = COLLECTION / "roles" / "mirrors"
sys.path.insert(0, str(REPO / "tests" / "lab"))


class _Loader(yaml.SafeLoader):
    """Ansible YAML: `!unsafe` and friends are not used in the role's data."""


@pytest.fixture(scope="session")
def catalog() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load((ROLE / "vars" / "catalog.yml").read_text(), Loader=_Loader)
    return data


@pytest.fixture(scope="session")
def resource_defaults(catalog: dict[str, Any]) -> dict[str, Any]:
    """vars/main.yml's resource defaults with the catalog references resolved."""
    raw = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__mirrors_resource_defaults"]
    raw["registries"]["required_images"] = catalog["__mirrors_canaries"]
    raw["files"]["probe_artifact"] = catalog["__mirrors_files_probe"]
    raw["k8s_binaries"]["probe_artifact"] = catalog["__mirrors_k8s_binaries_probe"]
    raw["huggingface"]["probe_path"] = catalog["__mirrors_hf_probe_path"]
    raw["huggingface"]["blocked_redirects"] = catalog["__mirrors_hf_blocked"]
    raw["dns"]["probe_name"] = catalog["__mirrors_dns_probe_name"]
    return dict(raw)
