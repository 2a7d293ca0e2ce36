"""Inference through StrataLab against raw ONNX Runtime and the naive Dask path.

One run, one machine, the embedded server (``stratalab server``: a
LocalCluster of worker processes, one thread each) and, in this process:

* raw ONNX Runtime ``session.run``, one request at a time (the floor);
* the naive path: one Dask task per request on the same cluster, the task
  running a model it keeps loaded in the worker (so only the scheduling is
  measured, not a load per request);
* StrataLab ``POST /inference`` at concurrency 1 (p50/p99) and 16 (requests/s),
  next to the same server's ``GET /health`` at concurrency 1 and 16 (the floor
  of any HTTP round trip to this server); tensors travel base64-encoded;
* ``POST /inference/batch`` of 100,000 rows against raw ONNX Runtime running
  the same rows batched with as many threads as the cluster has worker threads.

Models: a small MLP (4 -> 8 -> 3, one row per request) and a ResNet-style CNN
(residual conv blocks, 3x112x112 image, 1000 classes) exported from torch.

Run: ``python benchmarks/bench_inference.py [--requests 300] [--record]``.
``--record`` appends the table to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
from distributed import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, percentile, record, rps, table
from stratalab.kernels.models.samples import make_mlp_onnx
from stratalab.kernels.models.tensors import b64_tensor
from stratalab.launcher import start_server

WARMUP = 20
_MODELS: dict[str, Any] = {}


def resnet_style_onnx(path: Path) -> Path:
    """A ResNet-style CNN exported from torch (dynamic batch)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.skip = nn.Conv2d(cin, cout, 1, stride=2, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 7, stride=2, padding=3),
        nn.ReLU(),
        Block(32, 64),
        Block(64, 128),
        Block(128, 256),
        Block(256, 512),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, 1000),
    ).eval()
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, 112, 112),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )
    return path


def naive_task(path: str, x: np.ndarray) -> np.ndarray:
    """One Dask task per request; the session stays in the worker process."""
    session = _MODELS.get(path)
    if session is None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        session = _MODELS[path] = ort.InferenceSession(
            path, opts, providers=["CPUExecutionProvider"]
        )
    return np.asarray(session.run(None, {"x": x})[0])


def timed(fn: Any, n: int) -> list[float]:
    for _ in range(WARMUP):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def tensor(x: np.ndarray) -> dict[str, Any]:
    """Requests send tensors base64-encoded (``{"b64", "dtype", "shape"}``), not as lists."""
    return b64_tensor(x)


