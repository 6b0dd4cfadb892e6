#!/usr/bin/env python3
"""GPU device check (runtime contract §11.2): one script, one GPU host, no Kubernetes.

Run where graval, pycuda and this package are installed (the bootstrap image works):
    python device_check.py --iterations 3 --estimate-s 70      # h200 values
Prints one JSON summary on stdout; exit 1 when a blocking check (steps 2-3) fails,
2 when only step 1 or step 4 is out of bounds. Needs a GPU: it never runs in CPU CI.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ctypes
import glob
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
from bittensor_wallet import Keypair
from graval_bootstrap.app import create_app
from graval_bootstrap.auth import sign_headers
from graval_bootstrap.config import Settings
from graval_bootstrap.gpu import MinerBackend, cuda_preflight

Checks = dict[str, dict[str, Any]]


def record(checks: Checks, name: str, ok: bool, **detail: Any) -> bool:
    checks[name] = {"ok": bool(ok), **detail}
    return bool(ok)


def nvidia_smi_uuids() -> list[str]:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
    return re.findall(r"UUID: (GPU-[0-9a-fA-F-]+)\)", out)


def as_nvidia_uuid(raw: str) -> str:
    """graval's 32-hex uuid in nvidia-smi's GPU-8-4-4-4-12 form."""
    return f"GPU-{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def opencl_platforms() -> int:
    lib = ctypes.CDLL("libOpenCL.so.1")
    count = ctypes.c_uint(0)
    lib.clGetPlatformIDs(0, None, ctypes.byref(count))
    return int(count.value)


def cuda_facts() -> list[dict[str, int]]:
    import pycuda.driver as cuda

    cuda.init()
    attr = cuda.device_attribute
    facts = []
    for i in range(cuda.Device.count()):
        dev = cuda.Device(i)
        facts.append(
            {
                "memory": int(dev.total_memory()),
                "processors": int(dev.get_attribute(attr.MULTIPROCESSOR_COUNT)),
                "clock_khz": int(dev.get_attribute(attr.CLOCK_RATE)),
            }
        )
    return facts


class VramSampler(threading.Thread):
    """Peak `memory.used` (MiB) per GPU from nvidia-smi, sampled every 0.5 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
        while not self.stop.wait(0.5):
            try:
                out = subprocess.run(query, capture_output=True, text=True, check=True).stdout
            except (OSError, subprocess.CalledProcessError):
                continue
            used = [int(v) for v in out.split()]
            self.peak = [max(a, b) for a, b in zip(self.peak, used, strict=False)] or used


