"""The dashboard's cost on a loaded store (issue: observability).

Setup: a store holding 10,000 jobs (100 of them queued, waiting for a GPU),
100,000 job log lines, 2,000 checkpoints, 20,000 training-metric points,
50 datasets and 50,000 inference records, written before the server starts;
a Dask cluster of 64 registered workers (in-process worker threads of one
helper process, so 64 workers fit on a laptop) that ``stratalab server``
joins with ``--dask-address``. Then, against that one server:

1. ``GET /dashboard`` p50/p99 at concurrency 1, back to back, against the
   same server's ``GET /health`` (goal: p99 <= 20x /health's p99);
2. ``GET /dashboard`` polled at 10 Hz for ``--poll`` seconds: its latency
   (one request in ten rebuilds the snapshot) and the server process's CPU
   against the same span idle (goal: polling adds <= 5 % of one core);
3. a rebuild on its own (requests 1.2 s apart, so each misses the cache);
4. 100 concurrent ``GET /dashboard/stream`` subscribers for ``--poll``
   seconds: server CPU, snapshots delivered, delivery lag, and /health p99
   while they listen.

Run: ``python benchmarks/bench_dashboard.py [--poll 20] [--record]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, percentile, record, table
from stratalab.launcher import start_server
from stratalab.scheduler.db import (
    Checkpoint,
    Dataset,
    InferenceRecord,
    Job,
    JobLog,
    TrainingMetric,
)
from stratalab.scheduler.store import Store, sqlite_url

STATES = ("COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "CANCELLED")


def fill_store(data_dir: Path, *, jobs: int, workers: int) -> dict[str, int]:
    """Write the loaded store the server will open."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(sqlite_url(data_dir))
    store.migrate()
    rng = random.Random(0)
    now = datetime.now(timezone.utc)
    job_rows, ids = [], []
    for i in range(jobs):
        at = now - timedelta(seconds=jobs - i)
        queued = i >= jobs - 100
        ids.append(f"job_{i:016x}")
        job_rows.append(
            {
                "id": ids[-1],
                "user_id": f"user{i % 20}",
                "name": f"job-{i}",
                "type": "training" if i % 4 == 0 else "task",
                "state": "QUEUED" if queued else STATES[i % len(STATES)],
                "priority": 1 + i % 10,
                "created_at": at,
                "queued_at": at,
                "updated_at": at,
                "ended_at": None if queued else at,
                "spec": {"script": "print('x')"},
                "resources": {"cpu": 1, "memory_gb": 0.0, "gpu": 1 if queued else 0},
                "metadata_": {},
                "max_retries": 0,
                "retry_count": 0,
                "attempt": 0 if queued else 1,
                "output": "x\n" * 50,
            }
        )
    ts0 = time.time() - 3600
    logs = [
        {
            "job_id": ids[i % jobs],
            "attempt": 1,
            "seq": i,
            "ts": ts0 + i * 0.03,
            "stream": "stdout" if i % 10 else "stderr",
            "level": 20 if i % 10 else 30,
            "message": f"step {i} loss {rng.random():.4f}",
        }
        for i in range(100_000)
    ]
    training = [ids[i] for i in range(0, jobs, 4)][:200]
    checkpoints = [
        {
            "id": f"ckpt_{i:016x}",
            "job_id": training[i % len(training)],
            "user_id": "user0",
            "round": i // len(training),
            "sha256": "0" * 64,
            "size": 8_000_000,
            "write_s": 0.02 + rng.random() * 0.02,
            "mb_per_s": 300.0,
            "status": "ok",
            "reason": "round",
            "metrics": {},
            "created_at": now - timedelta(seconds=2000 - i),
        }
        for i in range(2000)
    ]
    metrics = [
        {
            "job_id": training[i % len(training)],
            "ts": ts0 + i * 0.1,
            "round": i // 10,
            "step": i,
            "worker": None if i % 10 == 0 else f"tcp://10.0.0.{i % workers}:1234",
            "values": {"loss": rng.random(), "barrier_ms": 20 + rng.random() * 30}
            if i % 10 == 0
            else {"loss": rng.random()},
        }
        for i in range(20_000)
    ]
    datasets = [
        {
            "id": f"ds_{i:016x}",
            "user_id": "user0",
            "name": f"d{i}",
            "format": "parquet",
            "source": "s3://bucket/x",
            "options": {},
            "info": {},
            "num_rows": 1_000_000,
            "num_shards": 64,
            "validation_rows": 0,
            "placement": {str(s): f"tcp://10.0.0.{s}:1234" for s in range(64)},
            "shard_assignment_ms": 5 + rng.random() * 5,
            "description": "",
            "created_at": now - timedelta(minutes=50 - i),
        }
        for i in range(50)
    ]
    records = [
        {
            "ts": ts0 + i * 0.072,
            "user_id": f"user{i % 20}",
            "project_id": None,
            "model_id": "model_x",
            "request_id": f"infer_{i:016x}",
            "kind": "sync",
            "error_code": None,
            "latency_ms": 2 + rng.random() * 3,
            "compute_ms": 0.1,
            "items": 1,
        }
        for i in range(50_000)
    ]
    with store.session() as s:
        for model, rows in (
            (Job, job_rows),
            (JobLog, logs),
            (Checkpoint, checkpoints),
            (TrainingMetric, metrics),
            (Dataset, datasets),
            (InferenceRecord, records),
        ):
            s.execute(sa.insert(model), rows)
    store.close()
    return {
        "jobs": jobs,
        "logs": len(logs),
        "checkpoints": len(checkpoints),
        "metrics": len(metrics),
        "datasets": len(datasets),
        "records": len(records),
    }


