"""Real probes of what StrataLab depends on: Dask, the database, torch, ORT, CUDA.

Each probe does the real thing (a scheduler round trip, a query, an import)
and reports its latency; none of them raises. Library probes run once per
process and are cached: an import does not change while the server runs.
"""

from __future__ import annotations

import importlib
import time
from functools import cache
from typing import Any

from stratalab.scheduler.cluster import DaskCluster
from stratalab.scheduler.store import Store


def _timed(fn: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        info = fn()
        status = "ok"
    except Exception as exc:  # noqa: BLE001 - a probe reports any failure as data
        info, status = {"error": f"{type(exc).__name__}: {exc}"}, "error"
    return {"status": status, "latency_ms": round((time.perf_counter() - t0) * 1000, 3), **info}


def probe_database(store: Store) -> dict[str, Any]:
    """A real query against the store."""
    return _timed(lambda: {"dialect": store.dialect, "version": store.ping()})


@cache
def probe_torch() -> dict[str, Any]:
    """torch importable, its version, and whether CUDA is usable in this process."""

    def run() -> dict[str, Any]:
        torch = importlib.import_module("torch")
        return {
            "version": torch.__version__,
            "cuda_available": bool(torch.cuda.is_available()),
            "cuda_devices": int(torch.cuda.device_count()),
        }

    return _timed(run)


@cache
def probe_onnxruntime() -> dict[str, Any]:
    """onnxruntime importable, its version and execution providers."""

    def run() -> dict[str, Any]:
        ort = importlib.import_module("onnxruntime")
        return {"version": ort.__version__, "providers": list(ort.get_available_providers())}

    return _timed(run)


def probe_cuda(torch_probe: dict[str, Any], cluster_gpus: int) -> dict[str, Any]:
    """CUDA on this machine and GPUs declared by Dask workers."""
    available = bool(torch_probe.get("cuda_available"))
    return {
        "status": "ok" if available or cluster_gpus else "absent",
        "local_cuda_available": available,
        "local_devices": torch_probe.get("cuda_devices", 0),
        "cluster_gpus": cluster_gpus,
    }


async def probe_dask(cluster: DaskCluster) -> dict[str, Any]:
    """A round trip to the Dask scheduler."""
    t0 = time.perf_counter()
    if cluster.client is None:
        return {"status": "error", "error": "not connected", "latency_ms": None}
    try:
        identity = await cluster.client.scheduler.identity()
    except (OSError, TimeoutError) as exc:
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "latency_ms": None}
    return {
        "status": "ok",
        "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
        "address": cluster.scheduler_address,
        "workers": len(identity.get("workers", {})),
        "embedded": cluster.embedded,
    }
