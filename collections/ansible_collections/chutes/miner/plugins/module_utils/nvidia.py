# Copyright: chutes.miner developers
# MIT License
"""Pure logic of the ``chutes.miner.nvidia`` role: what to install, hold, remove, reboot.

No Ansible imports: the filter plugin and the unit tests use these functions directly. The
role reads the host (dpkg, nvidia-smi, the loaded module, NVSwitch bridges, apt sources),
passes what it read here, and does only what the returned plan says.
"""

from __future__ import annotations

import re
from typing import Any

BRANCH = re.compile(r"^[4-9][0-9]{2}$")
CUDA_VERSION = re.compile(r"^[0-9]{2}-[0-9]$")
# An NVIDIA upstream driver version: 580.95.05, 570.172.08, 535.261.03.
DRIVER_VERSION = re.compile(r"^[0-9]{3}\.[0-9]+(\.[0-9]+)?$")
FABRICMANAGER = ("auto", "always", "never")
SUPPORTED_INSTALL = ("Ubuntu",)
# The driver packages of one branch, as Ubuntu and the CUDA repo name them:
# nvidia-driver-580-server-open, libnvidia-compute-580-server, nvidia-fabricmanager-580,
# linux-modules-nvidia-580-server-open-generic, nvidia-dkms-580-server-open, ...
_BRANCH_PKG = re.compile(
    r"^(lib)?(linux-(modules|objects|signatures)-)?nvidia-(.*?-)?([4-9][0-9]{2})(-|$)"
)
_DRIVER_META = re.compile(r"^nvidia-driver-([4-9][0-9]{2})(-server)?(-open)?$")
_HEADLESS = re.compile(r"^nvidia-headless(-no-dkms)?-([4-9][0-9]{2})(-server)?(-open)?$")


