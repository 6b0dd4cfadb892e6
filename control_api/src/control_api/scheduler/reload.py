"""Hot reload of a strategy file (`GEPETTO_STRATEGY=/path/strategy.py`).

Every `STRATEGY_RELOAD_INTERVAL_S` the scheduler hashes the file. When the bytes changed, the
new version is loaded as at startup and each hook is called once on the synthetic snapshot of
`check-strategy`. Only a version that loads and whose hooks all answer validly replaces the
running strategy, between two hook calls; state the old strategy object kept is not carried
over (a reload is a restart of the strategy, not of the scheduler). A version that does not
load, or one hook of which raises, runs too long or answers something invalid, is refused
with the reason in English and Chinese, once per content; the running strategy stays. A file
that disappears is refused the same way. Module paths (`control_api.scheduler.strategies.fill`)
are not watched: they change with the image, which restarts the scheduler anyway.

Kubernetes updates a mounted ConfigMap by swapping a symlink, so a reader sees either the old
or the new file, never half of one; a file written in place may be read half-written, which
fails the check and is retried when its bytes change again.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from control_api.scheduler.check import hook_answers
from control_api.scheduler.strategy import (
    USER_MODULE,
    StrategyError,
    StrategyRunner,
    is_file_spec,
    load_strategy,
)

log = logging.getLogger(__name__)
Outcome = Literal["unchanged", "reloaded", "refused"]


def fingerprint(path: Path) -> str | None:
    """sha256 of the file's bytes; None when it cannot be read."""
    source = _read(path)
    return None if source is None else hashlib.sha256(source).hexdigest()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


class StrategyReloader:
    """Polled by the scheduler (`poll()`, blocking: run it on a worker thread)."""

    def __init__(
        self,
        spec: str,
        config: Mapping[str, Any],
        runner: StrategyRunner,
        *,
        timeout_s: float = 5.0,
    ) -> None:
        if not is_file_spec(spec):
            raise ValueError(f"{spec!r} is a module path, not a strategy file")
        self.spec = spec
        self.path = Path(spec)
        self.config = dict(config)
        self.runner = runner
        self.timeout_s = timeout_s
        self.current = fingerprint(self.path)  # the version running (loaded at startup)
        self.refused: str | None = None  # the last version refused, not tried again
        self.reloads = self.refusals = 0

    def poll(self) -> Outcome:
        source = _read(self.path)
        digest = "missing" if source is None else hashlib.sha256(source).hexdigest()
        if digest in (self.current, self.refused):
            return "unchanged"
        if source is None:
            return self._refuse(
                digest,
                StrategyError(
                    self.spec,
                    "file not found; the running strategy stays",
                    "文件不存在；继续使用当前策略",
                ),
            )
        previous = sys.modules.get(USER_MODULE)
        try:
            strategy = load_strategy(self.spec, self.config, source=source)
        except StrategyError as exc:
            return self._refuse(digest, exc, previous)
        _, problems = hook_answers(strategy, self.timeout_s)
        if problems:
            lines = "; ".join(p.strip(" !") for p in problems)
            error = StrategyError(
                self.spec,
                f"a hook failed on the check snapshot ({lines}); the running strategy stays",
                f"钩子在检查快照上出错（{lines}）；继续使用当前策略",
            )
            return self._refuse(digest, error, previous)
        self.runner.replace(strategy)
        self.current, self.refused = digest, None
        self.reloads += 1
        log.info(
            "scheduler.strategy_reloaded",
            extra={"strategy": self.spec, "sha256": digest[:16], "name": self.runner.name},
        )
        return "reloaded"

    def _refuse(self, digest: str, error: StrategyError, module: Any = None) -> Outcome:
        if module is not None:  # the running strategy's module stays the one importable
            sys.modules[USER_MODULE] = module
        self.refused = digest
        self.refusals += 1
        log.error(
            "scheduler.strategy_reload_refused",
            extra={"strategy": self.spec, "sha256": digest[:16], "error": str(error)},
        )
        return "refused"
