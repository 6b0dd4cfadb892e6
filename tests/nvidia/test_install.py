"""playbooks/nvidia.yml installing, replacing and re-running the driver for real on a test node
(a namespaced copy-on-write root of this machine, tests/sandbox/run.sh) that says it is Ubuntu
22.04 (a stand-in /etc/os-release). Its only apt source is a stand-in CUDA repository on the test
web server, standing in for the file the mirrors role writes from mirrors_effective: stand-in
packages with the real names, versions and dependencies (built here with dpkg-deb), whose
nvidia-smi, nvidia-ctk and update-initramfs are small recorders. No kernel module is ever
loaded, so every run ends with the "reboot needed" warning and never reboots.

Proves: the branch's packages come from that repository and are held; fabric manager has the
driver's exact version; a second run changes nothing; another branch is refused without
nvidia_driver_replace and changes nothing; with it, only the old branch's packages are removed
(the container toolkit stays); the initramfs is rebuilt once for the nouveau blacklist.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from email.utils import formatdate
from pathlib import Path
from typing import Any

import yaml

from tests.ansible_env import REPO
from tests.sandbox import (
    failed_msgs,
    install,
    inventory_hosts,
    needs_namespaces,
    play,
    tasks,
    written,
)

pytestmark = needs_namespaces

PLAYBOOK = REPO / "playbooks" / "nvidia.yml"
STANDINS = Path(__file__).resolve().parent / "standins"
NODES = {"gpu-t": "192.168.0.3"}
REPO_URL = "http://127.0.0.1:8717/cuda/"
DRIVERS = {"570": "570.172.08", "580": "580.95.05"}
OS_RELEASE = """PRETTY_NAME="Ubuntu 22.04.5 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.5 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=jammy
"""
LSB_RELEASE = "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_CODENAME=jammy\n"
# Only the stand-in CUDA repository: the machine's own sources are hidden in the node.
PREPARE = f"""#!/bin/sh
set -e
root=$1
rm -f "$root"/etc/apt/sources.list "$root"/etc/apt/sources.list.d/*
cat > "$root/etc/apt/sources.list.d/cuda.sources" <<SOURCES
Types: deb
URIs: {REPO_URL}
Suites: /
Trusted: yes
SOURCES
"""


def _deb(
    build: Path,
    out: Path,
    name: str,
    version: str,
    depends: str = "",
    files: dict[str, str] | None = None,
) -> None:
    root = build / f"{name}_{version}"
    (root / "DEBIAN").mkdir(parents=True)
    control = [
        f"Package: {name}",
        f"Version: {version}",
        "Architecture: all",
        "Maintainer: chutes.miner tests <tests@invalid>",
        f"Description: STAND-IN for {name} (tests/nvidia), no driver inside",
    ]
    if depends:
        control.append(f"Depends: {depends}")
    (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    for path, text in (files or {}).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if "/bin/" in path:
            target.chmod(0o755)
    subprocess.run(
        [
            "dpkg-deb",
            "--root-owner-group",
            "--build",
            str(root),
            str(out / f"{name}_{version}.deb"),
        ],
        check=True,
        capture_output=True,
    )


def _repository(work: Path) -> None:
    out = work / "www" / "cuda"
    out.mkdir(parents=True)
    build = work / "build"
    smi = (STANDINS / "nvidia-smi").read_text()
    recorder = (STANDINS / "recorder").read_text()
    unit = (
        "[Unit]\nDescription=stand-in {0}\n[Service]\nExecStart=/bin/true\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    for branch, upstream in DRIVERS.items():
        version = f"{upstream}-0ubuntu0.22.04.1"
        pin = f"(= {version})"
        _deb(
            build,
            out,
            f"nvidia-driver-{branch}-server-open",
            version,
            f"nvidia-utils-{branch}-server {pin}, nvidia-compute-utils-{branch}-server {pin}, "
            f"libnvidia-compute-{branch}-server {pin}, "
            f"linux-modules-nvidia-{branch}-server-open-generic",
        )
        _deb(
            build,
            out,
            f"nvidia-utils-{branch}-server",
            version,
            files={"/usr/bin/nvidia-smi": smi.replace("@VERSION@", upstream)},
        )
        _deb(
            build,
            out,
            f"nvidia-compute-utils-{branch}-server",
            version,
            files={
                "/usr/bin/nvidia-persistenced": recorder,
                "/lib/systemd/system/nvidia-persistenced.service": unit.format("persistenced"),
            },
        )
        _deb(build, out, f"libnvidia-compute-{branch}-server", version)
        _deb(build, out, f"linux-modules-nvidia-{branch}-server-open-generic", "5.15.0-130.140")
        # The CUDA repository's fabric manager: same upstream version, its own revision.
        _deb(
            build,
            out,
            f"nvidia-fabricmanager-{branch}",
            f"{upstream}-1",
            files={
                "/lib/systemd/system/nvidia-fabricmanager.service": unit.format("fabricmanager")
            },
        )
    _deb(
        build,
        out,
        "nvidia-container-toolkit",
        "1.17.8-1",
        files={"/usr/bin/nvidia-ctk": recorder, "/usr/bin/nvidia-container-runtime": recorder},
    )
    packages = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "."],
        cwd=out,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (out / "Packages").write_text(packages)
    digest = hashlib.sha256(packages.encode()).hexdigest()
    (out / "Release").write_text(
        "Origin: chutes.miner tests\nLabel: stand-in CUDA repository\n"
        f"Date: {formatdate(usegmt=True)}\n"
        f"SHA256:\n {digest} {len(packages.encode())} Packages\n"
    )


def _setup(work: Path) -> None:
    _repository(work)
    etc = work / "setup" / "all" / "etc"
    etc.mkdir(parents=True)
    (etc / "os-release").write_text(OS_RELEASE)
    (etc / "lsb-release").write_text(LSB_RELEASE)
    (etc / "udev" / "rules.d").mkdir(parents=True)  # udev, as on every Ubuntu host
    install(work, STANDINS / "recorder", "/usr/sbin/update-initramfs")
    prepare = work / "setup" / "prepare"
    prepare.write_text(PREPARE)
    prepare.chmod(0o755)


def _run(work: Path, **settings: Any) -> tuple[int, dict[str, Any], str]:
    hosts = inventory_hosts(work, NODES)
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "community.general.chroot",
                "ansible_python_interpreter": sys.executable,
                "mirrors_effective": {"profile": "custom", "cuda_repo": REPO_URL},
                "nvidia_fabricmanager": "always",
                # No containerd on the test node.
                "nvidia_containerd_dropin_dir": "",
                **settings,
            },
            "children": {"chutes_gpu": {"hosts": hosts}},
        }
    }
    path = work / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return play(work, NODES, path, PLAYBOOK)


def _dpkg(work: Path) -> dict[str, tuple[str, str]]:
    """name -> (version, selection) from the node's dpkg status file."""
    status = written(work, "gpu-t", "/var/lib/dpkg/status").read_text()
    out = {}
    for stanza in status.split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in stanza.splitlines()
            if ": " in line and not line.startswith(" ")
        )
        name = fields.get("Package", "")
        if name.startswith(("nvidia", "libnvidia", "linux-modules-nvidia")) and fields.get(
            "Status", ""
        ).endswith(" installed"):
            out[name] = (fields["Version"], fields["Status"].split()[0])
    return out


def _steps(work: Path) -> dict[str, Any]:
    _setup(work)
    steps: dict[str, Any] = {}
    for name, settings in (
        ("first", {"nvidia_driver_branch": "570"}),
        ("other_branch", {"nvidia_driver_branch": "580"}),
        ("replace", {"nvidia_driver_branch": "580", "nvidia_driver_replace": True}),
        ("rerun", {"nvidia_driver_branch": "580", "nvidia_driver_replace": True}),
    ):
        rc, report, tail = _run(work, **settings)
        steps[name] = {"rc": rc, "report": report, "tail": tail, "dpkg": _dpkg(work)}
    return {"work": work, **steps}


def _check_first_install_of_the_pinned_branch_from_the_cuda_repository(
    node: dict[str, Any],
) -> None:
    first = node["first"]
    assert first["rc"] == 0, (failed_msgs(first["report"]), first["tail"])
    held = {n: v for n, (v, sel) in first["dpkg"].items() if sel == "hold"}
    assert held == {
        "nvidia-driver-570-server-open": "570.172.08-0ubuntu0.22.04.1",
        "nvidia-utils-570-server": "570.172.08-0ubuntu0.22.04.1",
        "nvidia-compute-utils-570-server": "570.172.08-0ubuntu0.22.04.1",
        "libnvidia-compute-570-server": "570.172.08-0ubuntu0.22.04.1",
        "linux-modules-nvidia-570-server-open-generic": "5.15.0-130.140",
        "nvidia-fabricmanager-570": "570.172.08-1",
    }
    # The toolkit is installed, not held; nothing of branch 580 came along.
    assert first["dpkg"]["nvidia-container-toolkit"] == ("1.17.8-1", "install")
    assert not any("580" in n for n in first["dpkg"])


def _check_dev_char_links_rule_and_boot_unit(node: dict[str, Any]) -> None:
    rule = written(node["work"], "gpu-t", "/etc/udev/rules.d/71-chutes-miner-nvidia-dev-char.rules")
    assert "create-dev-char-symlinks --create-all" in rule.read_text()
    wants = "/etc/systemd/system/multi-user.target.wants/chutes-nvidia-dev-char.service"
    assert written(node["work"], "gpu-t", wants).is_symlink()
    for unit in ("nvidia-persistenced", "nvidia-fabricmanager"):
        link = f"/etc/systemd/system/multi-user.target.wants/{unit}.service"
        assert written(node["work"], "gpu-t", link).is_symlink(), unit


def _check_nouveau_blacklist_rebuilds_the_initramfs_once(node: dict[str, Any]) -> None:
    blacklist = written(node["work"], "gpu-t", "/etc/modprobe.d/chutes-miner-nouveau.conf")
    assert "blacklist nouveau" in blacklist.read_text()
    log = written(node["work"], "gpu-t", "/var/log/standin-nvidia.log").read_text().splitlines()
    assert log.count("update-initramfs -u") == 1, log


def _check_no_module_loaded_means_a_warning_never_a_reboot(node: dict[str, Any]) -> None:
    for step in ("first", "replace", "rerun"):
        results = tasks(node[step]["report"], "gpu-t")
        assert not results["reboot | Warn that the new driver needs a reboot"].get("skipped")
        assert results["reboot | Reboot to load the new driver"].get("skipped"), step


def _check_another_branch_is_refused_and_nothing_changes(node: dict[str, Any]) -> None:
    step = node["other_branch"]
    assert step["rc"] != 0
    msg = failed_msgs(step["report"])
    assert "driver branch 570 is installed and nvidia_driver_branch is 580" in msg, msg
    assert "更换驱动须显式进行" in msg
    assert step["report"]["stats"]["gpu-t"]["changed"] == 0
    assert step["dpkg"] == node["first"]["dpkg"]


def _check_replace_removes_only_the_old_branch_by_name(node: dict[str, Any]) -> None:
    step = node["replace"]
    assert step["rc"] == 0, (failed_msgs(step["report"]), step["tail"])
    assert not any("570" in n for n in step["dpkg"]), step["dpkg"]
    assert step["dpkg"]["nvidia-container-toolkit"] == ("1.17.8-1", "install")
    assert step["dpkg"]["nvidia-driver-580-server-open"] == ("580.95.05-0ubuntu0.22.04.1", "hold")
    # Fabric manager of the driver's exact upstream version, held too.
    assert step["dpkg"]["nvidia-fabricmanager-580"] == ("580.95.05-1", "hold")
    unholds = tasks(step["report"], "gpu-t")[
        "install | Release the holds of the packages being replaced"
    ]
    assert sorted(r["item"] for r in unholds["results"]) == sorted(
        node["first"]["dpkg"].keys() - {"nvidia-container-toolkit"}
    )


def _check_a_rerun_changes_nothing(node: dict[str, Any]) -> None:
    step = node["rerun"]
    assert step["rc"] == 0, (failed_msgs(step["report"]), step["tail"])
    assert step["report"]["stats"]["gpu-t"]["changed"] == 0
    assert step["dpkg"] == node["replace"]["dpkg"]


def test_install_refuse_replace_rerun(tmp_path: Path) -> None:
    # One test, not one per check: under pytest-xdist a module fixture would run the steps
    # once per worker.
    node = _steps(tmp_path)
    _check_first_install_of_the_pinned_branch_from_the_cuda_repository(node)
    _check_dev_char_links_rule_and_boot_unit(node)
    _check_nouveau_blacklist_rebuilds_the_initramfs_once(node)
    _check_no_module_loaded_means_a_warning_never_a_reboot(node)
    _check_another_branch_is_refused_and_nothing_changes(node)
    _check_replace_removes_only_the_old_branch_by_name(node)
    _check_a_rerun_changes_nothing(node)
