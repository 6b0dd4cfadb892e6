"""The lab mirror host serves what the roles rely on, as seen from a lab node.

Every request goes from a lab node to lab-mirror (10.89.77.2) on the lab network; nothing
here reaches a public address.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.ansible_env import REPO

pytestmark = pytest.mark.lab

MIRROR = "10.89.77.2"
NODE_IPS = {"cpu-0": "10.89.77.10", "gpu-0": "10.89.77.11", "gpu-1": "10.89.77.12"}


def _lab_dir() -> Path:
    return Path(os.environ.get("CHUTES_LAB_DIR", "/tmp/chutes-miner-lab"))


def on_node(node: str, script: str, timeout: int = 90) -> subprocess.CompletedProcess[str]:
    """Run a shell script as root on a lab node over SSH with the lab key."""
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(_lab_dir() / "id_ed25519"),
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            f"root@{NODE_IPS[node]}",
            script,
        ],
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def on_mirror(*argv: str) -> str:
    """Run a command in the lab-mirror container (podman with the lab's containers.conf)."""
    env = dict(os.environ, CONTAINERS_CONF=str(_lab_dir() / "containers.conf"))
    return subprocess.run(
        ["podman", "exec", "lab-mirror", *argv],
        env=env,
        text=True,
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout


def test_apt_update_through_apt_cacher_ng(lab_nodes: Path) -> None:
    """apt-get update on a node, with only the mirror's /debian/ and /debian-security/ URLs."""
    script = f"""set -e
d=$(mktemp -d)
mkdir -p "$d/lists/partial"
cat >"$d/sources.list" <<EOF
deb http://{MIRROR}:3142/debian bookworm main
deb http://{MIRROR}:3142/debian-security bookworm-security main
EOF
apt-get update -q --error-on=any -o Dir::Etc::sourcelist="$d/sources.list" \
  -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$d/lists"
ls "$d/lists"
rm -rf "$d"
"""
    result = on_node("gpu-0", script, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{MIRROR}:3142_debian_dists_bookworm_InRelease" in result.stdout
    assert f"{MIRROR}:3142_debian-security_dists_bookworm-security_InRelease" in result.stdout


def test_pip_download_through_the_index(lab_nodes: Path) -> None:
    """pip (run from the index's own pip wheel) downloads a package from the lab index."""
    index = f"http://{MIRROR}:8081/simple/"
    script = f"""set -e
d=$(mktemp -d)
wheel=$(curl -fsS {index}pip/ | grep -o 'pip-[^"#]*\\.whl' | head -1)
curl -fsS -o "$d/$wheel" "http://{MIRROR}:8081/packages/$wheel"
python3 "$d/$wheel/pip" download -q --no-cache-dir --disable-pip-version-check \
  --index-url {index} --trusted-host {MIRROR} -d "$d/dl" six
ls "$d/dl"
rm -rf "$d"
"""
    result = on_node("cpu-0", script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "six-" in result.stdout


def test_registry_lists_and_serves_the_seeded_images(lab_nodes: Path) -> None:
    """/v2/_catalog lists the seeded repositories; manifests carry the recorded digests."""
    seeded: dict[str, str] = json.loads(on_mirror("cat", "/srv/lab/images.json"))
    result = on_node("gpu-1", f"curl -fsS http://{MIRROR}:5000/v2/_catalog")
    assert result.returncode == 0, result.stderr
    catalog = json.loads(result.stdout)["repositories"]
    assert {"library/busybox", "pause", "parachutes/miner"} <= set(catalog)
    accept = (
        "application/vnd.oci.image.manifest.v1+json,"
        "application/vnd.docker.distribution.manifest.v2+json"
    )
    for ref, digest in seeded.items():
        repo, tag = ref.rsplit(":", 1)
        head = on_node(
            "gpu-1",
            f"curl -fsSI -H 'Accept: {accept}' http://{MIRROR}:5000/v2/{repo}/manifests/{tag}",
        )
        assert head.returncode == 0, head.stderr
        assert f"docker-content-digest: {digest}" in head.stdout.lower()


def test_dnsmasq_logs_the_names_nodes_look_up(lab_nodes: Path) -> None:
    """A node's lookup (a .lab name, answered by dnsmasq itself) lands in the query log."""
    name = f"probe-{uuid.uuid4().hex[:12]}.lab"
    on_node("cpu-0", f"getent hosts {name} || true")
    log = on_mirror("cat", "/var/log/dnsmasq/queries.log")
    assert f"query[A] {name} from {NODE_IPS['cpu-0']}" in log
    resolved = on_node("gpu-0", "getent hosts lab-mirror cpu-0")
    assert MIRROR in resolved.stdout and NODE_IPS["cpu-0"] in resolved.stdout
    audit = subprocess.run(
        [str(REPO / "tests" / "lab" / "lab.sh"), "dns-audit"],
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert name in audit.stdout


SNTP = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"\\x23" + 47 * b"\\0", (sys.argv[1], 123))
data = s.recv(512)
stratum = data[1]
secs, frac = struct.unpack("!II", data[40:48])
print(stratum, secs - 2208988800 + frac / 2**32 - time.time())
"""


def test_ntp_answers(lab_nodes: Path) -> None:
    """An SNTP query from a node gets an answer from chrony at stratum 10, close in time."""
    result = on_node("gpu-1", f"python3 -c '{SNTP}' {MIRROR}")
    assert result.returncode == 0, result.stderr
    stratum, offset = result.stdout.split()
    assert int(stratum) == 10
    assert abs(float(offset)) < 1.0
