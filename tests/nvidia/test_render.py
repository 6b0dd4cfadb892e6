"""The nvidia role's templates rendered with its defaults and vars, as a play would, and the
containerd drop-in read the way containerd reads it (TOML, merged into the binaries config)."""

from __future__ import annotations

import tomllib
from typing import Any

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from tests.ansible_env import REPO

ROLES = REPO / "collections" / "ansible_collections" / "chutes" / "miner" / "roles"


def render(role: str, template: str, **extra: Any) -> str:
    def load(relative: str) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load((ROLES / role / relative).read_text())
        return {k: trust_as_template(v) if isinstance(v, str) else v for k, v in data.items()}

    variables = {
        **load("defaults/main.yml"),
        **load("vars/main.yml"),
        "ansible_managed": "Ansible managed",
        **extra,
    }
    templar = Templar(loader=DataLoader(), variables=variables)
    text = (ROLES / role / "templates" / template).read_text()
    return str(templar.template(trust_as_template(text)))


def test_containerd_dropin_defines_the_runtime_the_runtime_class_names() -> None:
    text = render("nvidia", "etc/containerd/conf.d/50-chutes-nvidia.toml.j2")
    assert text.startswith("#\n# Ansible managed\n#\n# managed-by: chutes.miner.nvidia")
    conf = tomllib.loads(text)
    assert conf["version"] == 3  # the binaries role's containerd config is version 3 too
    cri = conf["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]
    assert list(cri) == ["nvidia-container-runtime"]
    runtime = cri["nvidia-container-runtime"]
    assert runtime["runtime_type"] == "io.containerd.runc.v2"
    assert runtime["options"] == {
        "BinaryName": "/usr/bin/nvidia-container-runtime",
        "SystemdCgroup": True,
    }
    # containerd imports it from the directory the binaries role exports as the contract fact.
    k8s_vars = yaml.safe_load((ROLES / "k8s_binaries" / "vars" / "main.yml").read_text())
    assert k8s_vars["__k8s_binaries_containerd_dropins"] == "/etc/containerd/conf.d"


def test_the_handler_name_is_one_variable() -> None:
    conf = tomllib.loads(
        render(
            "nvidia",
            "etc/containerd/conf.d/50-chutes-nvidia.toml.j2",
            nvidia_runtime_handler="nvidia",
        )
    )
    assert list(conf["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]) == [
        "nvidia"
    ]


def test_dev_char_links_are_recreated_on_driver_bind_and_at_boot() -> None:
    rule = render("nvidia", "etc/udev/rules.d/71-chutes-miner-nvidia-dev-char.rules.j2")
    rules = [ln for ln in rule.splitlines() if ln and not ln.startswith("#")]
    assert rules == [
        'ACTION=="add", DEVPATH=="/bus/pci/drivers/nvidia", '
        'RUN+="/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all"'
    ]
    unit = render("nvidia", "etc/systemd/system/chutes-nvidia-dev-char.service.j2")
    assert "ExecStart=/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all" in unit
    assert "Type=oneshot" in unit and "WantedBy=multi-user.target" in unit
    assert "ConditionPathExists=/sys/module/nvidia" in unit


def test_nouveau_is_blacklisted_and_kept_off_the_console() -> None:
    text = render("nvidia", "etc/modprobe.d/chutes-miner-nouveau.conf.j2")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines == ["blacklist nouveau", "options nouveau modeset=0"]


def test_microk8s_launch_config_file_is_the_plan_as_yaml_with_a_header() -> None:
    config = {"version": "0.1.0", "addons": [{"name": "rbac"}], "extraKubeletArgs": {"--a": "b"}}
    text = render("microk8s", "etc/microk8s.yaml.j2", __microk8s_launch_config=config)
    head = text.splitlines()[:4]
    assert head[1] == "# Ansible managed" and "managed-by: chutes.miner.microk8s" in head[3]
    assert yaml.safe_load(text) == config