def _problem(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh": zh}


def upstream_version(deb_version: str) -> str:
    """``1:580.95.05-0ubuntu0.22.04.1`` -> ``580.95.05`` (no epoch, no Debian revision)."""
    version = str(deb_version or "").strip()
    if ":" in version:
        version = version.split(":", 1)[1]
    return version.split("-", 1)[0]


def branch_of(version: str) -> str:
    """The driver branch of an upstream version (``580.95.05`` -> ``580``), else ``''``."""
    version = upstream_version(version)
    return version.split(".", 1)[0] if DRIVER_VERSION.match(version) else ""


def driver_package(branch: str) -> str:
    """The driver package the role installs: server flavour, open kernel modules."""
    return f"nvidia-driver-{branch}-server-open"


def fabricmanager_package(branch: str) -> str:
    return f"nvidia-fabricmanager-{branch}"


def parse_dpkg(text: str) -> dict[str, dict[str, Any]]:
    """``dpkg-query -W -f '${Package}\\t${Version}\\t${Status}\\n'`` -> {name: {version, hold}}.

    Only packages that are installed (status ``... ok installed``) are kept.
    """
    out: dict[str, dict[str, Any]] = {}
    for line in str(text or "").splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        name, version, status = (p.strip() for p in parts)
        words = status.split()
        if len(words) != 3 or words[2] not in ("installed", "half-configured", "unpacked"):
            continue
        out[name] = {"version": version, "hold": words[0] == "hold", "state": words[2]}
    return out


def installed_branches(packages: dict[str, dict[str, Any]]) -> list[str]:
    """Branches with an installed driver meta or headless package, sorted."""
    found = set()
    for name in packages:
        for rx, group in ((_DRIVER_META, 1), (_HEADLESS, 2)):
            match = rx.match(name)
            if match:
                found.add(match.group(group))
    return sorted(found)


def branch_packages(packages: dict[str, dict[str, Any]], branch: str) -> list[str]:
    """Installed packages that belong to one driver branch (by name), sorted.

    Never a regular expression over "nvidia|cuda": CUDA libraries, the container toolkit and
    packages of other branches are not in this list.
    """
    out = []
    for name in packages:
        match = _BRANCH_PKG.match(name)
        if match and match.group(5) == branch:
            out.append(name)
    return sorted(out)


def _smi_version(smi: dict[str, Any]) -> str:
    if int(smi.get("rc", 1)) != 0:
        return ""
    lines = [ln.strip() for ln in str(smi.get("stdout", "")).splitlines() if ln.strip()]
    versions = sorted({ln for ln in lines if DRIVER_VERSION.match(ln)})
    return versions[0] if len(versions) == 1 else ""


def _check_settings(s: dict[str, Any]) -> list[dict[str, str]]:
    problems = []
    for key in ("nvidia_driver_branch", "nvidia_min_driver_branch"):
        if not BRANCH.match(str(s.get(key, ""))):
            problems.append(
                _problem(
                    f"{key}={s.get(key)!r} is not a driver branch such as 580",
                    f"{key}={s.get(key)!r} 不是驱动分支（例如 580）",
                )
            )
    version = str(s.get("nvidia_driver_version", "") or "")
    branch = str(s.get("nvidia_driver_branch", ""))
    if version and (not DRIVER_VERSION.match(version) or branch_of(version) != branch):
        problems.append(
            _problem(
                f"nvidia_driver_version={version!r} is not a version of branch {branch} "
                "(e.g. 580.95.05), or empty for the newest of the branch",
                f"nvidia_driver_version={version!r} 不是分支 {branch} 的版本（例如 580.95.05），"
                "留空则安装该分支最新版本",
            )
        )
    if s.get("nvidia_fabricmanager") not in FABRICMANAGER:
        problems.append(
            _problem(
                f"nvidia_fabricmanager={s.get('nvidia_fabricmanager')!r} is not one of "
                f"{', '.join(FABRICMANAGER)}",
                f"nvidia_fabricmanager={s.get('nvidia_fabricmanager')!r} 不是 "
                f"{'、'.join(FABRICMANAGER)} 之一",
            )
        )
    if s.get("nvidia_install_cuda_toolkit") and not CUDA_VERSION.match(
        str(s.get("nvidia_cuda_version", ""))
    ):
        problems.append(
            _problem(
                f"nvidia_cuda_version={s.get('nvidia_cuda_version')!r} is not a CUDA version "
                "such as 12-8",
                f"nvidia_cuda_version={s.get('nvidia_cuda_version')!r} 不是 CUDA 版本（例如 12-8）",
            )
        )
    for key in (
        "nvidia_install_driver",
        "nvidia_driver_replace",
        "nvidia_require_gpu",
        "nvidia_reboot_allowed",
        "nvidia_install_container_toolkit",
        "nvidia_install_cuda_toolkit",
    ):
        if not isinstance(s.get(key), bool):
            problems.append(
                _problem(
                    f"{key}={s.get(key)!r} must be true or false",
                    f"{key}={s.get(key)!r} 必须为 true 或 false",
                )
            )
    return problems


def plan(settings: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """Decide what the role does on one host, or why it must not touch it.

    ``host``: ``distribution``, ``packages`` (from :func:`parse_dpkg`), ``smi`` (``rc`` and
    ``stdout`` of ``nvidia-smi --query-gpu=driver_version --format=csv,noheader``),
    ``nvswitches`` (NVSwitch bridges found on the PCI bus), ``apt_uris`` (URIs of the apt
    sources under /etc/apt/sources.list.d), ``cuda_repo`` (``mirrors_effective.cuda_repo``).
    """
    s = settings
    problems = _check_settings(s)
    packages: dict[str, dict[str, Any]] = dict(host.get("packages") or {})
    smi_version = _smi_version(dict(host.get("smi") or {}))
    fm_mode = s.get("nvidia_fabricmanager")
    nvswitches = int(host.get("nvswitches") or 0)
    want_fm = fm_mode == "always" or (fm_mode == "auto" and nvswitches > 0)
    branch = str(s.get("nvidia_driver_branch", ""))
    min_branch = str(s.get("nvidia_min_driver_branch", ""))
    result: dict[str, Any] = {
        "mode": "install" if s.get("nvidia_install_driver") is True else "preinstalled",
        "fabricmanager": want_fm,
        "smi_version": smi_version,
        "install": [],
        "remove": [],
        "unhold": [],
        "warnings": [],
    }
    if problems:
        return {**result, "problems": problems}

    if result["mode"] == "preinstalled":
        if not smi_version and s.get("nvidia_require_gpu") is False:
            result["warnings"].append(
                _problem(
                    "nvidia-smi does not work here and nvidia_require_gpu is false: no driver is "
                    "checked, only the local configuration is applied",
                    "此主机上 nvidia-smi 无法运行且 nvidia_require_gpu 为 false：不检查驱动，"
                    "只应用本地配置",
                )
            )
        elif not smi_version:
            problems.append(
                _problem(
                    "nvidia_install_driver is false, but nvidia-smi does not work here "
                    f"(rc {dict(host.get('smi') or {}).get('rc')}): install the driver, or set "
                    "nvidia_install_driver: true to let the role install it from the mirrors",
                    "nvidia_install_driver 为 false，但此主机上 nvidia-smi 无法运行：请先安装驱动，"
                    "或设置 nvidia_install_driver: true 由本角色从镜像安装",
                )
            )
        elif int(branch_of(smi_version)) < int(min_branch):
            problems.append(
                _problem(
                    f"the preinstalled driver {smi_version} is older than branch {min_branch} "
                    "(nvidia_min_driver_branch); upgrade it, or let the role install branch "
                    f"{branch} with nvidia_install_driver: true and nvidia_driver_replace: true",
                    f"预装驱动 {smi_version} 低于分支 {min_branch}（nvidia_min_driver_branch）；"
                    f"请升级，或设置 nvidia_install_driver: true 与 nvidia_driver_replace: true "
                    f"由本角色安装分支 {branch}",
                )
            )
        fm = fabricmanager_package(branch_of(smi_version)) if smi_version else ""
        if want_fm and fm and fm not in packages:
            result["warnings"].append(
                _problem(
                    f"this host has {nvswitches} NVSwitch(es) but {fm} is not installed, and "
                    "nvidia_install_driver: false downloads nothing: install it yourself",
                    f"此主机有 {nvswitches} 个 NVSwitch，但未安装 {fm}，而 "
                    "nvidia_install_driver: false 不下载任何内容：请自行安装",
                )
            )
        elif fm in packages and upstream_version(packages[fm]["version"]) != smi_version:
            problems.append(
                _problem(
                    f"{fm} {upstream_version(packages[fm]['version'])} does not match the "
                    f"driver {smi_version}: fabric manager refuses to start",
                    f"{fm} 版本 {upstream_version(packages[fm]['version'])} 与驱动 "
                    f"{smi_version} 不一致：fabric manager 将无法启动",
                )
            )
        return {**result, "problems": problems}

    # Install mode: the role owns the driver of nvidia_driver_branch.
    if host.get("distribution") not in SUPPORTED_INSTALL:
        problems.append(
            _problem(
                f"installing the driver is supported on Ubuntu only (this host runs "
                f"{host.get('distribution')}); install it yourself and set "
                "nvidia_install_driver: false",
                f"仅支持在 Ubuntu 上安装驱动（此主机为 {host.get('distribution')}）；"
                "请自行安装并设置 nvidia_install_driver: false",
            )
        )
    cuda_repo = str(host.get("cuda_repo") or "")
    if not cuda_repo:
        problems.append(
            _problem(
                "mirrors_effective names no CUDA repository: enable it in the mirrors role "
                "(mirrors_overrides: {cuda_apt: {enabled: true}}) and run it first; the NVIDIA "
                "packages come from nowhere else",
                "mirrors_effective 中没有 CUDA 软件源：请在 mirrors 角色中启用"
                "（mirrors_overrides: {cuda_apt: {enabled: true}}）并先运行它；NVIDIA 软件包"
                "不会从其他来源下载",
            )
        )
    elif cuda_repo.rstrip("/") not in [str(u).rstrip("/") for u in host.get("apt_uris") or []]:
        problems.append(
            _problem(
                f"the CUDA repository {cuda_repo} is not in this host's apt sources: run the "
                "mirrors role (playbooks/mirrors.yml) on it first",
                f"此主机的 apt 源中没有 CUDA 软件源 {cuda_repo}：请先在该主机上运行 mirrors 角色"
                "（playbooks/mirrors.yml）",
            )
        )
    installed = installed_branches(packages)
    others = [b for b in installed if b != branch]
    meta = driver_package(branch)
    pin = str(s.get("nvidia_driver_version", "") or "")
    replace = s.get("nvidia_driver_replace") is True
    if smi_version and not installed:
        problems.append(
            _problem(
                f"a driver {smi_version} that apt did not install (a .run installer?) is "
                "present; keep it with nvidia_install_driver: false, or remove it "
                "(nvidia-uninstall) before the role installs branch " + branch,
                f"存在非 apt 安装的驱动 {smi_version}（.run 安装包？）；设置 "
                f"nvidia_install_driver: false 保留它，或先卸载（nvidia-uninstall）再由本角色"
                f"安装分支 {branch}",
            )
        )
    if others and not replace:
        problems.append(
            _problem(
                f"driver branch {', '.join(others)} is installed and nvidia_driver_branch is "
                f"{branch}; replacing a driver is explicit: rerun with nvidia_driver_replace: "
                "true (and a maintenance window)",
                f"已安装驱动分支 {'、'.join(others)}，而 nvidia_driver_branch 为 {branch}；"
                "更换驱动须显式进行：请设置 nvidia_driver_replace: true 后重新运行"
                "（并安排维护窗口）",
            )
        )
    current = upstream_version(packages[meta]["version"]) if meta in packages else ""
    if pin and current and current != pin and not replace:
        problems.append(
            _problem(
                f"{meta} {current} is installed and nvidia_driver_version is {pin}; changing "
                "the driver is explicit: rerun with nvidia_driver_replace: true",
                f"已安装 {meta} {current}，而 nvidia_driver_version 为 {pin}；更换驱动须显式进行："
                "请设置 nvidia_driver_replace: true 后重新运行",
            )
        )
    if problems:
        return {**result, "problems": problems}

    remove: list[str] = []
    for other in others:
        remove.extend(branch_packages(packages, other))
    result["remove"] = sorted(set(remove))
    changing = bool(pin and current and current != pin)
    result["unhold"] = sorted(
        {n for n in result["remove"] if packages[n].get("hold")}
        | (
            {n for n in branch_packages(packages, branch) if packages[n].get("hold")}
            if changing
            else set()
        )
    )
    install = [f"{meta}={pin}*" if pin else meta]
    if s.get("nvidia_install_container_toolkit"):
        install.append("nvidia-container-toolkit")
    if s.get("nvidia_install_cuda_toolkit"):
        install.append(f"cuda-toolkit-{s.get('nvidia_cuda_version')}")
    result["install"] = install
    return {**result, "problems": []}


def fabricmanager_install(
    settings: dict[str, Any], packages: dict[str, dict[str, Any]], want_fm: bool
) -> str:
    """The fabric manager package spec, pinned to the installed driver's version ('' if none)."""
    branch = str(settings.get("nvidia_driver_branch", ""))
    meta = driver_package(branch)
    if not want_fm or meta not in packages:
        return ""
    return f"{fabricmanager_package(branch)}={upstream_version(packages[meta]['version'])}*"


def after_install(
    settings: dict[str, Any], packages: dict[str, dict[str, Any]], loaded: str, want_fm: bool
) -> dict[str, Any]:
    """After the install: the version match, the holds and the reboot decision.

    ``loaded`` is the version of the loaded kernel module (``/sys/module/nvidia/version``),
    ``''`` when none is loaded. A reboot is needed only when the loaded module is not the
    installed driver, and done only when ``nvidia_reboot_allowed`` is true.
    """
    branch = str(settings.get("nvidia_driver_branch", ""))
    meta = driver_package(branch)
    version = upstream_version(packages[meta]["version"]) if meta in packages else ""
    fm = fabricmanager_package(branch)
    fm_now = upstream_version(packages[fm]["version"]) if fm in packages else ""
    problems = []
    if not version:
        problems.append(
            _problem(
                f"{meta} is not installed after the install step",
                f"安装步骤之后 {meta} 仍未安装",
            )
        )
    if want_fm and fm_now != version:
        problems.append(
            _problem(
                f"{fm} {fm_now or '(not installed)'} does not match the driver {version}; "
                "fabric manager refuses to start with another version",
                f"{fm} 版本 {fm_now or '（未安装）'} 与驱动 {version} 不一致；"
                "版本不同时 fabric manager 无法启动",
            )
        )
    hold = [n for n in branch_packages(packages, branch) if not packages[n].get("hold")]
    stale = bool(version) and loaded.strip() != version
    return {
        "driver_version": version,
        "hold": hold,
        "stale": stale,
        "reboot": stale and settings.get("nvidia_reboot_allowed") is True,
        "problems": problems,
    }
