#!/usr/bin/python
# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Download release artifacts, verify every sha256, and only then install any of them."""

from __future__ import annotations

DOCUMENTATION = r"""
module: release_artifacts
short_description: Install release binaries only after every download's sha256 matched
description:
  - For each artifact (a plain file or a C(.tar.gz)/C(.tgz) archive) that is not installed as
    wanted, downloads it into O(staging_dir) and checks its sha256 against O(artifacts[].sha256)
    when pinned, else against the first of O(artifacts[].checksum_urls) that lists it. Archives must
    hold every member named in O(artifacts[].files).
  - Only when B(every) download matched are the files installed, each through a temporary file
    renamed into place. One mismatch, missing checksum or missing member fails the module with
    every problem listed in English and Chinese, removes the staging files and installs nothing.
  - A record of what was installed (artifact URL, sha256, and each installed file's sha256,
    size and mtime) is kept in O(state_file). An artifact whose URL and pin are unchanged and
    whose files are all still in place downloads nothing; a file changed on disk (different
    size, mtime and then sha256) is installed again from a fresh, verified download.
  - URLs are http(s) or C(file:///path) (an offline copy of the tree on the host itself).
    http(s) downloads honour the host's proxy environment.
options:
  artifacts:
    description: What to install.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Unique label used in results and messages, e.g. C(kubelet).
        type: str
        required: true
      url:
        description: Where to download the artifact (http, https or file).
        type: str
        required: true
      checksum_urls:
        description:
          - Checksum files of the artifact, tried in order until one lists it; default
            O(artifacts[].url) plus C(.sha256).
          - Each is either a bare hex digest or C(sha256sum) lines (C(<hex>  <file>)); the line
            whose file name is the artifact's file name is used, so a release's C(SHA256SUMS)
            works too.
        type: list
        elements: str
      sha256:
        description: Pinned sha256 (hex); when set, the checksum file is not read.
        type: str
        default: ""
      dest:
        description: Install path of a plain file (not an archive).
        type: path
      files:
        description: Archive member path to install path (archives only).
        type: dict
      mode:
        description: Mode of the installed files.
        type: str
        default: "0755"
  staging_dir:
    description: Where downloads wait for verification; emptied after every run.
    type: path
    required: true
  state_file:
    description: JSON record of the installed artifacts.
    type: path
    required: true
  timeout:
    description: Seconds per network operation.
    type: int
    default: 60
  retries:
    description: Attempts per download before giving up.
    type: int
    default: 3
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
"""

EXAMPLES = r"""
- name: install | Download, verify and install the Kubernetes binaries
  chutes.miner.release_artifacts:
    artifacts:
      - name: kubelet
        url: https://mirror.example.cn/kubernetes/v1.34.4/bin/linux/amd64/kubelet
        dest: /usr/local/bin/kubelet
      - name: containerd
        url: https://mirror.example.cn/files/containerd/v2.2.9/containerd-2.2.9-linux-amd64.tar.gz
        # a .sha256 next to the archive, else upstream's .sha256sum
        checksum_urls:
          - https://mirror.example.cn/files/containerd/v2.2.9/containerd-2.2.9-linux-amd64.tar.gz.sha256
          - https://mirror.example.cn/files/containerd/v2.2.9/containerd-2.2.9-linux-amd64.tar.gz.sha256sum
        files:
          bin/containerd: /usr/local/bin/containerd
          bin/ctr: /usr/local/bin/ctr
      - name: runc
        url: file:///srv/bundle/runc.amd64
        sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
        dest: /usr/local/sbin/runc
    staging_dir: /var/lib/chutes-miner/k8s_binaries/staging
    state_file: /var/lib/chutes-miner/k8s_binaries/installed.json
"""

RETURN = r"""
installed:
  description: Names of the artifacts installed by this run.
  type: list
  elements: str
  returned: always
changed_files:
  description: Install paths written by this run.
  type: list
  elements: str
  returned: always
current:
  description: Names of the artifacts that were already installed as wanted (nothing downloaded).
  type: list
  elements: str
  returned: always
"""

import hashlib
import json
import os
import re
import tarfile
import urllib.error
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.chutes.miner.plugins.module_utils.files import place_stream, replace_file

T = TypeVar("T")
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_CHUNK = 1 << 20