async def bootstrap_checks(checks: Checks, miner: Any, args: argparse.Namespace) -> None:
    """Step 3 and 4: the bootstrap in-process over the real Miner, validated by Validator."""
    from graval import Validator

    miner_key = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
    validator_key = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
    count = int(miner._device_count)
    settings = Settings(
        miner_hotkey=miner_key.ss58_address,
        validator_whitelist=(validator_key.ss58_address,),
        expected_gpu_count=count,
    )
    app = create_app(settings, MinerBackend(miner))
    validator = Validator()
    me = miner_key.ss58_address
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bootstrap", timeout=600
    ) as c:
        resp = await c.get("/devices", headers=sign_headers(miner_key, me, "graval"))
        devices = resp.json()["devices"] if resp.status_code == 200 else []
        record(checks, "devices_signed", resp.status_code == 200 and len(devices) == count)

        challenge = validator.generate_device_info_challenge(count)
        resp = await c.get(
            "/info",
            params={"challenge": challenge},
            headers=sign_headers(validator_key, me, "graval"),
        )
        ok = resp.status_code == 200 and len(resp.text) == 64
        ok = ok and bool(validator.verify_device_info_challenge(challenge, resp.text, devices))
        record(checks, "info_challenge", ok, status=resp.status_code)

        seed = secrets.randbelow(2**62) + 1
        plaintexts, ciphertexts = {}, {}
        for device in devices:
            text = f"chutes-device-check-{secrets.token_hex(8)}"
            ct, iv, _length, used_seed = validator.encrypt(
                device, text, args.iterations, override_seed=seed
            )
            seed = used_seed
            plaintexts[device["uuid"]] = text
            ciphertexts[device["uuid"]] = base64.b64encode(iv + ct).decode()
        body = json.dumps(
            {"seed": seed, "iterations": args.iterations, "ciphertext": ciphertexts}
        ).encode()
        headers = sign_headers(validator_key, me, hashlib.sha256(body).hexdigest())
        headers["Content-Type"] = "application/json"

        pings: list[float] = []
        done = asyncio.Event()

        async def ping_loop() -> None:
            while not done.is_set():
                start = time.monotonic()
                await c.get("/ping")
                pings.append(time.monotonic() - start)
                await asyncio.sleep(0.25)

        sampler = VramSampler()
        sampler.start()
        pinger = asyncio.create_task(ping_loop())
        start = time.monotonic()
        resp = await c.post("/prove", content=body, headers=headers)
        prove_s = time.monotonic() - start
        done.set()
        await pinger
        sampler.stop.set()

        out = resp.json() if resp.status_code == 200 else {}
        record(
            checks,
            "prove_plaintexts",
            resp.status_code == 200 and out.get("plaintext") == plaintexts,
            status=resp.status_code,
        )
        proof_ok = resp.status_code == 200
        for device in devices:
            work = out.get("proof", {}).get(device["uuid"], {}).get("work_product")
            for it in range(args.iterations):
                proof_ok = proof_ok and work is not None
                # index=0: the library picks its spot-check matrix (graval's own tests do this)
                proof_ok = proof_ok and bool(validator.check_proof(device, seed, it, work, index=0))
        record(checks, "prove_check_proof", proof_ok)

        low, high = 0.55 * args.estimate_s, 1.7 * args.estimate_s
        record(
            checks,
            "prove_time_window",
            low <= prove_s <= high,
            prove_s=round(prove_s, 2),
            window_s=[round(low, 1), round(high, 1)],
            iterations=args.iterations,
        )
        record(
            checks,
            "ping_during_prove",
            bool(pings) and max(pings) < 1.0,
            samples=len(pings),
            max_ms=round(max(pings, default=0) * 1000, 1),
        )
        checks["vram_peak_mib"] = {"ok": True, "per_gpu": sampler.peak}
    validator.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=3, help="per-model iterations (h200: 3)")
    parser.add_argument("--estimate-s", type=float, default=70.0, help="validator estimate, s")
    args = parser.parse_args()
    # The native libraries print to fd 1; keep stdout for the JSON summary alone.
    sys.stdout.flush()
    summary_fd = os.dup(1)
    os.dup2(2, 1)
    checks: Checks = {}
    started = time.monotonic()
    blocking_ok = True

    # 1. pycuda preflight, nvidia-smi -L, OpenCL ICD.
    try:
        smi = nvidia_smi_uuids()
        record(checks, "nvidia_smi", bool(smi), gpus=len(smi))
        record(checks, "cuda_preflight", cuda_preflight(len(smi)) == len(smi))
        icds = glob.glob("/etc/OpenCL/vendors/*.icd")
        record(checks, "opencl_icd", bool(icds) and opencl_platforms() > 0, icd_files=icds)
    except Exception as exc:  # noqa: BLE001 - a summary, not a traceback
        record(checks, "step1", False, error=f"{type(exc).__name__}: {exc}")
        smi = []

    # 2. graval.Miner() and device info against nvidia-smi and CUDA.
    miner = None
    try:
        from graval import Miner

        miner = Miner()
        facts = cuda_facts()
        infos = [miner.get_device_info(i) for i in range(miner._device_count)]
        for i, info in enumerate(infos):
            raw = info["uuid"]
            fact = facts[i] if i < len(facts) else {}
            blocking_ok &= record(
                checks,
                f"device_{i}",
                bool(re.fullmatch(r"[0-9a-f]{32}", raw))
                and i < len(smi)
                and raw == smi[i].removeprefix("GPU-").replace("-", "").lower()
                and as_nvidia_uuid(raw) == smi[i].lower()
                and info["memory"] == fact.get("memory")
                and info["processors"] == fact.get("processors")
                and int(round(info["clock_rate"])) == fact.get("clock_khz"),
                graval={k: v for k, v in info.items() if k != "work_product"},
                cuda=fact,
                nvidia_smi=smi[i] if i < len(smi) else None,
            )
    except Exception as exc:  # noqa: BLE001
        blocking_ok = record(checks, "step2", False, error=f"{type(exc).__name__}: {exc}")

    # 3 and 4. The bootstrap with the real Miner, judged by the real Validator.
    if miner is not None:
        try:
            asyncio.run(bootstrap_checks(checks, miner, args))
        except Exception as exc:  # noqa: BLE001
            record(checks, "step3", False, error=f"{type(exc).__name__}: {exc}")
        for name in ("devices_signed", "info_challenge", "prove_plaintexts", "prove_check_proof"):
            blocking_ok &= checks.get(name, {}).get("ok", False)
        miner.shutdown()

    all_ok = all(c.get("ok") for c in checks.values())
    summary = {
        "ok": all_ok,
        "blocking_ok": blocking_ok,
        "elapsed_s": round(time.monotonic() - started, 1),
        "checks": checks,
    }
    sys.stdout.flush()
    os.write(summary_fd, (json.dumps(summary, indent=2, default=str) + "\n").encode())
    return 0 if all_ok else (1 if not blocking_ok else 2)


if __name__ == "__main__":
    sys.exit(main())
