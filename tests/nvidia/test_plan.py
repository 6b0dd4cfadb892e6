"""chutes.miner.nvidia_plan: what the nvidia role installs, holds, removes and reboots for, from
what it reads on a host (dpkg, nvidia-smi, NVSwitch count, apt sources, the loaded module)."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.chutes.miner.plugins.filter.nvidia_plan import nvidia_plan
from ansible_collections.chutes.miner.plugins.module_utils import nvidia

CUDA = "https://developer.download.nvidia.cn/compute/cuda/repos/ubuntu2204/x86_64/"


def settings(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "nvidia_install_driver": True,
        "nvidia_driver_branch": "580",
        "nvidia_driver_version": "",
        "nvidia_min_driver_branch": "570",
        "nvidia_require_gpu": True,
        "nvidia_driver_replace": False,
        "nvidia_fabricmanager": "auto",
        "nvidia_install_container_toolkit": True,
        "nvidia_install_cuda_toolkit": False,
        "nvidia_cuda_version": "12-8",
        "nvidia_reboot_allowed": False,
    }
    return {**base, **over}


def dpkg(*rows: tuple[str, str] | tuple[str, str, str]) -> str:
    """dpkg-query lines; a third item 'hold' marks the package held."""
    out = []
    for row in rows:
        name, version = row[0], row[1]
        want = row[2] if len(row) == 3 else "install"
        out.append(f"{name}\t{version}\t{want} ok installed")
    return "\n".join(out)


def host(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "distribution": "Ubuntu",
        "dpkg": "",
        "smi": {"rc": 127, "stdout": ""},
        "nvswitches": 0,
        "apt_uris": ["http://mirrors.example.cn/ubuntu/", CUDA],
        "cuda_repo": CUDA,
    }
    return {**base, **over}


BRANCH_570 = (
    ("nvidia-driver-570-server-open", "570.172.08-0ubuntu0.22.04.1", "hold"),
    ("libnvidia-compute-570-server", "570.172.08-0ubuntu0.22.04.1", "hold"),
    ("nvidia-utils-570-server", "570.172.08-0ubuntu0.22.04.1", "hold"),
    ("linux-modules-nvidia-570-server-open-generic", "5.15.0-130.140", "hold"),
    ("nvidia-fabricmanager-570", "570.172.08-1", "hold"),
)
UNRELATED = (
    ("nvidia-container-toolkit", "1.17.8-1"),
    ("libnvidia-container1", "1.17.8-1"),
    ("cuda-toolkit-12-8", "12.8.1-1"),
    ("nvidia-kernel-common-580", "580.95.05-1"),  # a package of the wanted branch
)


def test_fresh_ubuntu_host_installs_the_pinned_branch_and_toolkit_only() -> None:
    plan = nvidia_plan(host(), settings())
    assert plan["problems"] == []
    assert plan["mode"] == "install"
    assert plan["install"] == ["nvidia-driver-580-server-open", "nvidia-container-toolkit"]
    assert plan["remove"] == [] and plan["unhold"] == []
    assert plan["fabricmanager"] is False


def test_exact_version_and_cuda_toolkit_are_pinned_package_specs() -> None:
    plan = nvidia_plan(
        host(),
        settings(nvidia_driver_version="580.95.05", nvidia_install_cuda_toolkit=True),
    )
    assert plan["install"] == [
        "nvidia-driver-580-server-open=580.95.05*",
        "nvidia-container-toolkit",
        "cuda-toolkit-12-8",
    ]


@pytest.mark.parametrize(
    ("mode", "nvswitches", "expected"),
    [("auto", 0, False), ("auto", 4, True), ("always", 0, True), ("never", 6, False)],
)
def test_fabric_manager_only_on_nvswitch_systems_unless_forced(
    mode: str, nvswitches: int, expected: bool
) -> None:
    plan = nvidia_plan(host(nvswitches=nvswitches), settings(nvidia_fabricmanager=mode))
    assert plan["fabricmanager"] is expected


def test_no_cuda_repository_in_mirrors_effective_refuses_with_both_languages() -> None:
    plan = nvidia_plan(host(cuda_repo=""), settings())
    assert len(plan["problems"]) == 1
    assert "mirrors_effective names no CUDA repository" in plan["problems"][0]["en"]
    assert "cuda_apt" in plan["problems"][0]["zh"]
    assert plan["install"] == []


def test_cuda_repository_must_be_among_the_hosts_apt_sources() -> None:
    plan = nvidia_plan(host(apt_uris=["http://mirrors.example.cn/ubuntu/"]), settings())
    assert len(plan["problems"]) == 1
    assert (
        f"the CUDA repository {CUDA} is not in this host's apt sources"
        in (plan["problems"][0]["en"])
    )
    # The same repository with or without the trailing slash is the same source.
    assert nvidia_plan(host(apt_uris=[CUDA.rstrip("/")]), settings())["problems"] == []


def test_driver_install_is_refused_on_debian() -> None:
    plan = nvidia_plan(host(distribution="Debian"), settings())
    assert "supported on Ubuntu only" in plan["problems"][0]["en"]
    assert "仅支持在 Ubuntu 上安装驱动" in plan["problems"][0]["zh"]


def test_another_branch_is_never_replaced_without_the_explicit_switch() -> None:
    plan = nvidia_plan(host(dpkg=dpkg(*BRANCH_570, *UNRELATED)), settings())
    assert len(plan["problems"]) == 1
    assert "driver branch 570 is installed" in plan["problems"][0]["en"]
    assert "nvidia_driver_replace: true" in plan["problems"][0]["en"]
    assert "更换驱动须显式进行" in plan["problems"][0]["zh"]
    assert plan["install"] == [] and plan["remove"] == []


def test_replace_removes_the_old_branch_by_name_and_nothing_else() -> None:
    plan = nvidia_plan(
        host(dpkg=dpkg(*BRANCH_570, *UNRELATED)), settings(nvidia_driver_replace=True)
    )
    assert plan["problems"] == []
    old = sorted(name for name, *_ in BRANCH_570)
    assert plan["remove"] == old
    assert plan["unhold"] == old  # all of them were held
    # Never the toolkit, CUDA or packages of the wanted branch: no "nvidia|cuda" pattern.
    for name, *_ in UNRELATED:
        assert name not in plan["remove"]


def test_a_rerun_on_a_converged_host_installs_nothing_new_and_removes_nothing() -> None:
    converged = dpkg(
        ("nvidia-driver-580-server-open", "580.95.05-0ubuntu0.22.04.1", "hold"),
        ("nvidia-utils-580-server", "580.95.05-0ubuntu0.22.04.1", "hold"),
        ("nvidia-container-toolkit", "1.17.8-1"),
    )
    plan = nvidia_plan(host(dpkg=converged), settings())
    assert plan["problems"] == [] and plan["remove"] == [] and plan["unhold"] == []
    # apt's "present" of already installed packages is a no-op.
    assert plan["install"] == ["nvidia-driver-580-server-open", "nvidia-container-toolkit"]
    after = nvidia_plan(
        {"dpkg": converged, "loaded": "580.95.05\n", "fabricmanager": False},
        settings(),
        "after",
    )
    assert after == {
        "driver_version": "580.95.05",
        "hold": [],
        "stale": False,
        "reboot": False,
        "problems": [],
    }


def test_a_changed_pinned_version_needs_the_explicit_switch() -> None:
    installed = dpkg(("nvidia-driver-580-server-open", "580.82.07-0ubuntu1", "hold"))
    plan = nvidia_plan(host(dpkg=installed), settings(nvidia_driver_version="580.95.05"))
    assert "nvidia_driver_version is 580.95.05" in plan["problems"][0]["en"]
    allowed = nvidia_plan(
        host(dpkg=installed),
        settings(nvidia_driver_version="580.95.05", nvidia_driver_replace=True),
    )
    assert allowed["problems"] == []
    assert allowed["unhold"] == ["nvidia-driver-580-server-open"]
    assert allowed["install"][0] == "nvidia-driver-580-server-open=580.95.05*"


def test_a_runfile_driver_is_never_touched() -> None:
    plan = nvidia_plan(host(smi={"rc": 0, "stdout": "580.95.05\n"}), settings())
    assert "apt did not install" in plan["problems"][0]["en"]
    assert plan["remove"] == []


@pytest.mark.parametrize(
    ("loaded", "allowed", "stale", "reboot"),
    [
        ("", False, True, False),  # fresh install, no module loaded: warn only
        ("", True, True, True),
        ("570.172.08", True, True, True),  # the old module still runs
        ("580.95.05", True, False, False),  # converged: never reboots
        ("580.95.05", False, False, False),
    ],
)
def test_reboot_only_for_a_stale_module_and_only_when_allowed(
    loaded: str, allowed: bool, stale: bool, reboot: bool
) -> None:
    installed = dpkg(("nvidia-driver-580-server-open", "580.95.05-0ubuntu0.22.04.1"))
    after = nvidia_plan(
        {"dpkg": installed, "loaded": loaded, "fabricmanager": False},
        settings(nvidia_reboot_allowed=allowed),
        "after",
    )
    assert (after["stale"], after["reboot"]) == (stale, reboot)
    assert after["hold"] == ["nvidia-driver-580-server-open"]


def test_fabric_manager_is_pinned_to_the_installed_driver_and_checked_after() -> None:
    installed = dpkg(("nvidia-driver-580-server-open", "580.95.05-0ubuntu0.22.04.1"))
    fm = nvidia_plan({"dpkg": installed, "fabricmanager": True}, settings(), "fabricmanager")
    assert fm == "nvidia-fabricmanager-580=580.95.05*"
    assert (
        nvidia_plan({"dpkg": installed, "fabricmanager": False}, settings(), "fabricmanager") == ""
    )
    mismatch = dpkg(
        ("nvidia-driver-580-server-open", "580.95.05-0ubuntu0.22.04.1"),
        ("nvidia-fabricmanager-580", "580.82.07-1"),
    )
    after = nvidia_plan(
        {"dpkg": mismatch, "loaded": "", "fabricmanager": True}, settings(), "after"
    )
    assert (
        "nvidia-fabricmanager-580 580.82.07 does not match the driver 580.95.05"
        in (after["problems"][0]["en"])
    )


class TestPreinstalledDriver:
    """nvidia_install_driver: false downloads nothing: the plan installs and removes nothing."""

    def test_a_working_driver_of_a_recent_branch_passes(self) -> None:
        plan = nvidia_plan(
            host(smi={"rc": 0, "stdout": "575.57.08\n575.57.08\n"}, cuda_repo=""),
            settings(nvidia_install_driver=False),
        )
        assert plan["mode"] == "preinstalled" and plan["problems"] == []
        assert plan["install"] == [] and plan["remove"] == []
        assert plan["smi_version"] == "575.57.08"

    def test_no_working_nvidia_smi_is_refused(self) -> None:
        plan = nvidia_plan(host(), settings(nvidia_install_driver=False))
        assert "nvidia-smi does not work here" in plan["problems"][0]["en"]
        assert "nvidia-smi 无法运行" in plan["problems"][0]["zh"]

    def test_an_old_branch_is_refused(self) -> None:
        plan = nvidia_plan(
            host(smi={"rc": 0, "stdout": "535.261.03\n"}), settings(nvidia_install_driver=False)
        )
        assert "older than branch 570" in plan["problems"][0]["en"]

    def test_nvswitch_without_fabric_manager_warns_only(self) -> None:
        plan = nvidia_plan(
            host(smi={"rc": 0, "stdout": "580.95.05\n"}, nvswitches=4),
            settings(nvidia_install_driver=False),
        )
        assert plan["problems"] == [] and plan["install"] == []
        assert "nvidia-fabricmanager-580 is not installed" in plan["warnings"][0]["en"]

    def test_a_mismatched_fabric_manager_is_refused(self) -> None:
        plan = nvidia_plan(
            host(
                smi={"rc": 0, "stdout": "580.95.05\n"},
                dpkg=dpkg(("nvidia-fabricmanager-580", "580.82.07-1")),
            ),
            settings(nvidia_install_driver=False),
        )
        assert "does not match the driver 580.95.05" in plan["problems"][0]["en"]

    def test_a_node_without_gpu_on_purpose_only_warns(self) -> None:
        plan = nvidia_plan(host(), settings(nvidia_install_driver=False, nvidia_require_gpu=False))
        assert plan["problems"] == [] and plan["warnings"]


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("nvidia_driver_branch", "58", "is not a driver branch"),
        ("nvidia_min_driver_branch", "latest", "is not a driver branch"),
        ("nvidia_driver_version", "570.172.08", "is not a version of branch 580"),
        ("nvidia_fabricmanager", "yes", "is not one of auto, always, never"),
        ("nvidia_reboot_allowed", "true", "must be true or false"),
        ("nvidia_driver_replace", 1, "must be true or false"),
    ],
)
def test_bad_inputs_are_refused_in_both_languages(key: str, value: Any, needle: str) -> None:
    plan = nvidia_plan(host(), settings(**{key: value}))
    assert any(needle in p["en"] for p in plan["problems"]), plan["problems"]
    assert all(p["zh"] for p in plan["problems"])
    assert plan["install"] == []


def test_cuda_version_is_checked_only_when_the_toolkit_is_wanted() -> None:
    assert nvidia_plan(host(), settings(nvidia_cuda_version="latest"))["problems"] == []
    plan = nvidia_plan(
        host(), settings(nvidia_cuda_version="latest", nvidia_install_cuda_toolkit=True)
    )
    assert "is not a CUDA version" in plan["problems"][0]["en"]


def test_dpkg_parsing_keeps_installed_packages_and_holds() -> None:
    text = dpkg(("a", "1"), ("b", "2", "hold")) + "\nc\t3\tdeinstall ok config-files\nbroken"
    assert nvidia.parse_dpkg(text) == {
        "a": {"version": "1", "hold": False, "state": "installed"},
        "b": {"version": "2", "hold": True, "state": "installed"},
    }


def test_versions() -> None:
    assert nvidia.upstream_version("1:580.95.05-0ubuntu0.22.04.1") == "580.95.05"
    assert nvidia.branch_of("570.172.08-1") == "570"
    assert nvidia.branch_of("garbage") == ""


def test_unknown_stage_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        nvidia_plan(host(), settings(), "reboot")
