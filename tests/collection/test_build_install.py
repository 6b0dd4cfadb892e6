"""The collection builds into a tarball that installs offline and works from a separate
directory that has only that tarball and the collections of requirements.yml (which the
`ansible` PyPI package provides)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.ansible_env import REPO
from tests.collection.roles import COLLECTION, all_roles

BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_tarball_installs_offline_and_works_elsewhere(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(tmp_path / "none.cfg")  # not the repository's ansible.cfg
    galaxy = str(BIN / "ansible-galaxy")
    dist = tmp_path / "dist"
    _run([galaxy, "collection", "build", "--output-path", str(dist), str(COLLECTION)], REPO, env)
    version = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())["version"]
    tarball = dist / f"chutes-miner-{version}.tar.gz"
    assert tarball.is_file()

    elsewhere = tmp_path / "operator"
    elsewhere.mkdir()
    installed = elsewhere / "collections"
    # --offline: no Galaxy; dependencies come from the ansible package's site-packages.
    _run(
        [galaxy, "collection", "install", "--offline", "-p", str(installed), str(tarball)],
        elsewhere,
        env,
    )
    env["ANSIBLE_COLLECTIONS_PATH"] = str(installed)
    listing = _run([galaxy, "collection", "list", "--format", "yaml"], elsewhere, env)
    found = {name for by_path in yaml.safe_load(listing).values() for name in by_path}
    required = yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]
    for name in ["chutes.miner", *(c["name"] for c in required)]:
        assert name in found, f"{name} not available to the operator directory"

    doc = str(BIN / "ansible-doc")
    roles = _run([doc, "-t", "role", "-l", "chutes.miner"], elsewhere, env)
    for role in all_roles():
        assert f"chutes.miner.{role.name}" in roles
        _run([doc, "-t", "role", f"chutes.miner.{role.name}"], elsewhere, env)

    # A playbook outside the repository resolves every role from the installed tarball
    # (--syntax-check fails with "role ... was not found" otherwise).
    play = [
        {
            "name": "Use the installed collection",
            "hosts": "localhost",
            "gather_facts": False,
            "roles": [{"role": f"chutes.miner.{role.name}"} for role in all_roles()],
        }
    ]
    (elsewhere / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    playbook = str(BIN / "ansible-playbook")
    _run([playbook, "-i", "localhost,", "--syntax-check", "play.yml"], elsewhere, env)


def test_changelog_fragments_lint() -> None:
    proc = subprocess.run(
        [str(BIN / "antsibull-changelog"), "lint"],
        cwd=COLLECTION,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
