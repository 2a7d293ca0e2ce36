"""The inference part of ``stratalab demo``: register, serve, batch, analyse.

Like a user's notebook would: fit a small classifier on scikit-learn's iris
data (shipped with the package, nothing downloaded), export it to ONNX,
upload it with adapters, call it synchronously and asynchronously under a
project, push 100,000 rows through every worker as a batch, and print the
project's latency and throughput analytics. Returns the promises it could
not keep, so the demo exits non-zero on any of them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from stratalab.notebook.client import Client

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
#: rows pushed through the batch path.
BATCH_ROWS = 100_000
#: sync requests timed one by one.
SYNC_REQUESTS = 200


def train_iris_onnx(path: Path) -> tuple[Path, list[str], np.ndarray, np.ndarray]:
    """A 4-16-3 MLP fitted on iris with torch, exported to ONNX (dynamic batch)."""
    import torch
    from sklearn.datasets import load_iris

    iris = load_iris()
    x = iris.data.astype(np.float32)
    y = iris.target.astype(np.int64)
    torch.manual_seed(0)
    mean, std = x.mean(axis=0), x.std(axis=0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    xt, yt = torch.from_numpy((x - mean) / std), torch.from_numpy(y)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()

    class Normalised(torch.nn.Module):
        """Standardisation baked into the graph, so clients send raw measurements."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.from_numpy(mean))
            self.register_buffer("std", torch.from_numpy(std))

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.net((features - self.mean) / self.std)

    model = Normalised().eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 4),),
        str(path),
        input_names=["features"],
        output_names=["scores"],
        dynamic_axes={"features": {0: "batch"}, "scores": {0: "batch"}},
        dynamo=False,
    )
    return path, [str(n) for n in iris.target_names], x, y


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"features": x})[0])


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run_inference_demo(client: Client, banner: Any, table: Any) -> list[str]:
    """The models-and-inference showcase; returns the problems it found."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="stratalab-demo-model-") as tmp:
        banner("training a small iris classifier locally, exporting it to ONNX")
        path, labels, x, y = train_iris_onnx(Path(tmp) / "iris.onnx")
        local = _ort(path, x)
        accuracy = float((local.argmax(axis=1) == y).mean())
        print(f"  local ONNX Runtime accuracy on iris: {accuracy:.3f}")

        banner("POST /models (multipart upload, checked by really loading it)")
        model = client.models.upload(
            path,
            "iris-mlp",
            labels=labels,
            preprocessing="tabular",
            postprocessing="top_k_labels",
        )
        print(
            f"  {model['id']}  {model['format']}  {model['size']} bytes  {model['checksum'][:23]}…"
        )
        print(f"  inputs {model['inputs']}  outputs {model['outputs']}")

        project = client.projects.create("iris realtime", "realtime", model_id=model["id"])
        pid = project["id"]
        print(f"  project {pid} ({project['type']})")

        banner(f"POST /inference x{SYNC_REQUESTS} (sync, tabular in, top-k labels out)")
        rows = [dict(zip(FEATURES, map(float, r), strict=True)) for r in x[:3]]
        first = client.inference.run(model["id"], rows, project_id=pid, params={"k": 1})
        for row, pred in zip(rows, first["result"]["predictions"], strict=True):
            print(f"  {row} -> {pred[0]['label']} ({pred[0]['score']:.3f})")
        served = [p[0]["label"] for p in first["result"]["predictions"]]
        if served != [labels[i] for i in local[:3].argmax(axis=1)]:
            problems.append("sync predictions differ from local ONNX Runtime")
        latencies = []
        for i in range(SYNC_REQUESTS):
            t0 = time.perf_counter()
            client.inference.run(model["id"], [rows[i % 3]], project_id=pid)
            latencies.append((time.perf_counter() - t0) * 1000)
        print(
            f"  client-side latency p50 {_pct(latencies, 50):.2f} ms, "
            f"p99 {_pct(latencies, 99):.2f} ms (server: worker {first['worker_id']}, "
            f"compute {first['compute_ms']:.3f} ms)"
        )

        banner("POST /inference?async=true, then GET /inference/{id}")
        accepted = client.inference.submit(model["id"], rows, project_id=pid)
        answer = client.inference.wait(accepted["job_id"], timeout=60, progress=False)
        print(f"  {accepted['job_id']}: {answer['status']} -> {answer['result']}")
        if answer["status"] != "completed":
            problems.append("the async request did not complete")

        banner(f"POST /inference/batch: {BATCH_ROWS:,} rows over every worker")
        raw = client.models.upload(
            path, "iris-mlp-tensors", labels=labels, postprocessing="top_k_labels"
        )
        print(
            f"  {raw['id']}: the same file without the tabular adapter, for tensor rows "
            f"(stored once: {raw['checksum'] == model['checksum']})"
        )
        rng = np.random.default_rng(0)
        big = x[rng.integers(0, len(x), BATCH_ROWS)] + rng.normal(0, 0.05, (BATCH_ROWS, 4))
        big = big.astype(np.float32)
        t0 = time.perf_counter()
        batch = client.inference.batch(raw["id"], big, name="iris-100k")
        done = client.inference.wait(batch["job_id"], timeout=300)
        took = time.perf_counter() - t0
        progress = done["progress"]
        print(
            f"  {batch['job_id']}: {done['status']}, {progress['completed_tasks']:,} of "
            f"{progress['total_tasks']:,} items in {progress['total_shards']} shards, "
            f"{took:.2f} s ({BATCH_ROWS / took:,.0f} rows/s end to end)"
        )
        page = client.inference.get(batch["job_id"], offset=0, limit=3)
        expected = [labels[i] for i in _ort(path, big[:3]).argmax(axis=1)]
        got = [item["predictions"][0][0]["label"] for item in page["results"]["items"]]
        print(f"  first results: {got}")
        if done["status"] != "completed" or progress["completed_tasks"] != BATCH_ROWS:
            problems.append("the batch did not complete every row")
        if got != expected:
            problems.append("batch results differ from local ONNX Runtime")

        banner(f"GET /projects/{pid}/analytics")
        stats = client.projects.analytics(pid)
        lat = stats["latency_ms"]
        print(
            f"  {stats['requests']} requests, {stats['errors']} errors; server-side latency "
            f"p50 {lat['p50']} / p90 {lat['p90']} / p95 {lat['p95']} / p99 {lat['p99']} ms"
        )
        print(f"  throughput buckets: {len(stats['throughput']['points'])}")
        print(
            table(
                stats["by_pool"] + stats["by_kind"],
                ["pool", "kind", "requests", "errors", "requests_per_second"],
            )
        )
        if stats["requests"] < SYNC_REQUESTS + 2:
            problems.append("analytics miss requests")
        batch_project = client.projects.analytics(batch["project_id"])
        print(
            f"  batch project {batch['project_id']}: {batch_project['items']:,} items, "
            f"compute p50 per shard {batch_project['compute_ms']['p50']} ms"
        )
    return problems