def serve_cluster(n: int) -> None:
    """Helper-process mode: a scheduler and ``n`` in-process workers until stdin closes."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
        memory_limit=0,
    )
    print(json.dumps({"address": cluster.scheduler_address}), flush=True)
    sys.stdin.read()
    cluster.close()


def start_cluster(n: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-cluster", str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, json.loads(line)["address"]


def timed_gets(
    client: httpx.Client, path: str, n: int, gap_s: float = 0.0, bodies: list[Any] | None = None
) -> list[float]:
    """Latencies (ms) of ``n`` GETs, ``gap_s`` apart (start to start); JSON into ``bodies``."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = client.get(path)
        took = time.perf_counter() - t0
        resp.raise_for_status()
        out.append(took * 1000)
        if bodies is not None:
            bodies.append(resp.json())
        if gap_s:
            time.sleep(max(0.0, gap_s - took))
    return out


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def cpu_during(proc: psutil.Process, fn: Any) -> tuple[float, Any]:
    """(percent of one core the server used while ``fn`` ran, fn's result)."""
    c0, t0 = cpu_seconds(proc), time.perf_counter()
    result = fn()
    return 100 * (cpu_seconds(proc) - c0) / (time.perf_counter() - t0), result


async def subscribers(url: str, key: str, n: int, seconds: float) -> dict[str, Any]:
    """``n`` streams for ``seconds``: snapshots received and their delivery lag."""
    received: list[int] = [0] * n
    lags: list[float] = []
    headers = {"X-API-Key": key, "Accept": "text/event-stream"}
    limits = httpx.Limits(max_connections=n + 4)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        stop = time.monotonic() + seconds

        async def one(i: int) -> None:
            params = {"interval": "1"}
            async with client.stream(
                "GET", f"{url}/dashboard/stream", headers=headers, params=params
            ) as resp:
                event = ""
                async for line in resp.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "snapshot":
                        received[i] += 1
                        generated = json.loads(line[6:])["generated_at"]
                        at = datetime.fromisoformat(generated.replace("Z", "+00:00"))
                        lags.append(time.time() - at.timestamp())
                    if time.monotonic() > stop:
                        return

        await asyncio.gather(*(one(i) for i in range(n)))
    return {"received": received, "lags": lags}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--poll", type=float, default=20.0, help="seconds of 10 Hz polling")
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--serve-cluster", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_cluster:
        serve_cluster(args.serve_cluster)
        return

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        data = Path(tmp) / "data"
        sizes = fill_store(data, jobs=args.jobs, workers=args.workers)
        cluster, address = start_cluster(args.workers)
        try:
            with start_server(
                data,
                extra_args=["--dask-address", address, "--StrataLab.rate_limit_per_minute=0"],
            ) as server:
                results = measure(server, args)
        finally:
            assert cluster.stdin is not None
            cluster.stdin.close()
            cluster.wait(30)
    report(results, sizes, args)


def measure(server: Any, args: argparse.Namespace) -> dict[str, Any]:
    key = server.info["admin_key"]
    proc = psutil.Process(server.process.pid)
    headers = {"X-API-Key": key}
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        deadline = time.monotonic() + 120
        while http.get("/workers/stats").json()["total"] < args.workers:
            assert time.monotonic() < deadline, "the 64 workers did not register"
            time.sleep(0.5)
        dash = http.get("/dashboard").json()
        assert len(dash["workers"]) == args.workers
        assert dash["jobs"]["by_state"].get("QUEUED") == 100, dash["jobs"]["by_state"]
        out["bytes"] = len(http.get("/dashboard").content)
        for _ in range(50):  # warm up both paths
            http.get("/health")
            http.get("/dashboard")
        out["health"] = timed_gets(http, "/health", args.requests)
        out["dashboard"] = timed_gets(http, "/dashboard", args.requests)
        out["cold"] = timed_gets(http, "/dashboard", 10, gap_s=2.5)  # past the stale window
        time.sleep(2)
        out["idle_cpu"], _ = cpu_during(proc, lambda: time.sleep(args.poll))
        n, bodies = int(args.poll * 10), []
        out["poll_cpu"], out["polled"] = cpu_during(
            proc, lambda: timed_gets(http, "/dashboard", n, gap_s=0.1, bodies=bodies)
        )
        builds = {b["generated_at"]: b["build_ms"] for b in bodies}
        out["builds"] = list(builds.values())
        out["health_10hz"] = timed_gets(http, "/health", 100, gap_s=0.1)

        async def with_streams() -> tuple[dict[str, Any], list[float]]:
            task = asyncio.ensure_future(subscribers(server.url, key, args.subscribers, args.poll))
            await asyncio.sleep(3)  # all connected
            loop = asyncio.get_running_loop()
            health = await loop.run_in_executor(
                None, lambda: timed_gets(http, "/health", int((args.poll - 5) * 10), gap_s=0.1)
            )
            return await task, health

        c0, t0 = cpu_seconds(proc), time.perf_counter()
        streams, health_streams = asyncio.run(with_streams())
        out["stream_cpu"] = 100 * (cpu_seconds(proc) - c0) / (time.perf_counter() - t0)
        out["streams"], out["health_streams"] = streams, health_streams
        out["dash_after"] = http.get("/metrics").json()
    return out


