"""How fast can one sync inference request reach a model on a Dask worker?

The measurement behind architecture decision 11. On a LocalCluster of two
single-thread worker processes and a small MLP (4 -> 8 -> 3, one row per
request), it times, request by request from the client:

(a) ONNX Runtime ``session.run`` in this process: the floor;
(b) one Dask task per request (``client.submit(..., pure=False)``), the task
    running the model held by the worker's serving cache;
(c) a call on a Dask actor holding the model;
(d) the ``stratalab_infer`` handler that ``ServingPlugin`` registers on the
    worker, called through Dask's ``ConnectionPool`` (what the coordinator
    does), with micro-batching at ``max_wait_ms`` 0 and 2 and off;

then the throughput of (d) with 16 concurrent callers, batching on and off,
for the small MLP and for a large one (512 -> 4096 -> 1000) whose forward
pass outweighs the RPC.

Run: ``python benchmarks/bench_serving_paths.py [--requests 500]``. It prints a
markdown table; nothing is written to disk outside a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from distributed import Client, LocalCluster, get_worker
from distributed.core import ConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, percentile, table
from stratalab.kernels.models import samples
from stratalab.kernels.serving.client import call_worker
from stratalab.kernels.serving.plugin import ServingPlugin, serving_plugin

WARMUP = 30


def run_in_task(sha256: str, x: np.ndarray) -> np.ndarray:
    """Task body for (b): the model stays loaded in the worker's serving cache."""
    plugin = serving_plugin(get_worker())
    assert plugin is not None and plugin.cache is not None
    entry, _ = plugin.cache.get(sha256, "onnx")
    return entry.model.run({"x": x})["y"]


class ModelActor:
    """Actor for (c): holds one ORT session, like the plugin does."""

    def __init__(self, path: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {"x": x})[0])


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    """Latencies in ms of ``n`` sequential calls, after a warm-up."""
    for _ in range(WARMUP):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


async def timed_rpc(address: str, sha256: str, x: np.ndarray, n: int) -> list[float]:
    """Latencies of sequential ``stratalab_infer`` calls over a ConnectionPool."""
    async with ConnectionPool(limit=64) as pool:
        for _ in range(WARMUP):
            await call_worker(pool, address, sha256=sha256, inputs={"x": x})
        out = []
        for _ in range(n):
            start = time.perf_counter()
            await call_worker(pool, address, sha256=sha256, inputs={"x": x})
            out.append((time.perf_counter() - start) * 1000.0)
        return out


async def concurrent_rpc(
    address: str, sha256: str, x: np.ndarray, n: int, callers: int
) -> tuple[float, list[float], float]:
    """(requests/s, latencies, mean requests per forward pass) with ``callers`` in flight."""
    async with ConnectionPool(limit=64) as pool:
        latencies: list[float] = []
        batched: list[int] = []

        async def caller(count: int) -> None:
            for _ in range(count):
                start = time.perf_counter()
                reply = await call_worker(pool, address, sha256=sha256, inputs={"x": x})
                latencies.append((time.perf_counter() - start) * 1000.0)
                batched.append(int(reply["batched"]))

        await asyncio.gather(*(caller(WARMUP // callers + 1) for _ in range(callers)))
        latencies.clear()
        batched.clear()
        start = time.perf_counter()
        await asyncio.gather(*(caller(n // callers) for _ in range(callers)))
        elapsed = time.perf_counter() - start
        return len(latencies) / elapsed, latencies, statistics.fmean(batched)


class Rows:
    """Table rows; p50 also as a multiple of the in-process ORT baseline (a)."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self.baseline_p50: float | None = None

    def add(self, name: str, values: list[float], note: str = "") -> None:
        p50 = percentile(values, 50)
        if self.baseline_p50 is None:
            self.baseline_p50 = p50
        ratio = f"{p50 / self.baseline_p50:,.0f}x"
        mean = statistics.fmean(values)
        self.rows.append([name, p50, percentile(values, 99), mean, len(values), ratio, note])

    def render(self) -> str:
        header = ["path", "p50 ms", "p99 ms", "mean ms", "n", "p50 / (a)", "note"]
        return table(self.rows, header)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="timed requests per path")
    args = parser.parse_args()
    n = args.requests

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        model_path = samples.make_mlp_onnx(Path(tmp) / "mlp.onnx", 4, 8, 3)
        sha256 = samples.write_artifact(root, model_path.read_bytes())
        x = np.random.default_rng(0).normal(size=(1, 4)).astype(np.float32)
        rows = Rows()

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        rows.add("(a) ORT session.run, in process", timed(lambda: session.run(None, {"x": x}), n))

        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            worker = next(iter(client.scheduler_info()["workers"]))

            def register(**kwargs: Any) -> None:
                client.register_plugin(ServingPlugin(root, max_bytes=1 << 28, **kwargs))

            register(max_wait_ms=0)
            task = lambda: client.submit(run_in_task, sha256, x, pure=False).result()  # noqa: E731
            rows.add("(b) one Dask task per request", timed(task, n))

            actor = client.submit(
                ModelActor, str(model_path), actor=True, workers=[worker]
            ).result()
            rows.add("(c) Dask actor call", timed(lambda: actor.predict(x).result(), n))

            for label, kwargs in (
                ("batching, max_wait_ms=0", {"max_wait_ms": 0}),
                ("batching, max_wait_ms=2", {"max_wait_ms": 2}),
                ("batching off", {"batching": False}),
            ):
                register(**kwargs)
                lat = asyncio.run(timed_rpc(worker, sha256, x, n))
                rows.add(f"(d) plugin handler over rpc, {label}", lat)

            # Concurrency: the small MLP, then a large one (512 -> 4096 -> 1000, ~24 MB of
            # weights) whose forward pass, not the RPC, is the cost.
            big_path = samples.make_mlp_onnx(Path(tmp) / "big.onnx", 512, 4096, 1000)
            big_sha = samples.write_artifact(root, big_path.read_bytes())
            big_x = np.random.default_rng(1).normal(size=(1, 512)).astype(np.float32)
            for model, digest, inputs, count in (
                ("small MLP", sha256, x, n * 2),
                ("large MLP", big_sha, big_x, n),
            ):
                for label, kwargs in (
                    ("max_wait_ms=0", {"max_wait_ms": 0}),
                    ("max_wait_ms=2", {"max_wait_ms": 2}),
                    ("batching off", {"batching": False}),
                ):
                    register(**kwargs)
                    rps, lat, mean_batch = asyncio.run(
                        concurrent_rpc(worker, digest, inputs, count, 16)
                    )
                    note = f"{rps:,.0f} req/s, {mean_batch:.1f} requests per forward pass"
                    rows.add(f"(d) {model}, 16 concurrent callers, {label}", lat, note)
            register(batching=False)
            lat = asyncio.run(timed_rpc(worker, big_sha, big_x, n // 5))
            rows.add("(d) large MLP, one caller, batching off", lat)

    print(f"Machine: {machine()}\n")
    print(rows.render())


if __name__ == "__main__":
    main()
