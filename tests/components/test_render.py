"""Render-only mode (miner_render_only): every manifest written from the roles' templates, one
object per file, nothing contacted; a rerun rewrites nothing and keeps the generated secrets;
bad input stops the run with a message and changes nothing."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Any

from tests.components.conftest import ROLES, Deploy, Rendered, hotkey_file, load_dir, recap

GROUPS = {
    "00-miner_common": "miner_common",
    "10-miner_postgres": "miner_postgres",
    "20-miner_redis": "miner_redis",
    "25-miner_graval": "miner_graval",
    "30-miner_api": "miner_api",
    "31-miner_api": "miner_api",
    "32-miner_scheduler": "miner_scheduler",
    "40-miner_registry_proxy": "miner_registry_proxy",
}


def test_every_template_is_rendered_once(rendered: Rendered) -> None:
    """Each role's templates (minus nginx.conf.j2, which is inside a ConfigMap) become one file
    each in that role's group(s); miner_graval's NetworkPolicy and the scheduler's strategy
    ConfigMap are off by default."""
    for role in set(GROUPS.values()):
        found = (ROLES / role / "templates").glob("*.yaml.j2")
        templates = {t.name.removesuffix(".j2") for t in found}
        files = [
            name.split("/", 1)[1] for name in rendered.objects if GROUPS[name.split("/")[0]] == role
        ]
        assert len(files) == len(set(files)), role
        missing = {
            "miner_graval": {"networkpolicy.yaml"},
            "miner_scheduler": {"configmap-strategy.yaml"},
        }.get(role, set())
        assert set(files) == templates - missing, role
    for name, obj in rendered.objects.items():
        assert isinstance(obj, dict) and {"apiVersion", "kind", "metadata"} <= set(obj), name


def test_files_carry_the_managed_by_header_and_are_private(rendered: Rendered) -> None:
    for path in rendered.root.glob("*/*.yaml"):
        text = path.read_text()
        role = GROUPS[path.parent.name]
        assert f"# managed-by: chutes.miner.{role}" in text, path
        assert "Ansible managed" in text, path
        assert path.stat().st_mode & 0o777 == 0o600, path
        assert path.parent.stat().st_mode & 0o777 == 0o700, path


def test_rerun_changes_nothing(rendered: Rendered) -> None:
    assert recap(rendered.first)["changed"] > 0
    assert recap(rendered.second)["changed"] == 0, rendered.second[-3000:]
    assert recap(rendered.second)["failed"] == 0


def test_secrets_are_generated_once_and_url_safe(rendered: Rendered, deploy: Deploy) -> None:
    values = {}
    for name, key in (
        ("postgres-secret", "postgres-password"),
        ("redis-secret", "redis-password"),
        ("registry-auth", "token"),
    ):
        value = base64.b64decode(rendered.get("Secret", name)["data"][key]).decode()
        assert re.fullmatch(r"[A-Za-z0-9]{32}", value), name
        values[name] = value
    assert len(set(values.values())) == 3
    creds = rendered.get("Secret", "miner-credentials")["data"]
    assert base64.b64decode(creds["ss58"]).decode() == deploy.key.ss58_address
    assert base64.b64decode(creds["seed"]).decode() == "11" * 32  # no 0x
    # the registry proxy's include file carries the same token
    auth = rendered.get("Secret", "registry-proxy-auth")["data"]["auth-token.conf"]
    assert base64.b64decode(auth).decode() == (
        f'proxy_set_header X-Registry-Auth-Token "{values["registry-auth"]}";\n'
    )
    # no secret value appears in the playbook's output
    for value in [*values.values(), "11" * 32]:
        assert value not in rendered.first + rendered.second


def _copy(rendered: Rendered, tmp_path: Path) -> Path:
    root = tmp_path / "manifests"
    shutil.copytree(rendered.root, root)
    return root


def _rerender(rendered: Rendered, deploy: Deploy, tmp_path: Path, **changes: Any) -> list[str]:
    """Render into a copy of the set with ``changes``; the files that differ afterwards."""
    root = _copy(rendered, tmp_path)
    rc, out = deploy.run(
        extra_vars={"miner_render_only": True, "miner_render_dir": str(root), **changes}
    )
    assert rc == 0, out[-3000:]
    after = load_dir(root)
    assert set(after) == set(rendered.objects)
    return sorted(k for k in after if after[k] != rendered.objects[k])


def test_rotation_replaces_only_the_named_secret_and_rolls_its_readers(
    rendered: Rendered, deploy: Deploy, tmp_path: Path
) -> None:
    changed = _rerender(rendered, deploy, tmp_path, miner_common_rotate=["redis"])
    # redis-secret and the pods that read it (every control_api process reads every Secret)
    assert changed == [
        "00-miner_common/secret-redis.yaml",
        "20-miner_redis/deployment.yaml",
        "31-miner_api/deployment-api.yaml",
        "31-miner_api/deployment-registry-auth.yaml",
        "31-miner_api/deployment-relay.yaml",
        "32-miner_scheduler/deployment.yaml",
    ]
    after = load_dir(tmp_path / "manifests")
    for name in changed[1:]:
        old = rendered.objects[name]["spec"]["template"]
        new = after[name]["spec"]["template"]
        assert old["spec"] == new["spec"], name  # only the checksum annotation differs
        assert old["metadata"]["annotations"] != new["metadata"]["annotations"], name


def test_a_validator_change_rolls_only_its_readers(
    rendered: Rendered, deploy: Deploy, tmp_path: Path
) -> None:
    validators = [
        {
            "hotkey": "5Dt7HZ7Zpw4DppPxFM7Ke3Cm7sDAWhsZXmM5ZAmE7dSVJbcQ",
            "api": "https://api.chutes.ai",
            "registry": "registry.chutes.ai",
            "socket": "wss://ws.chutes.ai",
        }
    ]
    changed = _rerender(rendered, deploy, tmp_path, chutes_validators=validators)
    assert changed == [
        "30-miner_api/configmap.yaml",
        "31-miner_api/deployment-api.yaml",
        "31-miner_api/deployment-registry-auth.yaml",
        "31-miner_api/deployment-relay.yaml",
        "32-miner_scheduler/deployment.yaml",
        "40-miner_registry_proxy/configmap.yaml",
        "40-miner_registry_proxy/daemonset.yaml",
    ]


def test_a_different_hotkey_is_refused_and_nothing_changes(
    rendered: Rendered, deploy: Deploy, tmp_path: Path
) -> None:
    root = _copy(rendered, tmp_path)
    other = tmp_path / "other-hotkey.json"
    other_key = hotkey_file(other, 0x33)
    rc, out = deploy.run(
        extra_vars={
            "miner_render_only": True,
            "miner_render_dir": str(root),
            "miner_hotkey_path": str(other),
        }
    )
    assert rc != 0
    assert f"The cluster holds miner hotkey {deploy.key.ss58_address}" in out
    assert other_key.ss58_address in out and "集群中保存的矿工 hotkey" in out
    assert "33" * 32 not in out
    assert load_dir(root) == rendered.objects
    rc, out = deploy.run(
        extra_vars={
            "miner_render_only": True,
            "miner_render_dir": str(root),
            "miner_hotkey_path": str(other),
            "miner_common_credentials_replace": True,
        }
    )
    assert rc == 0, out[-3000:]


def test_an_unreadable_hotkey_file_is_refused(deploy: Deploy, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"ss58Address": "5notanaddress", "secretSeed": "0x1234"}')
    for path in (bad, tmp_path / "missing.json"):
        rc, out = deploy.run(
            extra_vars={
                "miner_render_only": True,
                "miner_render_dir": str(tmp_path / "out"),
                "miner_hotkey_path": str(path),
            }
        )
        assert rc != 0
        assert "must be a readable hotkey file" in out and "必须是控制机上可读的 hotkey 文件" in out
    assert not (tmp_path / "out").exists()


def test_render_only_needs_an_absolute_directory(deploy: Deploy) -> None:
    rc, out = deploy.run(extra_vars={"miner_render_only": True, "miner_render_dir": "relative/dir"})
    assert rc != 0 and "miner_render_only needs miner_render_dir" in out


def test_switching_off_an_object_removes_its_file(
    rendered: Rendered, deploy: Deploy, tmp_path: Path
) -> None:
    root = _copy(rendered, tmp_path)
    on = {"miner_render_only": True, "miner_render_dir": str(root)}
    rc, out = deploy.run(extra_vars={**on, "miner_graval_network_policy": True})
    assert rc == 0, out[-3000:]
    assert (root / "25-miner_graval/networkpolicy.yaml").is_file()
    rc, out = deploy.run(extra_vars=on)
    assert rc == 0, out[-3000:]
    assert not (root / "25-miner_graval/networkpolicy.yaml").exists()
    assert load_dir(root) == rendered.objects
