"""Node figures for add-node (contract §2.5 step 2, §10.34): Kubernetes quantities in any unit,
and the per-GPU CPU and memory formulas."""

from __future__ import annotations

import pytest
from control_api.clients.k8s import _cpus, _quantity_gib
from control_api.services.bootstrap import cpu_per_gpu, memory_per_gpu


@pytest.mark.parametrize(
    ("quantity", "gib"),
    [
        ("263906704Ki", 263906704 / 2**20),
        ("256Gi", 256.0),
        ("262144Mi", 256.0),
        ("1Ti", 1024.0),
        ("274877906944", 256.0),
        ("2.74877906944e11", 256.0),
        ("274877906944000m", 256.0),
        ("256G", 256e9 / 2**30),
        ("268435456k", 268435456e3 / 2**30),
    ],
)
def test_memory_quantities(quantity: str, gib: float) -> None:
    assert _quantity_gib(quantity) == pytest.approx(gib)


@pytest.mark.parametrize(
    ("quantity", "cpus"), [("32", 32), ("31500m", 31), ("7000m", 7), ("1.5", 1), ("2k", 2000)]
)
def test_cpu_quantities(quantity: str, cpus: int) -> None:
    assert _cpus(quantity) == cpus


@pytest.mark.parametrize(
    ("cpus", "gpus", "per_gpu"),
    [(32, 8, 3), (128, 8, 4), (10, 8, 1), (9, 8, 1), (4, 1, 2), (2, 1, 1)],
)
def test_cpu_per_gpu(cpus: int, gpus: int, per_gpu: int) -> None:
    assert cpu_per_gpu(cpus, gpus) == per_gpu


@pytest.mark.parametrize(
    ("mem_gib", "gpus", "gpu_mib", "per_gpu"),
    [
        (2048.0, 8, 143771, 140),  # capped by the GPU's memory (h200)
        (512.0, 8, 143771, 50),  # floor((512 - 6) * 0.8 / 8)
        (14.0, 8, 81559, 1),  # memGiB - 6 <= gpus
        (256.0, 2, None, 100),  # no gpu.memory label: host figure only
    ],
)
def test_memory_per_gpu(mem_gib: float, gpus: int, gpu_mib: int | None, per_gpu: int) -> None:
    assert memory_per_gpu(mem_gib, gpus, gpu_mib) == per_gpu
