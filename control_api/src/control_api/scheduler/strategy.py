"""The strategy plug-in (runtime contract §9.5): what an operator writes, how it is loaded,
and how the scheduler calls it.

A strategy is a Python module (a dotted module path, or a `.py` file loaded as module
`gepetto_user_strategy`) that defines `STRATEGY_API_VERSION = 1` and
`create_strategy(config: dict)` returning an object with any subset of the hooks of
`Strategy`; a hook it lacks is the baseline's. Hooks are plain functions or coroutines, take a
read-only `Snapshot` first and return decisions only (no I/O), so they are unit-testable on
synthetic snapshots and replayable in the simulator.

The scheduler never trusts a decision: `StrategyRunner` checks its type and that it names
things in the snapshot (an invalid one is logged and dropped), uses the baseline's answer
when a hook raises or runs longer than its timeout, and the claim (control_api/db/claims.py)
re-validates every placement in PostgreSQL. A module that fails to load stops startup with a
clear error; it never half-runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import inspect
import logging
import sys
import time
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from control_api.scheduler.model import (
    ChuteView,
    JobDecision,
    JobView,
    PlacementRequest,
    Preemption,
    ScaleIntent,
    Snapshot,
)
from control_api.scheduler.strategies.baseline import BaselineStrategy

log = logging.getLogger(__name__)
STRATEGY_API_VERSION = 1
USER_MODULE = "gepetto_user_strategy"
HOOKS = (
    "autoscale",
    "choose_server",
    "choose_victims",
    "choose_scale_down",
    "on_chute_created",
    "on_bounty_change",
    "on_job_created",
)
MAX_DESIRED_INSTANCES = 16
T = TypeVar("T")


class Strategy(Protocol):
    """Every hook a strategy may define (each optional; the baseline fills the gaps)."""

    def autoscale(self, snap: Snapshot) -> list[ScaleIntent]:
        """Every 15 s: +1 / -1 intents per chute (at most one per chute is applied)."""
        ...

    def choose_server(self, snap: Snapshot, req: PlacementRequest) -> str | None:
        """Every placement: the server to claim GPUs on, or None (no room)."""
        ...

    def choose_victims(self, snap: Snapshot, req: PlacementRequest) -> Preemption | None:
        """No server has room and `req.allow_preempt`: deployments to evict on one server."""
        ...

    def choose_scale_down(self, snap: Snapshot, chute_id: str) -> str | None:
        """A -1 intent: the deployment to remove, or None."""
        ...

    def on_chute_created(self, snap: Snapshot, chute: ChuteView) -> int:
        """A new (non-job) chute: how many instances of it this miner wants."""
        ...

    def on_bounty_change(
        self, snap: Snapshot, chute_id: str, bounty: float
    ) -> PlacementRequest | None:
        """A bounty on a chute this miner does not run: place it now, or None."""
        ...

    def on_job_created(self, snap: Snapshot, job: JobView) -> JobDecision:
        """A job for this miner: take it, and whether it may evict others."""
        ...


class StrategyError(Exception):
    """The strategy cannot be used; the message names the file and what is wrong, in English
    and Chinese (shown to the operator at startup and by `check-strategy`)."""

    def __init__(self, source: str, english: str, chinese: str) -> None:
        super().__init__(f"strategy {source}: {english} / 策略 {source}：{chinese}")


def _import_file(path: Path, source: bytes | None = None) -> Any:
    """The file as module USER_MODULE, compiled from `source` (the file's bytes when None),
    never from a cached .pyc: a new version of the same size within the same second would
    otherwise load the old bytecode."""
    if path.suffix != ".py":
        raise StrategyError(str(path), "not a Python file", "不是 Python 文件")
    if source is None:
        try:
            source = path.read_bytes()
        except OSError:
            raise StrategyError(str(path), "file not found", "文件不存在") from None
    module = types.ModuleType(USER_MODULE)
    module.__file__ = str(path)
    previous = sys.modules.get(USER_MODULE)
    sys.modules[USER_MODULE] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except BaseException as exc:
        if previous is not None:
            sys.modules[USER_MODULE] = previous
        else:
            sys.modules.pop(USER_MODULE, None)
        raise StrategyError(
            str(path),
            f"failed to import: {type(exc).__name__}: {exc}",
            f"导入失败：{type(exc).__name__}: {exc}",
        ) from exc
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise StrategyError(
            name,
            f"failed to import: {type(exc).__name__}: {exc}",
            f"导入失败：{type(exc).__name__}: {exc}",
        ) from exc


def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec


def load_strategy(
    spec: str, config: Mapping[str, Any] | None = None, *, source: bytes | None = None
) -> Any:
    """The strategy object named by `spec` (module path or .py file; empty = baseline);
    `source`: the file's bytes as already read (a hot reload loads what it hashed)."""
    if not spec:
        return BaselineStrategy(config)
    module = _import_file(Path(spec), source) if is_file_spec(spec) else _import_module(spec)
    version = getattr(module, "STRATEGY_API_VERSION", None)
    if version != STRATEGY_API_VERSION:
        raise StrategyError(
            spec,
            f"STRATEGY_API_VERSION must be {STRATEGY_API_VERSION}, found {version!r}",
            f"STRATEGY_API_VERSION 必须为 {STRATEGY_API_VERSION}，实际为 {version!r}",
        )
    factory = getattr(module, "create_strategy", None)
    if not callable(factory):
        raise StrategyError(
            spec, "defines no create_strategy(config)", "未定义 create_strategy(config)"
        )
    try:
        strategy = factory(dict(config or {}))
    except Exception as exc:
        raise StrategyError(
            spec,
            f"create_strategy failed: {type(exc).__name__}: {exc}",
            f"create_strategy 出错：{type(exc).__name__}: {exc}",
        ) from exc
    present = [h for h in HOOKS if callable(getattr(strategy, h, None))]
    if not present:
        raise StrategyError(
            spec,
            f"the object from create_strategy has none of the hooks {', '.join(HOOKS)}",
            f"create_strategy 返回的对象没有任何钩子（{', '.join(HOOKS)}）",
        )
    for hook in HOOKS:
        value = getattr(strategy, hook, None)
        if value is not None and not callable(value):
            raise StrategyError(spec, f"{hook} is not callable", f"{hook} 不可调用")
    return strategy


class _Invalid(Exception):
    pass


def _check_intents(snap: Snapshot, value: Any) -> list[ScaleIntent]:
    if not isinstance(value, list | tuple):
        raise _Invalid("autoscale must return a list of ScaleIntent")
    out: list[ScaleIntent] = []
    seen: set[str] = set()
    for item in value:
        if (
            isinstance(item, ScaleIntent)
            and item.delta in (1, -1)
            and item.chute_id in snap.chutes
            and item.chute_id not in seen
        ):
            out.append(item)
            seen.add(item.chute_id)
        else:
            log.warning("scheduler.strategy_invalid_intent", extra={"intent": repr(item)[:200]})
    return out


class StrategyRunner:
    """Calls a strategy's hooks for the scheduler and the simulator: validated results, the
    baseline's answer when a hook is missing, raises or is too slow.

    `enforce_timeout`: a synchronous hook runs on a helper thread and is abandoned after
    `timeout_s` (the scheduler); without it, hooks run inline and a slow answer is only
    discarded afterwards (the simulator: deterministic and fast)."""

    def __init__(
        self,
        strategy: Any,
        *,
        timeout_s: float = 5.0,
        enforce_timeout: bool = True,
        name: str = "",
    ) -> None:
        self.replace(strategy, name)
        self.timeout_s = timeout_s
        self.enforce_timeout = enforce_timeout
        self.failures = 0
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def replace(self, strategy: Any, name: str = "") -> None:
        """Use `strategy` from the next hook call on (a call in progress ends with the old
        one): a hot reload (scheduler/reload.py)."""
        # a subclass may override a hook with one that raises: the default is the plain one
        self.default = strategy if type(strategy) is BaselineStrategy else BaselineStrategy()
        self.name = name or getattr(strategy, "name", type(strategy).__name__)
        self.strategy = strategy

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if inspect.iscoroutinefunction(fn):
            return asyncio.run(asyncio.wait_for(fn(*args), self.timeout_s))
        if not self.enforce_timeout:
            start = time.perf_counter()
            result = fn(*args)
            if inspect.isawaitable(result):
                return asyncio.run(asyncio.wait_for(_awaited(result), self.timeout_s))
            if time.perf_counter() - start > self.timeout_s:
                raise TimeoutError(f"took longer than {self.timeout_s} s")
            return result
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, "strategy-hook")
        future = self._pool.submit(fn, *args)
        try:
            result = future.result(self.timeout_s)
        except concurrent.futures.TimeoutError:
            self._pool.shutdown(wait=False)  # a hung hook keeps its thread; use a new one
            self._pool = None
            raise TimeoutError(f"took longer than {self.timeout_s} s") from None
        if inspect.isawaitable(result):
            return asyncio.run(asyncio.wait_for(_awaited(result), self.timeout_s))
        return result

    def _call(self, hook: str, check: Callable[[Any], T], args: tuple[Any, ...]) -> T | None:
        fn = getattr(self.strategy, hook, None)
        if fn is None:
            return check(getattr(self.default, hook)(*args))
        try:
            value = self._run(fn, args)
        except Exception as exc:  # noqa: BLE001 - any failure of operator code: the default
            self.failures += 1
            log.warning(
                "scheduler.strategy_hook_failed",
                extra={
                    "hook": hook,
                    "strategy": self.name,
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                },
            )
            return check(getattr(self.default, hook)(*args))
        try:
            return check(value)
        except _Invalid as exc:
            log.warning(
                "scheduler.strategy_invalid_decision",
                extra={"hook": hook, "strategy": self.name, "error": str(exc)},
            )
            return None

    def autoscale(self, snap: Snapshot) -> list[ScaleIntent]:
        return self._call("autoscale", lambda v: _check_intents(snap, v), (snap,)) or []

    def choose_server(self, snap: Snapshot, req: PlacementRequest) -> str | None:
        def check(v: Any) -> str | None:
            if v is None:
                return None
            if not isinstance(v, str) or v not in snap.servers:
                raise _Invalid(f"choose_server returned {v!r}, not a server id of the snapshot")
            return v

        return self._call("choose_server", check, (snap, req))

    def choose_victims(self, snap: Snapshot, req: PlacementRequest) -> Preemption | None:
        def check(v: Any) -> Preemption | None:
            if v is None:
                return None
            if not isinstance(v, Preemption) or v.server_id not in snap.servers:
                raise _Invalid(f"choose_victims returned {v!r}")
            on_server = {d.deployment_id: d for d in snap.deployments_on(v.server_id)}
            ids = tuple(v.deployment_ids)
            if not ids or any(i not in on_server or on_server[i].job_id for i in ids):
                raise _Invalid("choose_victims named a job or a deployment not on that server")
            return Preemption(v.server_id, ids)

        return self._call("choose_victims", check, (snap, req))

    def choose_scale_down(self, snap: Snapshot, chute_id: str) -> str | None:
        def check(v: Any) -> str | None:
            if v is None:
                return None
            ids = {d.deployment_id for d in snap.deployments_of(chute_id)}
            if not isinstance(v, str) or v not in ids:
                raise _Invalid(f"choose_scale_down returned {v!r}, not a deployment of the chute")
            return v

        return self._call("choose_scale_down", check, (snap, chute_id))

    def on_chute_created(self, snap: Snapshot, chute: ChuteView) -> int:
        def check(v: Any) -> int:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_DESIRED_INSTANCES:
                raise _Invalid(f"on_chute_created returned {v!r}, not 0..{MAX_DESIRED_INSTANCES}")
            return v

        return self._call("on_chute_created", check, (snap, chute)) or 0

    def on_bounty_change(
        self, snap: Snapshot, chute_id: str, bounty: float
    ) -> PlacementRequest | None:
        def check(v: Any) -> PlacementRequest | None:
            if v is None:
                return None
            if not isinstance(v, PlacementRequest) or v.chute_id != chute_id or v.gpu_count < 1:
                raise _Invalid(f"on_bounty_change returned {v!r}")
            return v

        return self._call("on_bounty_change", check, (snap, chute_id, bounty))

    def on_job_created(self, snap: Snapshot, job: JobView) -> JobDecision:
        def check(v: Any) -> JobDecision:
            if not isinstance(v, JobDecision):
                raise _Invalid(f"on_job_created returned {v!r}")
            return v

        return self._call("on_job_created", check, (snap, job)) or JobDecision(False, False)


async def _awaited(value: Any) -> Any:
    return await value
