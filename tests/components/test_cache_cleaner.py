"""The chute cache cleaner (roles/miner_scheduler/files/cache_cleaner.py), run as the cache-init
step runs it: `python cache_cleaner.py` with the Job's environment, on a real directory tree
standing for /var/snap/cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.ansible_env import REPO

SCRIPT = (
    REPO
    / "collections/ansible_collections/chutes/miner/roles/miner_scheduler/files"
    / "cache_cleaner.py"
)
DAY = 86400.0
KIB = 1024


def cache(root: Path, name: str, size: int, age_days: float) -> Path:
    """A chute's cache: a nested file of `size` bytes, everything last written `age_days` ago."""
    leaf = root / name / "hub" / "models--x"
    leaf.mkdir(parents=True)
    (leaf / "blob").write_bytes(b"x" * size)
    when = time.time() - age_days * DAY
    for path in (leaf / "blob", leaf, leaf.parent, root / name):
        os.utime(path, (when, when))
    return root / name


def clean(root: Path, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env={"PATH": os.environ["PATH"], "CACHE_ROOT": str(root), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def left(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def test_old_caches_go_but_never_the_starting_chutes(tmp_path: Path) -> None:
    cache(tmp_path, "old", KIB, 40)
    cache(tmp_path, "mine", KIB, 90)  # older still, but it is the chute that starts
    cache(tmp_path, "fresh", KIB, 1)
    out = clean(tmp_path, CLEANUP_EXCLUDE="mine", CACHE_MAX_AGE_DAYS="30")
    assert left(tmp_path) == {"mine", "fresh"}
    assert "removed" in out and "old" in out and "not written for 40.0 days" in out


def test_size_limit_removes_least_recently_written_first(tmp_path: Path) -> None:
    for name, age in (("a", 5), ("b", 3), ("c", 1), ("mine", 10)):
        cache(tmp_path, name, 100 * KIB, age)
    # room for two caches of 100 KiB (and a little more): the two oldest others go
    limit = str(250 * KIB / 1024**3)
    clean(tmp_path, CLEANUP_EXCLUDE="mine", CACHE_MAX_SIZE_GB=limit)
    assert left(tmp_path) == {"c", "mine"}


def test_within_limits_nothing_is_removed(tmp_path: Path) -> None:
    for name in ("a", "b"):
        cache(tmp_path, name, KIB, 2)
    out = clean(tmp_path, CLEANUP_EXCLUDE="a")
    assert left(tmp_path) == {"a", "b"} and "removed 0" in out


def test_links_are_not_followed_and_files_at_the_top_stay(tmp_path: Path) -> None:
    root, outside = tmp_path / "cache", tmp_path / "outside"
    root.mkdir()
    precious = cache(outside, "precious", KIB, 100)
    (root / "linked").symlink_to(precious)
    inner = cache(root, "old", KIB, 100)
    (inner / "escape").symlink_to(precious)  # a link inside a removed cache
    when = time.time() - 100 * DAY
    for path in (inner / "escape", inner):
        os.utime(path, (when, when), follow_symlinks=False)
    (root / "stray-file").write_text("x")
    clean(root, CLEANUP_EXCLUDE="none")
    assert left(root) == {"linked", "stray-file"}
    assert (precious / "hub/models--x/blob").stat().st_size == KIB


def test_bad_settings_fall_back_and_a_missing_root_is_fine(tmp_path: Path) -> None:
    cache(tmp_path, "old", KIB, 40)
    out = clean(tmp_path, CACHE_MAX_AGE_DAYS="soon", CACHE_MAX_SIZE_GB="-1")
    assert "is not a number, using 30" in out
    assert left(tmp_path) == set()  # 40 days > the default 30
    assert "nothing to clean" in clean(tmp_path / "absent")
