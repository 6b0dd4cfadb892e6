"""chutes.miner.manifest_dir: a directory holds exactly the rendered manifests, 0600."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chutes.miner.plugins.modules.manifest_dir import write_dir


def test_writes_what_differs_and_removes_the_rest(tmp_path: Path, module: AnsibleModule) -> None:
    root = tmp_path / "10-miner_postgres"
    files = {"service.yaml": "kind: Service\n", "deployment.yaml": "kind: Deployment\n"}
    assert write_dir(module, str(root), files, check=True) == (
        ["deployment.yaml", "service.yaml"],
        [],
    )
    assert not root.exists()
    assert write_dir(module, str(root), files) == (["deployment.yaml", "service.yaml"], [])
    assert (root / "service.yaml").read_text() == "kind: Service\n"
    assert (root / "service.yaml").stat().st_mode & 0o777 == 0o600
    assert root.stat().st_mode & 0o777 == 0o700
    assert write_dir(module, str(root), files) == ([], [])  # a rerun changes nothing
    (root / "old.yaml").write_text("kind: Old\n")
    (root / "notes.txt").write_text("kept")
    (root / "service.yaml").chmod(0o644)
    assert write_dir(module, str(root), {**files, "deployment.yaml": "kind: D2\n"}) == (
        ["deployment.yaml", "service.yaml"],
        ["old.yaml"],
    )
    assert sorted(p.name for p in root.iterdir()) == [
        "deployment.yaml",
        "notes.txt",
        "service.yaml",
    ]


@pytest.mark.parametrize("name", ["../x.yaml", "sub/x.yaml", "x.yml", ".hidden.yaml"])
def test_refuses_names_outside_the_directory(
    tmp_path: Path, module: AnsibleModule, name: str
) -> None:
    with pytest.raises(ValueError, match="not a plain"):
        write_dir(module, str(tmp_path), {name: "x"})
    assert list(tmp_path.iterdir()) == []
