"""Start-up: fail closed before listening, termination log, GPU preflight behind the backend."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from graval_bootstrap.__main__ import EXIT_CONFIG, EXIT_GPU, run
from graval_bootstrap.gpu import BackendError, DeviceBackend, MinerBackend, cuda_preflight

if TYPE_CHECKING:
    from conftest import FakeMiner, Keys


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, app: Any, **kwargs: Any) -> None:
        self.calls.append((app, kwargs))


def good_env(keys: Keys, tmp_path: Path) -> dict[str, str]:
    return {
        "MINER_HOTKEY_SS58": keys.miner.ss58_address,
        "VALIDATOR_WHITELIST": keys.validator.ss58_address,
        "EXPECTED_GPU_COUNT": "2",
        "PORT": "8099",
        "TERMINATION_LOG_PATH": str(tmp_path / "termination-log"),
    }


def test_config_failure_exits_before_serving(
    keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = good_env(keys, tmp_path)
    env["VALIDATOR_WHITELIST"] = ""
    serve = Recorder()
    opened: list[int] = []

    def open_backend(count: int) -> DeviceBackend:
        opened.append(count)
        raise AssertionError("the GPUs must not be opened with bad config")

    with caplog.at_level(logging.INFO):
        code = run(env, open_backend=open_backend, serve=serve)
    assert code == EXIT_CONFIG
    assert serve.calls == [] and opened == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "VALIDATOR_WHITELIST is missing or empty" in errors[0].getMessage()
    termination = (tmp_path / "termination-log").read_text()
    assert termination == "VALIDATOR_WHITELIST is missing or empty\n"


def test_unwritable_termination_log_still_fails(keys: Keys, tmp_path: Path) -> None:
    env = good_env(keys, tmp_path)
    env["MINER_HOTKEY_SS58"] = "not-ss58"
    env["TERMINATION_LOG_PATH"] = str(tmp_path / "missing-dir" / "log")
    assert run(env, serve=Recorder()) == EXIT_CONFIG


def test_backend_failure_exits(keys: Keys, tmp_path: Path) -> None:
    serve = Recorder()

    def open_backend(count: int) -> DeviceBackend:
        raise BackendError(f"CUDA sees 1 devices, EXPECTED_GPU_COUNT is {count}")

    assert run(good_env(keys, tmp_path), open_backend=open_backend, serve=serve) == EXIT_GPU
    assert serve.calls == []
    assert "EXPECTED_GPU_COUNT is 2" in (tmp_path / "termination-log").read_text()


NO_PYCUDA = pytest.mark.skipif(
    importlib.util.find_spec("pycuda") is not None,
    reason="pycuda present: this host may have GPUs; never open them from CPU tests",
)


@NO_PYCUDA
def test_real_backend_path_fails_closed_without_gpu(keys: Keys, tmp_path: Path) -> None:
    # No pycuda (CPU CI) or no driver: the default start path must refuse, never serve.
    serve = Recorder()
    assert run(good_env(keys, tmp_path), serve=serve) == EXIT_GPU
    assert serve.calls == []


@NO_PYCUDA
def test_cuda_preflight_without_gpu() -> None:
    with pytest.raises(BackendError):
        cuda_preflight(1)


def test_success_serves(keys: Keys, tmp_path: Path, miner: FakeMiner) -> None:
    serve = Recorder()
    code = run(good_env(keys, tmp_path), open_backend=lambda _n: MinerBackend(miner), serve=serve)
    assert code == 0
    (app, kwargs) = serve.calls[0]
    assert kwargs["port"] == 8099 and kwargs["access_log"] is False
    assert not (tmp_path / "termination-log").exists()


def test_process_exits_non_zero(tmp_path: Path) -> None:
    """The real entry point, as the container runs it, with an empty environment."""
    env = {"PATH": os.environ.get("PATH", ""), "TERMINATION_LOG_PATH": str(tmp_path / "t")}
    proc = subprocess.run(
        [sys.executable, "-m", "graval_bootstrap"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == EXIT_CONFIG
    assert "MINER_HOTKEY_SS58 is missing or empty" in proc.stderr
    assert (tmp_path / "t").read_text().startswith("MINER_HOTKEY_SS58")


def test_stand_in_only_when_asked_and_named_in_the_log(
    keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """GRAVAL_STAND_IN=true (the lab) serves the stand-in Miner's devices without opening a
    GPU, and says so at WARNING; the real start path never falls back to it."""

    def no_gpu(count: int) -> DeviceBackend:
        raise AssertionError("the stand-in must not open the GPU path")

    serve = Recorder()
    env = good_env(keys, tmp_path) | {"GRAVAL_STAND_IN": "true"}
    with caplog.at_level(logging.INFO):
        assert run(env, open_backend=no_gpu, serve=serve) == 0
    (app, _kwargs) = serve.calls[0]
    assert app is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("GPU STAND-IN" in m and "2 made-up devices" in m for m in warnings), warnings

    opened: list[int] = []

    def real(count: int) -> DeviceBackend:
        opened.append(count)
        raise BackendError("CUDA driver unavailable")

    for value in ("false", ""):
        env = good_env(keys, tmp_path) | {"GRAVAL_STAND_IN": value}
        assert run(env, open_backend=real, serve=Recorder()) == EXIT_GPU
    assert opened == [2, 2]


def test_stand_in_value_is_checked(keys: Keys, tmp_path: Path) -> None:
    env = good_env(keys, tmp_path) | {"GRAVAL_STAND_IN": "yes"}
    assert run(env, serve=Recorder()) == EXIT_CONFIG
    assert (tmp_path / "termination-log").read_text() == "GRAVAL_STAND_IN must be true or false\n"
