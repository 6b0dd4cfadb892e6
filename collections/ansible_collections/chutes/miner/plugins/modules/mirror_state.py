#!/usr/bin/python
# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Backups, recorded state and rollback of the files the mirrors role owns."""

from __future__ import annotations

DOCUMENTATION = r"""
module: mirror_state
short_description: Back up, inspect and restore the files of chutes.miner.mirrors
description:
  - C(inspect) reads the recorded choice (C(state.json)), finds the host's original
    apt origin (from the backups, else from unmarked sources files) and whether a
    microk8s data dir exists. Never changes anything.
  - C(prepare) copies every pre-existing file in O(paths) that does not carry the
    O(marker) into C(<state_dir>/backups/) with its sha256, once, records which
    paths and parent directories did not exist, and creates those directories.
  - C(prepare) also backs up (likewise) and deletes every unmarked file in O(remove); a later
    C(restore) of that path puts it back.
  - C(write) writes O(files) (rendered on the controller) whole and atomically, owned by
    root, only where content or mode differ, with a diff per file; one call for all of them.
  - C(restore) puts the backups back (checksum-verified), deletes files that carry
    the marker or that the role created, removes directories it created when empty,
    and never touches any other file. O(purge) then removes O(state_dir).
  - C(apply) is C(prepare) of the O(files) destinations and O(remove), C(restore) of
    O(paths) and O(globs) (the O(files) kept), then C(write), in one call; it returns
    C(apt_changed), the paths of O(apt_paths) it touched.
options:
  state:
    description: What to do.
    type: str
    choices: [inspect, prepare, write, restore, apply]
    required: true
  state_dir:
    description: Where C(state.json) and C(backups/) live.
    type: path
    required: true
  paths:
    description: Files the role may own.
    type: list
    elements: path
    default: []
  globs:
    description: Shell patterns of further files the role may own (C(restore) only).
    type: list
    elements: str
    default: []
  files:
    description: Files for C(write), each C(dest), C(content), optional C(mode) (C(0644)).
    type: list
    elements: dict
    default: []
  apt_paths:
    description: With C(apply), the paths whose change needs C(apt-get update).
    type: list
    elements: path
    default: []
  remove:
    description: Files that C(prepare) backs up and deletes (another tool's file the role replaces).
    type: list
    elements: path
    default: []
  keep:
    description: Paths that C(restore) must leave alone (the files being written now).
    type: list
    elements: path
    default: []
  marker:
    description: Text that marks a file as written by the role.
    type: str
    default: "managed-by: chutes.miner.mirrors"
  purge:
    description: With C(restore), remove O(state_dir) afterwards.
    type: bool
    default: false
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
"""

EXAMPLES = r"""
- name: Back up files before the first change
  chutes.miner.mirror_state:
    state: prepare
    state_dir: /var/lib/chutes-miner/mirrors
    paths: [/etc/pip.conf]
"""

RETURN = r"""
recorded:
  description: Parsed C(state.json) (C(inspect)), or an empty dict.
  type: dict
  returned: when state is inspect
apt_origin:
  description: Original apt C(base) and C(security) URIs (C(inspect)).
  type: dict
  returned: when state is inspect
microk8s:
  description: Whether C(/var/snap/microk8s/current/args) exists (C(inspect)).
  type: bool
  returned: when state is inspect
snap_recorded:
  description: Whether snapd options set by the role are recorded (C(inspect)).
  type: bool
  returned: when state is inspect
backed_up:
  description: Paths copied to the backup directory.
  type: list
  returned: when state is prepare
deleted:
  description: Paths of O(remove) deleted (after their backup).
  type: list
  returned: when state is prepare
written:
  description: Paths written (or, in check mode, that would be).
  type: list
  returned: when state is write or apply
apt_changed:
  description: Paths of O(apt_paths) written, restored, removed or deleted.
  type: list
  returned: when state is apply
restored:
  description: Paths restored from a backup.
  type: list
  returned: when state is restore
removed:
  description: Paths and directories removed.
  type: list
  returned: when state is restore
"""

import glob
import hashlib
import os
import shutil
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chutes.miner.plugins.module_utils.files import (
    load_json,
    replace_file,
    save_json,
)

MICROK8S_ARGS = "/var/snap/microk8s/current/args"


