"""The real `graval` 0.2.6 wheel: importable without native code, shapes we rely on.

Never constructs `graval.Miner`/`Validator` (packed native code, needs a GPU).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import graval.structures as structures
from graval_bootstrap.gpu import DEVICE_INFO_KEYS, MinerLike

import graval


def loaded_libraries() -> str:
    return Path("/proc/self/maps").read_text()


def test_import_loads_no_native_code() -> None:
    assert graval.Miner is not None and graval.Validator is not None
    assert "libgraval" not in loaded_libraries()


def test_device_info_struct_shape() -> None:
    fields = [name for name, _ in structures.GraValDeviceInfo._fields_]
    assert tuple(fields[:6]) == DEVICE_INFO_KEYS
    assert "work_product" in fields
    wp_fields = [name for name, _ in structures.GraValMinerWorkProduct._fields_]
    assert wp_fields[1:] == ["intermediate_hashes", "num_matrices", "total_iterations"]
    ct_fields = [name for name, _ in structures.GraValCiphertext._fields_]
    assert ct_fields == ["length", "seed", "ciphertext", "initialization_vector"]


def test_device_info_roundtrip_shape() -> None:
    info = {
        "name": "NVIDIA H200",
        "uuid": "0123456789abcdef0123456789abcdef",
        "memory": 150_121_381_888,
        "processors": 132,
        "clock_rate": 1_980_000.0,
        "max_threads_per_processor": 2048,
    }
    # Pure ctypes: the validator builds these structs from our /devices answer.
    assert structures.GraValDeviceInfo.from_dict(info).to_dict() == info


def test_miner_methods_match_protocol() -> None:
    for name in ("get_device_info", "prove", "decrypt", "process_device_info_challenge"):
        assert hasattr(MinerLike, name)
        ours = list(inspect.signature(getattr(MinerLike, name)).parameters)
        theirs = list(inspect.signature(getattr(graval.Miner, name)).parameters)
        assert ours == theirs, name
    assert "length" in inspect.signature(graval.Miner.decrypt).parameters
    assert issubclass(structures.GraValError, Exception)
