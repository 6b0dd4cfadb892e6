# Copyright: chutes.miner developers
# MIT License
"""The files the ``chutes.miner.mirrors`` role writes, backs up or restores for a plan and a
selection (rendered on the controller by the ``chutes.miner.mirror_files`` filter).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ansible_collections.chutes.miner.plugins.module_utils.mirrors_common import (
    FLAT_APT,
    WORKLOAD_ENV_FILE,
    host_paths,
)

FACT_PATH = "/etc/ansible/facts.d/chutes_mirrors.fact"
CERTS_DIRS = {
    "containerd": "/etc/containerd/certs.d",
    "microk8s": "/var/snap/microk8s/current/args/certs.d",
}


def _group_files(host: dict[str, Any], settings: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    dist = "ubuntu" if host.get("distribution") == "Ubuntu" else "debian"
    paths = host_paths(host)
    apt = [
        {
            "dest": f"/etc/apt/sources.list.d/{dist}.sources",
            "src": f"etc/apt/sources.list.d/{dist}.sources.j2",
            "apt": True,
        },
        {"dest": "/etc/apt/sources.list", "src": "etc/apt/sources.list.j2", "apt": True},
        {
            "dest": "/etc/apt/apt.conf.d/80-mirrors",
            "src": "etc/apt/apt.conf.d/80-mirrors.j2",
            "apt": False,
        },
    ]
    flat: dict[str, list[dict[str, Any]]] = {}
    for res, (name, keyring) in FLAT_APT.items():
        flat[res] = [
            {
                "dest": f"/etc/apt/sources.list.d/{name}.sources",
                "src": "etc/apt/sources.list.d/flat.sources.j2",
                "apt": True,
                "resource": res,
                "keyring": keyring,
            },
            {
                "dest": keyring,
                "src": "",
                "apt": False,
                "key": True,
                "resource": res,
                "key_file": str(settings.get(res, {}).get("key_file", "")),
                "fingerprint": "".join(
                    str(settings.get(res, {}).get("key_fingerprint", "")).split()
                ).upper(),
            },
        ]
    # NVIDIA's cuda-keyring package drops this .list (its host, another Signed-By for the same
    # repo): backed up and removed while the role writes cuda.sources (docs/mirrors.md §2.3).
    flat["cuda_apt"].append(
        {
            "dest": f"/etc/apt/sources.list.d/cuda-{paths['distro']}-{paths['arch']}.list",
            "src": "",
            "apt": False,
            "remove": True,
        }
    )
    # Both repos carry the toolkit packages: pin them to the toolkit repo (docs/mirrors.md §2.3).
    flat["nct_apt"].append(
        {
            "dest": "/etc/apt/preferences.d/60-mirrors-nvidia-container-toolkit",
            "src": "etc/apt/preferences.d/60-mirrors-nvidia-container-toolkit.j2",
            "apt": False,
        }
    )
    pypi = [{"dest": "/etc/pip.conf", "src": "etc/pip.conf.j2", "apt": False}]
    if settings.get("pypi", {}).get("uv", True):
        pypi.append({"dest": "/etc/uv/uv.toml", "src": "etc/uv/uv.toml.j2", "apt": False})
    env = [
        {
            "dest": "/etc/profile.d/60-mirrors.sh",
            "src": "etc/profile.d/60-mirrors.sh.j2",
            "apt": False,
        },
        {
            "dest": "/etc/environment.d/60-mirrors.conf",
            "src": "etc/environment.d/60-mirrors.conf.j2",
            "apt": False,
        },
        {"dest": WORKLOAD_ENV_FILE, "src": "etc/chutes-miner/mirrors.env.j2", "apt": False},
    ]
    return {"apt": apt, **flat, "pypi": pypi, "env": env}


def files_plan(
    plan: dict[str, Any], selection: dict[str, Any], microk8s: bool = False
) -> dict[str, Any]:
    """Which files to write (and from which template), which to restore, which to keep.

    Resources without a chosen mirror are restored (``none``, ``on_failure: upstream``)
    or left alone (``on_failure: warn``).
    """
    res = plan.get("resources", {})
    host = plan.get("host", {})
    settings = {k: v.get("settings", {}) for k, v in res.items()}
    chosen = selection.get("chosen", {})
    failed = selection.get("failed", {})
    groups = _group_files(host, settings)
    reg_settings = settings.get("registries", {})
    dirs = [
        CERTS_DIRS[r]
        for r in reg_settings.get("runtimes", ["containerd", "microk8s"])
        if r in CERTS_DIRS
    ]
    dirs = [d for d in dirs if d != CERTS_DIRS["microk8s"] or microk8s]
    write: list[dict[str, Any]] = []
    remove: list[str] = []
    restore: list[str] = []
    for group, files in groups.items():
        source = "pypi" if group == "env" else group
        if group == "env":
            active = bool(chosen.get("pypi") or chosen.get("huggingface"))
            kept = any(failed.get(g) == "warn" for g in ("pypi", "huggingface"))
        else:
            active = bool(chosen.get(group)) and bool(res.get(group, {}).get("enabled"))
            kept = failed.get(source) == "warn"
        if group in FLAT_APT and not settings.get(group, {}).get("write_sources", True):
            active = False
        if active:
            if group in FLAT_APT:  # the sources file and the apt pin name the chosen repo
                uri = str(chosen[group][0]["url"])
                files = [{**f, "uri": uri, "origin": urlsplit(uri).hostname or ""} for f in files]
            write.extend(f for f in files if not f.get("remove"))
            remove.extend(f["dest"] for f in files if f.get("remove"))
        elif not kept:
            restore.extend(f["dest"] for f in files)
    for registry in sorted(res.get("registries", {}).get("groups", {})):
        if registry in chosen and res["registries"].get("enabled"):
            for d in dirs:
                write.append(
                    {
                        "dest": f"{d}/{registry}/hosts.toml",
                        "src": "etc/containerd/certs.d/hosts.toml.j2",
                        "apt": False,
                        "registry": registry,
                    }
                )
    write.append(
        {"dest": FACT_PATH, "src": "etc/ansible/facts.d/chutes_mirrors.fact.j2", "apt": False}
    )
    all_paths = [
        f["dest"] for files in _group_files(host, {"pypi": {"uv": True}}).values() for f in files
    ]
    if plan.get("profile") == "none":
        write, remove, restore = [], [], all_paths + [FACT_PATH]
    keep = [f["dest"] for f in write]
    return {
        "write": write,
        "remove": remove,
        "restore": [p for p in dict.fromkeys(restore) if p not in keep],
        "globs": [f"{d}/*/hosts.toml" for d in CERTS_DIRS.values()],
        "keep": keep,
        # a change to one of these needs apt-get update: sources, keys, set-aside .list
        "apt_paths": [
            f["dest"]
            for g in ("apt", *FLAT_APT)
            for f in groups[g]
            if f["apt"] or f.get("key") or f.get("remove")
        ],
    }