def measure_model(
    name: str, path: Path, x: np.ndarray, *, http: httpx.Client, dask: Client, args: Any
) -> tuple[list[list[Any]], dict[str, float]]:
    """Rows of the latency table for one model."""
    n = args.requests
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    raw = timed(lambda: session.run(None, {"x": x}), n)

    naive = timed(
        lambda: dask.submit(naive_task, str(path), x, pure=False).result(), max(50, n // 3)
    )

    model = http.post("/models", files={"model": (path.name, path.read_bytes())}).json()
    body = {"model_id": model["id"], "input": tensor(x)}
    expected = session.run(None, {"x": x})[0]
    answer = http.post("/inference", json=body).json()
    got = np.asarray(answer["result"]["data"], dtype=np.float32).reshape(answer["result"]["shape"])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    rest = timed(lambda: http.post("/inference", json=body).raise_for_status(), n)

    headers = dict(http.headers)
    conc = asyncio.run(
        rps(
            str(http.base_url),
            lambda c: c.post("/inference", json=body),
            concurrency=16,
            duration_s=args.duration,
            headers=headers,
        )
    )
    p50 = {k: percentile(v, 50) for k, v in (("raw", raw), ("naive", naive), ("rest", rest))}
    rows = [
        [name, "raw ONNX Runtime session.run (in process)", p50["raw"], percentile(raw, 99), ""],
        [name, "naive: one Dask task per request", p50["naive"], percentile(naive, 99), ""],
        [name, "StrataLab POST /inference, c=1", p50["rest"], percentile(rest, 99), ""],
        [
            name,
            "StrataLab POST /inference, c=16",
            conc["p50_ms"],
            conc["p99_ms"],
            f"{conc['rps']:,.0f} req/s",
        ],
    ]
    return rows, {**p50, "rps16": conc["rps"], "errors16": conc["errors"]}


def measure_batch(
    path: Path, features: int, *, http: httpx.Client, threads: int, rows: int
) -> dict[str, float]:
    """A batch through the API vs raw ORT batched on the same thread count."""
    x = np.random.default_rng(0).normal(size=(rows, features)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    session.run(None, {"x": x[:256]})
    t0 = time.perf_counter()
    for begin in range(0, rows, 256):
        session.run(None, {"x": x[begin : begin + 256]})
    raw_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    session.run(None, {"x": x})
    raw_whole_s = time.perf_counter() - t0

    model = http.post("/models", files={"model": (path.name, path.read_bytes())}).json()
    body = {"model_id": model["id"], "input": tensor(x)}
    t0 = time.perf_counter()
    job = http.post("/inference/batch", json=body).json()
    while True:
        view = http.get(f"/inference/{job['job_id']}", params={"limit": 0}).json()
        if view["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.02)
    api_s = time.perf_counter() - t0
    assert view["status"] == "completed", view
    assert view["progress"]["completed_tasks"] == rows
    exec_s = _ts(view["ended_at"]) - _ts(view["started_at"])
    return {
        "raw_rows_s": rows / raw_s,
        "raw_whole_rows_s": rows / raw_whole_s,
        "api_rows_s": rows / api_s,
        "exec_rows_s": rows / exec_s,
        "api_s": api_s,
        "exec_s": exec_s,
        "shards": view["progress"]["total_shards"],
    }


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        root = Path(tmp)
        mlp = make_mlp_onnx(root / "mlp.onnx")
        cnn = resnet_style_onnx(root / "resnet_style.onnx")
        wide = make_mlp_onnx(root / "wide.onnx", in_features=32, hidden=4096, out=10)
        with start_server(root / "data", extra_args=["--workers", str(args.workers)]) as server:
            headers = {"X-API-Key": server.info["admin_key"]}
            with (
                httpx.Client(base_url=server.url, headers=headers, timeout=120) as http,
                Client(server.info["dask_address"], timeout=30) as dask,
            ):
                health = asyncio.run(
                    rps(
                        server.url,
                        lambda c: c.get("/health"),
                        concurrency=16,
                        duration_s=args.duration,
                    )
                )
                with httpx.Client(base_url=server.url, timeout=30) as bare:
                    health1 = timed(lambda: bare.get("/health").raise_for_status(), args.requests)
                rng = np.random.default_rng(1)
                mlp_rows, mlp_fig = measure_model(
                    "MLP 4-8-3",
                    mlp,
                    rng.normal(size=(1, 4)).astype(np.float32),
                    http=http,
                    dask=dask,
                    args=args,
                )
                cnn_args = argparse.Namespace(**{**vars(args), "requests": args.requests // 3})
                cnn_rows, cnn_fig = measure_model(
                    "ResNet-style CNN 3x112x112",
                    cnn,
                    rng.normal(size=(1, 3, 112, 112)).astype(np.float32),
                    http=http,
                    dask=dask,
                    args=cnn_args,
                )
                batches = {
                    "MLP 4-8-3": measure_batch(
                        mlp, 4, http=http, threads=args.workers, rows=args.rows
                    ),
                    "MLP 32-4096-10": measure_batch(
                        wide, 32, http=http, threads=args.workers, rows=args.rows
                    ),
                }

    health_c1 = ["-", "GET /health, c=1 (same server)", percentile(health1, 50)]
    health_c1 += [percentile(health1, 99), ""]
    health_row = ["-", "GET /health, c=16 (same server)", health["p50_ms"], health["p99_ms"]]
    health_row.append(f"{health['rps']:,.0f} req/s")
    latency = table(
        [*mlp_rows, *cnn_rows, health_c1, health_row],
        ["model", "path", "p50 ms", "p99 ms", "throughput"],
    )
    goals = []
    for name, fig in (("MLP", mlp_fig), ("CNN", cnn_fig)):
        goals += [
            [
                name,
                "sync p50 / naive task p50",
                fig["rest"] / fig["naive"],
                "<= 0.2",
                fig["rest"] / fig["naive"] <= 0.2,
            ],
            [
                name,
                "added latency over raw ORT, p50 ms",
                fig["rest"] - fig["raw"],
                "<= 1.5",
                fig["rest"] - fig["raw"] <= 1.5,
            ],
            [
                name,
                "added latency over GET /health c=1, p50 ms",
                fig["rest"] - fig["raw"] - percentile(health1, 50),
                "(what StrataLab adds beyond an HTTP round trip)",
                "",
            ],
            [
                name,
                "req/s at c=16 / GET /health req/s",
                fig["rps16"] / health["rps"],
                ">= 0.5",
                fig["rps16"] / health["rps"] >= 0.5,
            ],
        ]
    notes = []
    for name, batch in batches.items():
        for label, key in (("end to end", "api_rows_s"), ("execution", "exec_rows_s")):
            ratio = batch[key] / batch["raw_rows_s"]
            goals.append(
                [
                    name,
                    f"batch {args.rows:,} rows {label}: rows/s / raw ORT ({args.workers} threads)",
                    ratio,
                    ">= 0.8",
                    ratio >= 0.8,
                ]
            )
        notes.append(
            f"{name}: {args.rows:,} rows in {batch['shards']} shards, {batch['api_s']:.2f} s end "
            f"to end (JSON upload and polling included, {batch['api_rows_s']:,.0f} rows/s), "
            f"{batch['exec_s']:.2f} s from RUNNING to COMPLETED ({batch['exec_rows_s']:,.0f} "
            f"rows/s); raw ORT {batch['raw_rows_s']:,.0f} rows/s in 256-row chunks, "
            f"{batch['raw_whole_rows_s']:,.0f} rows/s as one call."
        )
    body = (
        latency
        + "\n\n"
        + table(goals, ["model", "ratio", "measured", "goal", "met"])
        + "\n\n"
        + "\n\n".join(notes)
    )
    command = "python benchmarks/bench_inference.py" + (
        f" --requests {args.requests}" if args.requests != 300 else ""
    )
    if args.record:
        record("bench_inference", body, command)
    else:
        print(f"Machine: {machine()}\n\n{body}")


if __name__ == "__main__":
    main()