def report(r: dict[str, Any], sizes: dict[str, int], args: argparse.Namespace) -> None:
    h99, d99 = percentile(r["health"], 99), percentile(r["dashboard"], 99)
    extra_cpu = r["poll_cpu"] - r["idle_cpu"]
    received = r["streams"]["received"]
    span = args.poll
    rows = [
        ["GET /health, c=1", percentile(r["health"], 50), h99, ""],
        ["GET /dashboard, c=1 back to back", percentile(r["dashboard"], 50), d99, ""],
        [
            "GET /dashboard at 10 Hz (rebuilt behind the answers once a second)",
            percentile(r["polled"], 50),
            percentile(r["polled"], 99),
            f"{len(r['builds'])} rebuilds",
        ],
        [
            "snapshot rebuild, server side (build_ms of those)",
            percentile(r["builds"], 50),
            percentile(r["builds"], 99),
            "",
        ],
        [
            "GET /dashboard 2.5 s apart (each waits for its rebuild)",
            percentile(r["cold"], 50),
            percentile(r["cold"], 99),
            f"max {max(r['cold']):.1f}",
        ],
        [
            "GET /health at 10 Hz, no streams",
            percentile(r["health_10hz"], 50),
            percentile(r["health_10hz"], 99),
            "",
        ],
        [
            f"GET /health at 10 Hz, {args.subscribers} streams open",
            percentile(r["health_streams"], 50),
            percentile(r["health_streams"], 99),
            "",
        ],
    ]
    latency = table(rows, ["request", "p50 ms", "p99 ms", "note"])
    goals = [
        ["/dashboard p99 / /health p99 (c=1)", d99 / h99, "<= 20", d99 / h99 <= 20],
        ["server CPU idle (% of one core)", r["idle_cpu"], "", ""],
        ["server CPU polled at 10 Hz (% of one core)", r["poll_cpu"], "", ""],
        ["CPU added by 10 Hz polling (% of one core)", extra_cpu, "<= 5", extra_cpu <= 5],
        [
            f"server CPU with {args.subscribers} SSE subscribers (% of one core)",
            r["stream_cpu"],
            "",
            "",
        ],
        [
            "CPU added per SSE subscriber (% of one core)",
            (r["stream_cpu"] - r["idle_cpu"]) / args.subscribers,
            "",
            "",
        ],
        [
            "snapshots per subscriber per second",
            sum(received) / len(received) / span,
            "~1 (interval=1)",
            "",
        ],
        [
            "snapshot delivery lag p50 / p99 ms",
            f"{percentile(r['streams']['lags'], 50) * 1000:.0f} / "
            f"{percentile(r['streams']['lags'], 99) * 1000:.0f}",
            "",
            "",
        ],
    ]
    body = (
        latency
        + "\n\n"
        + table(goals, ["figure", "measured", "goal", "met"])
        + f"\n\nStore (SQLite, WAL): {sizes['jobs']:,} jobs (100 queued), {sizes['logs']:,} log "
        f"lines, {sizes['checkpoints']:,} checkpoints, {sizes['metrics']:,} training-metric "
        f"points, {sizes['datasets']} datasets, {sizes['records']:,} inference records; "
        f"{args.workers} Dask workers registered (in-process worker threads of one helper "
        f"process, joined with --dask-address). /dashboard answer: {r['bytes']:,} bytes. "
        f"{args.requests} requests per c=1 row; {args.poll:.0f} s of 10 Hz polling and of "
        f"{args.subscribers} subscribers (every subscriber received "
        f"{min(received)}-{max(received)} snapshots). CPU is the server process's "
        "(user + system) over the span; the load generator and the 64 workers share the "
        "same 2 cores. No GPU."
    )
    command = "python benchmarks/bench_dashboard.py" + (
        f" --poll {args.poll:g}" if args.poll != 20.0 else ""
    )
    if args.record:
        record("bench_dashboard", body, command)
    else:
        print(f"Machine: {machine()}\n\n{body}")


if __name__ == "__main__":
    main()