def _sha(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _marked(path: str, marker: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return marker.encode() in fh.read(4096)
    except OSError:
        return False


def _parse_sources(text: str, deb822: bool) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    if deb822:
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _sep, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                out.extend(
                    (uri, fields.get("suites", "").split())
                    for uri in fields.get("uris", "").split()
                )
        return out
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "deb":
            rest = [w for w in words[1:] if not w.startswith("[")] if "[" in line else words[1:]
            rest = [w for w in rest if not w.endswith("]")]
            if len(rest) >= 2:
                out.append((rest[0], [rest[1]]))
    return out


def apt_origin(index: dict[str, Any], backup_dir: str, marker: str) -> dict[str, str]:
    entries: list[tuple[str, list[str]]] = []
    candidates = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    candidates += sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in candidates:
        rec = index.get("files", {}).get(path)
        src = os.path.join(backup_dir, rec["backup"]) if rec else path
        if not rec and (not os.path.isfile(path) or _marked(path, marker)):
            continue
        try:
            with open(src, encoding="utf-8", errors="replace") as fh:
                entries.extend(_parse_sources(fh.read(), path.endswith(".sources")))
        except OSError:
            continue
    for path, rec in sorted(index.get("files", {}).items()):
        if path not in candidates and path.startswith("/etc/apt/sources.list"):
            with open(
                os.path.join(backup_dir, rec["backup"]), encoding="utf-8", errors="replace"
            ) as fh:
                entries.extend(_parse_sources(fh.read(), path.endswith(".sources")))
    entries = [(u, s) for u, s in entries if s != ["/"]]  # flat repos (CUDA, toolkit) are no origin
    base = next(
        (
            u
            for u, s in entries
            if s and not any(x.endswith("-security") or x.endswith("/updates") for x in s)
        ),
        "",
    )
    security = next((u for u, s in entries if any(x.endswith("-security") for x in s)), "")
    return {"base": _slash(base), "security": _slash(security)}


def _slash(url: str) -> str:
    return url if not url or url.endswith("/") else url + "/"


def write_files(
    module: AnsibleModule, files: list[dict[str, Any]], check: bool = False
) -> tuple[list[str], list[dict[str, str]]]:
    """Write each file whose content, mode or owner differs; return paths and diffs."""
    written: list[str] = []
    diffs: list[dict[str, str]] = []
    root = os.geteuid() == 0
    for item in files:
        dest, data = str(item["dest"]), str(item["content"]).encode()
        mode = int(str(item.get("mode", "0644")), 8)
        try:
            with open(dest, "rb") as fh:
                before: bytes | None = fh.read()
            st = os.stat(dest)
            same_meta = (st.st_mode & 0o7777) == mode and (not root or st.st_uid == st.st_gid == 0)
        except FileNotFoundError:
            before, same_meta = None, False
        if before == data and same_meta:
            continue
        written.append(dest)
        diffs.append(
            {
                "before_header": dest if before is not None else "(absent)",
                "after_header": dest,
                "before": "" if before is None else before.decode("utf-8", "replace"),
                "after": data.decode("utf-8", "replace"),
            }
        )
        if not check:
            replace_file(module, dest, data, mode)
    return written, diffs


def prepare(
    module: AnsibleModule, index: dict[str, Any], paths: list[str], remove: list[str]
) -> dict[str, Any]:
    """Back up pre-existing unmarked files once, create missing directories, delete ``remove``."""
    p = module.params
    marker = p["marker"]
    backup_dir = os.path.join(p["state_dir"], "backups")
    index_path = os.path.join(backup_dir, "index.json")
    backed_up: list[str] = []
    dirs: list[str] = []
    created: list[str] = []
    for path in paths:
        if os.path.isfile(path):
            rec = index["files"].get(path)
            if _marked(path, marker) or path in index["created"]:
                continue
            if rec and rec["sha256"] == _sha(path):
                continue
            backed_up.append(path)
            continue
        if os.path.lexists(path) or path in index["created"]:
            continue
        created.append(path)
        parent = os.path.dirname(path)
        missing = []
        while parent and not os.path.isdir(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        dirs.extend(d for d in reversed(missing) if d not in dirs)
    deleted: list[str] = []
    for path in remove:
        if not os.path.isfile(path) or _marked(path, marker):
            continue
        rec = index["files"].get(path)
        if not (rec and rec["sha256"] == _sha(path)) and path not in backed_up:
            backed_up.append(path)
        deleted.append(path)
    parent = backup_dir
    while parent and not os.path.isdir(parent):
        dirs.append(parent)
        parent = os.path.dirname(parent)
    changed = bool(backed_up or dirs or created or deleted)
    if changed and not module.check_mode:
        os.makedirs(backup_dir, mode=0o700, exist_ok=True)
        for path in backed_up:
            name = path.strip("/").replace("/", "__")
            shutil.copy2(path, os.path.join(backup_dir, name))
            index["files"][path] = {"backup": name, "sha256": _sha(path)}
        for d in sorted(dirs, key=len):
            os.makedirs(d, mode=0o700 if d.startswith(p["state_dir"]) else 0o755, exist_ok=True)
        index["dirs"] = sorted(set(index["dirs"]) | set(dirs))
        index["created"] = sorted(set(index["created"]) | set(created))
        save_json(module, index_path, index)
        for path in deleted:
            os.unlink(path)
    return {
        "changed": changed,
        "backed_up": backed_up,
        "deleted": deleted,
        "created": created,
        "created_dirs": dirs,
    }


def restore(
    module: AnsibleModule,
    index: dict[str, Any],
    paths: list[str],
    globs: list[str],
    keep: list[str],
    purge: bool,
) -> dict[str, list[str]]:
    """Put backups back, delete the role's own files and empty directories it created."""
    p = module.params
    marker = p["marker"]
    backup_dir = os.path.join(p["state_dir"], "backups")
    index_path = os.path.join(backup_dir, "index.json")
    restored: list[str] = []
    removed: list[str] = []
    paths = list(dict.fromkeys(paths + [f for g in globs for f in sorted(glob.glob(g))]))
    paths = [x for x in paths if x not in set(keep)]
    for path in paths:
        rec = index["files"].get(path)
        if rec:
            src = os.path.join(backup_dir, rec["backup"])
            if _sha(src) != rec["sha256"]:
                module.fail_json(
                    msg=f"backup of {path} does not match its checksum; not restoring"
                    " / 备份校验失败，未恢复"
                )
            if not os.path.isfile(path) or _sha(path) != rec["sha256"]:
                restored.append(path)
                if not module.check_mode:
                    with open(src, "rb") as fh:
                        replace_file(module, path, fh.read(), os.stat(src).st_mode & 0o7777)
        elif os.path.isfile(path) and (_marked(path, marker) or path in index["created"]):
            removed.append(path)
            if not module.check_mode:
                os.unlink(path)
    done = set(paths)
    if not module.check_mode:
        for path in restored:
            index["files"].pop(path, None)
        index["created"] = [c for c in index["created"] if c not in done]
    for d in sorted(index["dirs"], key=len, reverse=True):
        if (
            os.path.isdir(d)
            and not os.listdir(d if module.check_mode else d)
            and not any(c.startswith(d + "/") for c in index["created"])
        ):
            removed.append(d)
            if not module.check_mode:
                os.rmdir(d)
    if not module.check_mode:
        index["dirs"] = [d for d in index["dirs"] if os.path.isdir(d)]
        if purge:
            if os.path.isdir(p["state_dir"]):
                shutil.rmtree(p["state_dir"])
                removed.append(p["state_dir"])
            for d in sorted(index["dirs"], key=len, reverse=True):
                if os.path.isdir(d) and not os.listdir(d):
                    os.rmdir(d)
                    removed.append(d)
        elif restored or removed:
            save_json(module, index_path, index)
    elif purge and os.path.isdir(p["state_dir"]):
        removed.append(p["state_dir"])
    return {"restored": restored, "removed": removed}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {
                "type": "str",
                "choices": ["inspect", "prepare", "write", "restore", "apply"],
                "required": True,
            },
            "state_dir": {"type": "path", "required": True},
            "paths": {"type": "list", "elements": "path", "default": []},
            "globs": {"type": "list", "elements": "str", "default": []},
            "keep": {"type": "list", "elements": "path", "default": []},
            "remove": {"type": "list", "elements": "path", "default": []},
            "files": {"type": "list", "elements": "dict", "default": []},
            "apt_paths": {"type": "list", "elements": "path", "default": []},
            "marker": {"type": "str", "default": "managed-by: chutes.miner.mirrors"},
            "purge": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    backup_dir = os.path.join(p["state_dir"], "backups")
    index_path = os.path.join(backup_dir, "index.json")
    index: dict[str, Any] = load_json(index_path, {})
    index.setdefault("files", {})
    index.setdefault("created", [])
    index.setdefault("dirs", [])
    marker = p["marker"]

    if p["state"] == "inspect":
        module.exit_json(
            changed=False,
            recorded=load_json(os.path.join(p["state_dir"], "state.json"), {}),
            apt_origin=apt_origin(index, backup_dir, marker),
            microk8s=os.path.isdir(MICROK8S_ARGS),
            # snapd options set by chutes.miner.mirror_snap are recorded here
            snap_recorded=os.path.isfile(os.path.join(p["state_dir"], "snap.json")),
        )

    if p["state"] == "prepare":
        res = prepare(module, index, p["paths"], p["remove"])
        res["changed"] = bool(res["changed"])
        module.exit_json(**res)
    if p["state"] == "write":
        written, diffs = write_files(module, p["files"], module.check_mode)
        module.exit_json(changed=bool(written), written=written, diff=diffs)
    if p["state"] == "restore":
        res = restore(module, index, p["paths"], p["globs"], p["keep"], p["purge"])
        module.exit_json(changed=bool(res["restored"] or res["removed"]), **res)
    # apply: prepare, restore and write in one call (a no-change rerun costs one round trip)
    dests = [str(item["dest"]) for item in p["files"]]
    prepared = prepare(module, index, dests, p["remove"])
    restored = restore(module, index, p["paths"], p["globs"], dests, False)
    written, diffs = write_files(module, p["files"], module.check_mode)
    touched = set(written + prepared["deleted"] + restored["restored"] + restored["removed"])
    result: dict[str, Any] = {k: v for k, v in prepared.items() if k != "changed"}
    result.update(restored)
    result.update(written=written, apt_changed=sorted(touched & set(p["apt_paths"])), diff=diffs)
    result["changed"] = bool(
        prepared["changed"] or restored["restored"] or restored["removed"] or written
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