class ArtifactError(Exception):
    """Problems that stop the run before anything is installed: (English, Chinese) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(pair[0] for pair in problems))
        self.problems = problems


@dataclass
class Artifact:
    name: str
    url: str
    checksum_urls: list[str]
    sha256: str
    files: dict[str, str]  # member ("" for a plain file) -> install path
    mode: int

    @property
    def archive(self) -> bool:
        return bool(self.files) and "" not in self.files

    def key(self) -> dict[str, Any]:
        """What identifies the wanted install: a change here reinstalls."""
        return {"url": self.url, "pin": self.sha256, "files": self.files, "mode": self.mode}


def parse(spec: dict[str, Any]) -> Artifact:
    name = str(spec["name"])
    files = dict(spec.get("files") or {})
    if spec.get("dest"):
        if files:
            raise ArtifactError(
                [(f"{name}: set dest or files, not both", f"{name}：dest 与 files 只能设置一个")]
            )
        files = {"": str(spec["dest"])}
    if not files:
        raise ArtifactError([(f"{name}: no dest or files given", f"{name}：未设置 dest 或 files")])
    pin = str(spec.get("sha256") or "").strip().lower()
    if pin and not _HEX.match(pin):
        raise ArtifactError(
            [
                (
                    f"{name}: pinned sha256 {pin!r} is not 64 hex digits",
                    f"{name}：固定的 sha256 {pin!r} 不是 64 位十六进制",
                )
            ]
        )
    return Artifact(
        name=name,
        url=str(spec["url"]),
        checksum_urls=[str(u) for u in spec.get("checksum_urls") or [f"{spec['url']}.sha256"]],
        sha256=pin,
        files={str(k): str(v) for k, v in files.items()},
        mode=int(str(spec.get("mode") or "0755"), 8),
    )


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def up_to_date(art: Artifact, record: dict[str, Any] | None) -> bool:
    """Installed as wanted: same URL, pin, files and mode, and every file unchanged on disk
    (same size and mtime, or else the same sha256: then the record takes the new stat)."""
    if not record or record.get("key") != art.key():
        return False
    for dest in art.files.values():
        seen = record.get("files", {}).get(dest)
        if not seen:
            return False
        stat = _stat(dest)
        if stat is None:
            return False
        if stat != seen.get("stat"):
            if file_sha256(dest) != seen.get("sha256"):
                return False
            seen["stat"] = stat
    return True


def _open(url: str, timeout: int) -> Any:
    if url.startswith("file:"):
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        return open(path, "rb")  # noqa: SIM115  # closed by the caller's with-block
    # Redirects and proxies as urllib handles them; the body as sent; no ~/.netrc credentials.
    return open_url(
        url,
        timeout=timeout,
        http_agent="chutes.miner.release_artifacts/1",
        decompress=False,
        use_netrc=False,
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return f"{exc}"


def _retrying(url: str, timeout: int, retries: int, read: Callable[[Any], T]) -> T:
    """``read`` the opened ``url``, up to ``retries`` times; a 404 is final."""
    last: Exception | None = None
    for _attempt in range(max(1, retries)):
        try:
            with _open(url, timeout) as resp:
                return read(resp)
        except urllib.error.HTTPError as exc:
            last = exc
            if exc.code == 404:
                break
        except (OSError, ValueError) as exc:
            last = exc
    raise OSError(_describe(last) if last else "no answer")


def fetch_text(url: str, timeout: int, retries: int) -> str:
    return _retrying(
        url, timeout, retries, lambda resp: bytes(resp.read(1 << 20)).decode("utf-8", "replace")
    )


def download(url: str, path: str, timeout: int, retries: int) -> str:
    """Stream ``url`` into ``path``; its sha256."""

    def save(resp: Any) -> str:
        digest = hashlib.sha256()
        with open(path, "wb") as out:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()

    return _retrying(url, timeout, retries, save)


def expected_digest(text: str, url: str) -> str | None:
    """The digest for ``url``'s file name in a checksum file: a bare digest, or the matching
    ``sha256sum`` line (``<hex>  <name>`` or ``<hex> *<name>``)."""
    name = os.path.basename(urllib.parse.urlsplit(url).path)
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1 and len(lines[0]) == 1 and _HEX.match(lines[0][0]):
        return lines[0][0].lower()
    for parts in lines:
        if len(parts) >= 2 and _HEX.match(parts[0]):
            listed = os.path.basename(parts[1].lstrip("*"))
            if listed == name:
                return parts[0].lower()
    return None


def _members(path: str) -> set[str]:
    with tarfile.open(path, "r:*") as tar:
        return {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}


def stage(todo: list[Artifact], staging: str, timeout: int, retries: int) -> dict[str, str]:
    """Download and verify everything; {name: staged path}. Raises with every problem."""
    problems: list[tuple[str, str]] = []
    staged: dict[str, str] = {}
    for art in todo:
        want = art.sha256 or ""
        tried: list[str] = []
        for url in [] if want else art.checksum_urls:
            try:
                want = expected_digest(fetch_text(url, timeout, retries), art.url) or ""
            except OSError as exc:
                tried.append(f"{url}: {exc}")
                continue
            if want:
                break
            tried.append(f"{url}: no sha256 for {os.path.basename(art.url)}")
        if not want:
            problems.append(
                (
                    f"{art.name}: no checksum found ({'; '.join(tried)})",
                    f"{art.name}：找不到校验值（{'; '.join(tried)}）",
                )
            )
            continue
        path = os.path.join(staging, art.name)
        try:
            got = download(art.url, path, timeout, retries)
        except OSError as exc:
            problems.append(
                (
                    f"{art.name}: download of {art.url} failed: {exc}",
                    f"{art.name}：下载 {art.url} 失败：{exc}",
                )
            )
            continue
        if got != want:
            problems.append(
                (
                    f"{art.name}: sha256 mismatch for {art.url}: expected {want}, got {got}"
                    " (tampered or corrupted download, or a wrong pin)",
                    f"{art.name}：{art.url} 的 sha256 不一致：应为 {want}，实际为 {got}"
                    "（文件被篡改或损坏，或固定值有误）",
                )
            )
            continue
        if art.archive:
            try:
                missing = sorted(set(art.files) - _members(path))
            except (tarfile.TarError, OSError) as exc:
                problems.append(
                    (
                        f"{art.name}: not a readable archive: {exc}",
                        f"{art.name}：不是可读的压缩包：{exc}",
                    )
                )
                continue
            if missing:
                problems.append(
                    (
                        f"{art.name}: archive lacks {', '.join(missing)}",
                        f"{art.name}：压缩包中缺少 {', '.join(missing)}",
                    )
                )
                continue
        staged[art.name] = path
    if problems:
        raise ArtifactError(problems)
    return staged


def install(module: AnsibleModule, art: Artifact, staged: str) -> dict[str, Any]:
    files: dict[str, Any] = {}
    if art.archive:
        with tarfile.open(staged, "r:*") as tar:
            by_name = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            for member, dest in sorted(art.files.items()):
                handle = tar.extractfile(by_name[member])
                if handle is None:
                    raise OSError(f"{art.name}: {member} is not a regular file")
                with handle:
                    digest = place_stream(module, dest, handle, art.mode, chunk=_CHUNK)
                files[dest] = {"sha256": digest, "stat": _stat(dest)}
    else:
        dest = art.files[""]
        with open(staged, "rb") as handle:
            digest = place_stream(module, dest, handle, art.mode, chunk=_CHUNK)
        files[dest] = {"sha256": digest, "stat": _stat(dest)}
    return {"key": art.key(), "files": files}


def load_state(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {"artifacts": {}}
    return data if isinstance(data.get("artifacts"), dict) else {"artifacts": {}}


def save_state(module: AnsibleModule, path: str, state: dict[str, Any]) -> None:
    data = json.dumps(state, indent=1, sort_keys=True).encode("utf-8")
    replace_file(module, path, data, 0o600, dir_mode=0o700)


def run(params: dict[str, Any], check_mode: bool, module: AnsibleModule) -> dict[str, Any]:
    artifacts = [parse(spec) for spec in params["artifacts"]]
    names = [a.name for a in artifacts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ArtifactError(
            [(f"duplicate artifact names: {', '.join(dupes)}", f"制品名称重复：{', '.join(dupes)}")]
        )
    state = load_state(params["state_file"])
    before = json.dumps(state, sort_keys=True)
    todo = [a for a in artifacts if not up_to_date(a, state["artifacts"].get(a.name))]
    result: dict[str, Any] = {
        "changed": bool(todo),
        "installed": [a.name for a in todo],
        "changed_files": sorted(d for a in todo for d in a.files.values()),
        "current": [a.name for a in artifacts if a not in todo],
    }
    if check_mode:
        return result
    if not todo:
        if json.dumps(state, sort_keys=True) != before:  # refreshed stats only: not a change
            save_state(module, params["state_file"], state)
        return result
    staging = params["staging_dir"]
    os.makedirs(staging, mode=0o700, exist_ok=True)
    try:
        staged = stage(todo, staging, params["timeout"], params["retries"])
        for art in todo:
            state["artifacts"][art.name] = install(module, art, staged[art.name])
    finally:
        for entry in os.listdir(staging):
            os.unlink(os.path.join(staging, entry))
    save_state(module, params["state_file"], state)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "artifacts": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "url": {"type": "str", "required": True},
                    "checksum_urls": {"type": "list", "elements": "str"},
                    "sha256": {"type": "str", "default": ""},
                    "dest": {"type": "path"},
                    "files": {"type": "dict"},
                    "mode": {"type": "str", "default": "0755"},
                },
            },
            "staging_dir": {"type": "path", "required": True},
            "state_file": {"type": "path", "required": True},
            "timeout": {"type": "int", "default": 60},
            "retries": {"type": "int", "default": 3},
        },
        supports_check_mode=True,
    )
    try:
        result = run(module.params, module.check_mode, module)
    except ArtifactError as exc:
        lines = [f"- {en}\n  {zh}" for en, zh in exc.problems]
        module.fail_json(
            msg="release_artifacts: verification failed, nothing was installed"
            " / 校验失败，未安装任何文件:\n" + "\n".join(lines),
            problems=[{"en": en, "zh": zh} for en, zh in exc.problems],
        )
    except OSError as exc:
        module.fail_json(msg=f"release_artifacts: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
