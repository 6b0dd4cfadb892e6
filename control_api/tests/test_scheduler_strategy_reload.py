"""Hot reload of a strategy file (scheduler/reload.py): a new version that loads and passes
the check snapshot replaces the running strategy; anything else is refused once, loudly, and
the running strategy stays."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest
from control_api.core.config import Settings
from control_api.scheduler.check import synthetic_snapshot
from control_api.scheduler.model import PlacementRequest
from control_api.scheduler.reload import StrategyReloader
from control_api.scheduler.service import watch_strategy
from control_api.scheduler.strategy import USER_MODULE, StrategyRunner, load_strategy

from tests.conftest import SettingsFactory
from tests.sched_rig import scheduler_settings

REQ = PlacementRequest("llm", 2)


def version(pick: str, extra: str = "") -> str:
    """A strategy that places everything on `pick` (a server of the check snapshot)."""
    return (
        "STRATEGY_API_VERSION = 1\n"
        "class S:\n"
        f"    name = 'pick-{pick}'\n"
        f"    def choose_server(self, snap, req):\n        return {pick!r}\n"
        f"{extra}"
        "def create_strategy(config):\n    return S()\n"
    )


@pytest.fixture()
def strategy_file(tmp_path: Path) -> Path:
    path = tmp_path / "strategy.py"
    path.write_text(version("s-a"))
    return path


def runner_for(path: Path) -> StrategyRunner:
    return StrategyRunner(load_strategy(str(path)), timeout_s=0.5)


def test_a_new_version_replaces_the_running_one(
    strategy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as in the image
    os.utime(strategy_file, (1_000_000, 1_000_000))
    runner = runner_for(strategy_file)
    reloader = StrategyReloader(str(strategy_file), {}, runner, timeout_s=0.5)
    snap = synthetic_snapshot()
    try:
        assert reloader.poll() == "unchanged"
        assert runner.choose_server(snap, REQ) == "s-a"
        # same size and modification time: compiled from the new bytes, never from bytecode
        # cached for the old ones
        strategy_file.write_text(version("s-b"))
        os.utime(strategy_file, (1_000_000, 1_000_000))
        assert reloader.poll() == "reloaded"
        assert runner.choose_server(snap, REQ) == "s-b" and runner.name == "pick-s-b"
        assert reloader.poll() == "unchanged" and reloader.reloads == 1
    finally:
        runner.close()


@pytest.mark.parametrize(
    ("text", "english", "chinese"),
    [
        ("def broken(:\n", "failed to import: SyntaxError", "导入失败"),
        ("STRATEGY_API_VERSION = 2\n", "STRATEGY_API_VERSION must be 1", "必须为"),
        (
            version("s-b", "    def autoscale(self, snap):\n        raise ValueError('x')\n"),
            "a hook failed on the check snapshot (scheduler.strategy_hook_failed",
            "钩子在检查快照上出错",
        ),
        (
            version("nowhere"),
            "choose_server returned 'nowhere', not a server id of the snapshot",
            "继续使用当前策略",
        ),
        (
            version("s-b", "    def autoscale(self, snap):\n        import time; time.sleep(2)\n"),
            "took longer than 0.5 s",
            "钩子在检查快照上出错",
        ),
    ],
)
def test_a_broken_version_is_refused_once_and_the_old_one_stays(
    strategy_file: Path,
    caplog: pytest.LogCaptureFixture,
    text: str,
    english: str,
    chinese: str,
) -> None:
    runner = runner_for(strategy_file)
    module = sys.modules[USER_MODULE]
    reloader = StrategyReloader(str(strategy_file), {}, runner, timeout_s=0.5)
    try:
        strategy_file.write_text(text)
        with caplog.at_level(logging.ERROR, "control_api.scheduler.reload"):
            assert reloader.poll() == "refused"
            assert reloader.poll() == "unchanged", "the same bytes are not tried again"
        refusals = [
            r for r in caplog.records if r.getMessage() == "scheduler.strategy_reload_refused"
        ]
        assert len(refusals) == 1
        error = str(getattr(refusals[0], "error", ""))
        assert english in error and chinese in error, error
        assert runner.choose_server(synthetic_snapshot(), REQ) == "s-a"
        assert sys.modules[USER_MODULE] is module, "the running strategy's module stays"
        strategy_file.write_text(version("s-b"))
        assert reloader.poll() == "reloaded"
        assert runner.choose_server(synthetic_snapshot(), REQ) == "s-b"
    finally:
        runner.close()


def test_a_removed_file_keeps_the_running_strategy(strategy_file: Path) -> None:
    runner = runner_for(strategy_file)
    reloader = StrategyReloader(str(strategy_file), {}, runner)
    try:
        strategy_file.unlink()
        assert reloader.poll() == "refused" and reloader.poll() == "unchanged"
        assert runner.choose_server(synthetic_snapshot(), REQ) == "s-a"
        strategy_file.write_text(version("s-a"))  # back as it was: nothing to do
        assert reloader.poll() == "unchanged" and reloader.reloads == 0
    finally:
        runner.close()


def test_module_paths_are_not_watched() -> None:
    with pytest.raises(ValueError, match="module path"):
        StrategyReloader("control_api.scheduler.strategies.fill", {}, StrategyRunner(None))


def test_the_scheduler_watches_its_strategy_file(
    strategy_file: Path, make_settings: SettingsFactory
) -> None:
    """serve() starts this watcher: the running scheduler's runner follows the file."""
    base: Settings = make_settings()
    settings = scheduler_settings(
        base, gepetto_strategy=str(strategy_file), strategy_reload_interval_s=0.05
    )
    runner = runner_for(strategy_file)

    async def follow() -> list[str | None]:
        watch = watch_strategy(settings, runner)
        assert watch is not None
        seen = [runner.choose_server(synthetic_snapshot(), REQ)]
        strategy_file.write_text(version("s-b"))
        for _ in range(200):
            await asyncio.sleep(0.05)
            if runner.name == "pick-s-b":
                break
        seen.append(runner.choose_server(synthetic_snapshot(), REQ))
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        return seen

    try:
        assert asyncio.run(follow()) == ["s-a", "s-b"]
    finally:
        runner.close()
    off = scheduler_settings(
        base, gepetto_strategy=str(strategy_file), strategy_reload_interval_s=0
    )
    module = scheduler_settings(base, gepetto_strategy="control_api.scheduler.strategies.fill")

    async def none() -> tuple[object, object]:
        return watch_strategy(off, runner), watch_strategy(module, runner)

    assert asyncio.run(none()) == (None, None)
