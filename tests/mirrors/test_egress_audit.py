"""Static egress audit: no role, template, default, plugin or playbook names a blocked
upstream host outside the mirror catalog.

Allowed: roles/mirrors/vars/catalog.yml (the catalog, with the rollback upstreams),
comment lines, docs (*.md, changelogs), ``server = "..."`` lines and ``certs.d/<registry>``
paths of hosts.toml files, a line that routes the URL through
``chutes.miner.mirror_url`` (the download goes to the mirror, the URL is only its key), and an
image reference that is the whole value of a ``*_image`` variable (containerd pulls it through
the registry mirrors of ``certs.d``).
The PyPI and Debian archive hosts are read from this machine's configuration at run
time, never written into the repository.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tests.mirrors.conftest import COLLECTION, REPO

BLOCKED = [
    "github.com",
    "githubusercontent.com",
    "github.io",
    "dl.k8s.io",
    "docker.io",
    "registry.k8s.io",
    "gcr.io",
    "ghcr.io",
    "quay.io",
    "nvcr.io",
    "huggingface.co",
    "developer.download.nvidia.com",
    "helm.ngc.nvidia.com",
    "snapcraft.io",
    "pool.ntp.org",
    "8.8.8.8",
    "8.8.4.4",
    "1.1.1.1",
    "1.0.0.1",
]
ALLOWED_FILES = {COLLECTION / "roles" / "mirrors" / "vars" / "catalog.yml"}
SKIP_SUFFIXES = {".md", ".rst", ".txt", ".pyc"}
COMMENT = re.compile(r"^\s*(#|//|--|;)")
ALLOWED_LINE = re.compile(
    r'^\s*server\s*=\s*"|certs\.d/|chutes\.miner\.mirror_url'
    r'|^\s*\w+_image:\s*"?[\w.-]+(:\d+)?/[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})"?\s*$'
)


def _hosts_of(url: str) -> set[str]:
    host = urlsplit(url.strip()).hostname
    return {host} if host else set()


def runtime_registry_hosts() -> set[str]:
    """PyPI and Debian archive hosts, from pip's and apt's configuration on this machine."""
    hosts: set[str] = set()
    from pip._internal.models.index import PyPI  # the default index pip itself would use

    hosts |= {PyPI.netloc, PyPI.file_storage_domain}
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        for url in os.environ.get(key, "").split():
            hosts |= _hosts_of(url)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    for line in out.stdout.splitlines():
        if "index-url" in line:
            hosts |= _hosts_of(line.split("=", 1)[1].strip().strip("'\""))
    for conf in ("/etc/pip.conf", os.path.expanduser("~/.config/pip/pip.conf")):
        parser = configparser.ConfigParser()
        if parser.read(conf):
            for section in parser.sections():
                for key in ("index-url", "extra-index-url"):
                    for url in parser.get(section, key, fallback="").split():
                        hosts |= _hosts_of(url)
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                for url in line.split()[1:]:
                    hosts |= _hosts_of(url)
    return {h for h in hosts if h}


def audited_files(roots: list[Path]) -> list[Path]:
    files = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.suffix in SKIP_SUFFIXES or "__pycache__" in path.parts:
                continue
            if (
                "changelogs" in path.parts
                or "tests" in path.relative_to(root).parts[:1]
                or path in ALLOWED_FILES
            ):
                continue
            files.append(path)
    return files


def violations(files: list[Path], hosts: list[str]) -> list[str]:
    pattern = re.compile(
        r"(?<![\w-])(" + "|".join(re.escape(h) for h in hosts) + r")(?![\w-]|\.\w)", re.IGNORECASE
    )
    found = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(lines, 1):
            if COMMENT.match(line) or ALLOWED_LINE.search(line):
                continue
            # a subdomain of a blocked host is blocked too; a longer name ending elsewhere is not
            for match in list(pattern.finditer(line))[:1]:
                shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                found.append(f"{shown}:{number}: {match.group(1)}: {line.strip()[:120]}")
    return found


def test_no_blocked_upstream_outside_the_catalog() -> None:
    hosts = BLOCKED + sorted(runtime_registry_hosts())
    files = audited_files([COLLECTION, REPO / "playbooks"])
    assert files, "nothing audited"
    bad = violations(files, hosts)
    assert not bad, "blocked upstream hosts outside the catalog:\n" + "\n".join(bad)


def test_the_audit_catches_a_planted_upstream(tmp_path: Path) -> None:
    role = tmp_path / "roles" / "x" / "defaults"
    role.mkdir(parents=True)
    (role / "main.yml").write_text(
        "x_url: https://objects.githubusercontent.com/a\n"
        "# docker.io in a comment is fine\n"
        "x_ok: \"{{ 'https://github.com/a' | chutes.miner.mirror_url(mirrors_effective) }}\"\n"
        "x_dns: [8.8.8.8]\nx_fine: mydocker.io.example\n"
        "x_image: registry.k8s.io/pause:3.10.1\n"
        "x_image_url: https://registry.k8s.io/v2/pause/manifests/3.10.1\n"
    )
    found = violations(audited_files([tmp_path]), BLOCKED)
    assert len(found) == 3, found
    assert "githubusercontent.com" in found[0] and "8.8.8.8" in found[1], found
    assert "x_image_url" in found[2], found
