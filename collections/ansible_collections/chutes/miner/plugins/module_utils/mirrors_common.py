# Copyright: chutes.miner developers
# MIT License
"""What every part of the ``chutes.miner.mirrors`` role shares: the resource and profile
names, the managed-by marker, the checks of URLs, hosts and addresses, and the host's path pieces.

No Ansible imports and no network: the plan (mirrors_plan), the selection (mirrors), the files
(mirrors_files) and the key checks (pgp) are built on these.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

PROFILES = ("none", "auto", "tuna", "ustc", "aliyun", "huawei", "tencent", "custom", "airgap")
RESOURCES = (
    "apt",
    "cuda_apt",
    "nct_apt",
    "pypi",
    "registries",
    "files",
    "k8s_binaries",
    "huggingface",
    "ntp",
    "dns",
    "snap",
)
SNAP_MODES = ("bundle", "proxy", "store_proxy", "store")
# Flat NVIDIA apt repos: resource -> (sources file, keyring installed for Signed-By).
FLAT_APT = {
    "cuda_apt": ("cuda", "/usr/share/keyrings/cuda-archive-keyring.asc"),
    "nct_apt": (
        "nvidia-container-toolkit",
        "/usr/share/keyrings/nvidia-container-toolkit-keyring.asc",
    ),
}
WORKLOAD_ENV_FILE = "/etc/chutes-miner/mirrors.env"
WORKLOAD_CONFIGMAP = "mirror-env"
ON_FAILURE = ("fail", "warn", "upstream")
RESTORE_MODES = ("backup", "canonical")
# Resources whose candidates may also be a directory on every host (file:///abs/path): the
# offline copy of a download tree for airgapped clusters.
FILE_SOURCES = ("files", "k8s_binaries")
# Resources whose every healthy candidate is kept, in order (the others keep the first).
MULTI = ("registries", "ntp", "dns")
MARKER = "managed-by: chutes.miner.mirrors"
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+(:\d{1,5})?$"
)


def err(en: str, zh: str) -> dict[str, str]:
    """One problem, in English and Chinese."""
    return {"en": en, "zh": zh}


def valid_url(url: Any) -> bool:
    if not isinstance(url, str) or any(c.isspace() for c in url):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and _valid_port(parts)


def valid_file_url(url: Any) -> bool:
    """``file:///abs/dir``: a directory that exists on every host (no host part)."""
    if not isinstance(url, str) or any(c.isspace() for c in url):
        return False
    parts = urlsplit(url)
    return parts.scheme == "file" and not parts.netloc and parts.path.startswith("/")


def _valid_port(parts: Any) -> bool:
    try:
        parts.port  # noqa: B018  # raises ValueError on a bad port
    except ValueError:
        return False
    return True


def valid_host(value: Any) -> bool:
    return isinstance(value, str) and bool(_HOST_RE.match(value))


def valid_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def host_paths(host: dict[str, Any]) -> dict[str, str]:
    """Distribution-dependent path pieces for catalog URL templates."""
    dist = str(host.get("distribution", "Debian"))
    arm = str(host.get("arch", "x86_64")) in ("aarch64", "arm64")
    version = str(host.get("version", "12"))
    if dist == "Ubuntu":
        apt_dir = "ubuntu-ports" if arm else "ubuntu"
        cuda = "ubuntu" + version.replace(".", "")
    else:
        apt_dir = "debian"
        cuda = "debian" + version.split(".", maxsplit=1)[0]
    return {
        "apt_dir": apt_dir,
        "distro": cuda,
        "arch": "sbsa" if arm else "x86_64",
        "deb_arch": "arm64" if arm else "amd64",
    }


def snap_config(settings: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``snap set`` options a snap mode needs: {snap: {option: value}} (empty for bundle/store)."""
    mode = settings.get("mode", "bundle")
    if mode == "proxy":
        proxy = str(settings.get("proxy", ""))
        return {"system": {"proxy.http": proxy, "proxy.https": proxy}}
    if mode == "store_proxy":
        return {"core": {"proxy.store": str(settings.get("store_id", ""))}}
    return {}
