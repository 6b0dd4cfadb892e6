# managed-by: chutes.miner.miner_scheduler (ConfigMap chutes-cache-cleaner)
"""Chute cache cleaner: the init step of every chute Job (container `cache-init`).

The node's chute caches live in one directory per chute, /var/snap/cache/<chute_id>, mounted
here as CACHE_ROOT (/raw-cache). Before a chute starts, this removes other chutes' caches that
were not written for CACHE_MAX_AGE_DAYS, then the least recently written ones until all caches
together fit in CACHE_MAX_SIZE_GB. The starting chute's own directory (CLEANUP_EXCLUDE) is
never removed, and nothing outside CACHE_ROOT is touched: symbolic links are not followed.

Standard library only (it runs with whatever `python` the cache-init image has). A failure to
read or remove one directory is reported and skipped; the script always exits 0, because a
chute must not fail to start over someone else's cache.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass

GB = 1024**3


def say(line: str) -> None:
    sys.stdout.write(f"cache-cleaner: {line}\n")


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    size: int  # bytes
    written: float  # newest mtime in the tree (seconds since the epoch)


def scan(path: str) -> tuple[int, float]:
    """Total size and newest mtime of a directory tree, without following links."""
    size, newest = 0, os.lstat(path).st_mtime
    for root, dirs, files in os.walk(path, followlinks=False):
        for name, is_file in [(d, False) for d in dirs] + [(f, True) for f in files]:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            newest = max(newest, st.st_mtime)
            size += st.st_size if is_file else 0
    return size, newest


def entries(root: str) -> list[Entry]:
    found = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        try:
            size, written = scan(path)
        except OSError as exc:
            say(f"skipping {path}: {exc}")
            continue
        found.append(Entry(name, path, size, written))
    return found


def plan(
    found: list[Entry], exclude: str, max_age_days: float, max_size_gb: float, now: float
) -> list[tuple[Entry, str]]:
    """The caches to remove, oldest first, each with the reason. Oldest first, the ones too old
    come before all others, so one pass removes them and then trims to the size limit."""
    doomed: list[tuple[Entry, str]] = []
    total = sum(e.size for e in found)
    for e in sorted((e for e in found if e.name != exclude), key=lambda e: e.written):
        if now - e.written > max_age_days * 86400:
            why = f"not written for {(now - e.written) / 86400:.1f} days"
        elif total > max_size_gb * GB:
            why = f"caches total {total / GB:.1f} GB > {max_size_gb:g} GB"
        else:
            break
        doomed.append((e, why))
        total -= e.size
    return doomed


def number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        say(f"{name}={raw!r} is not a number, using {default:g}")
        return default
    return value if value > 0 else default


def main() -> int:
    root = os.environ.get("CACHE_ROOT", "/raw-cache")
    exclude = os.environ.get("CLEANUP_EXCLUDE", "").strip()
    max_age = number("CACHE_MAX_AGE_DAYS", 30)
    max_size = number("CACHE_MAX_SIZE_GB", 500)
    if not os.path.isdir(root):
        say(f"{root} is not a directory; nothing to clean")
        return 0
    found = entries(root)
    doomed = plan(found, exclude, max_age, max_size, time.time())
    freed = 0
    for e, why in doomed:
        try:
            shutil.rmtree(e.path)
        except OSError as exc:
            say(f"could not remove {e.path}: {exc}")
            continue
        freed += e.size
        say(f"removed {e.path} ({e.size / GB:.2f} GB): {why}")
    say(
        f"{len(found)} cache(s) under {root}, kept {exclude or '-'}, "
        f"removed {len(doomed)}, freed {freed / GB:.2f} GB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
