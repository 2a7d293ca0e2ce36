"""Coordinator throughput and latency (issue: foundation).

1. Committed job submissions per second through ``POST /jobs`` against the
   same server's ``GET /health`` requests per second (goal >= 0.5x). The
   submitted jobs ask for a GPU the cluster does not have, so they stay
   queued and the figure is the accept-and-commit path alone.
2. Submit -> RUNNING latency p50/p99 on an idle cluster, from each job's own
   timeline (server clock).
3. Dispatcher decisions per second with 10,000 queued jobs (a pure dispatch
   pass, the same code the server runs).

Run: ``python benchmarks/bench_coordinator.py``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import percentile, record, rps, table
from stratalab.launcher import start_server
from stratalab.notebook.client import Client
from stratalab.scheduler.dispatcher import (
    QueuedJob,
    Request,
    WorkerSlot,
    plan,
)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def submit_latency(client: Client, n: int) -> list[float]:
    """Seconds from PENDING to RUNNING for ``n`` jobs submitted one at a time."""
    out = []
    for i in range(n):
        job_id = client.submit(f"lat-{i}", script="pass")["job_id"]
        job = client.wait(job_id, timeout=60, poll_s=0.05)
        tl = {e["to_state"]: e["ts"] for e in job["timeline"]}
        out.append(_ts(tl["RUNNING"]) - _ts(tl["PENDING"]))
    return out


def dispatcher_decisions(n_jobs: int = 10_000, passes: int = 20) -> tuple[float, float]:
    """(decisions/s, ms per pass) over ``n_jobs`` queued on a full 64-worker cluster."""
    jobs = [
        QueuedJob(f"job_{i}", 1 + i % 10, float(i), i, Request(gpu=i % 4 == 0))
        for i in range(n_jobs)
    ]
    times = []
    for _ in range(passes):
        workers = [WorkerSlot(f"w{k}", 4, 16.0, 0, used_cpu=3) for k in range(64)]
        t0 = time.perf_counter()
        p = plan(jobs, workers, now=float(n_jobs), aging_interval_s=60.0)
        times.append(time.perf_counter() - t0)
        assert len(p.placements) + len(p.pending) == n_jobs
    best = sorted(times)[len(times) // 2]
    return n_jobs / best, best * 1000


async def throughput(url: str, key: str, duration: float, concurrency: int) -> tuple[dict, dict]:
    headers = {"X-API-Key": key}
    health = await rps(
        url,
        lambda c: c.get("/health"),
        concurrency=concurrency,
        duration_s=duration,
        headers=headers,
    )
    body = {"name": "bench", "script": "pass", "gpu": 1}
    submit = await rps(
        url,
        lambda c: c.post("/jobs", json=body),
        concurrency=concurrency,
        duration_s=duration,
        headers=headers,
    )
    return health, submit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency-jobs", type=int, default=30)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    with (
        tempfile.TemporaryDirectory() as tmp,
        start_server(
            Path(tmp), extra_args=["--workers", "2", "--StrataLab.rate_limit_per_minute=0"]
        ) as server,
    ):
        key = server.info["admin_key"]
        client = Client(server.url, api_key=key)
        lat = submit_latency(client, args.latency_jobs)
        health, submit = asyncio.run(throughput(server.url, key, args.duration, args.concurrency))
        queued = client.queue()["depth"]
        client.close()
    decisions, pass_ms = dispatcher_decisions()

    ratio = submit["rps"] / health["rps"]
    rows = [
        [
            "POST /jobs (committed submissions/s)",
            submit["rps"],
            health["rps"],
            ratio,
            ">= 0.5x",
            "yes" if ratio >= 0.5 else "no",
        ],
        [
            "POST /jobs p50 / p99 ms",
            f"{submit['p50_ms']:.1f} / {submit['p99_ms']:.1f}",
            f"{health['p50_ms']:.1f} / {health['p99_ms']:.1f}",
            "",
            "",
            "",
        ],
        ["submit -> RUNNING p50 ms (idle cluster)", percentile(lat, 50) * 1000, "", "", "", ""],
        ["submit -> RUNNING p99 ms (idle cluster)", percentile(lat, 99) * 1000, "", "", "", ""],
        ["dispatcher decisions/s, 10,000 queued", decisions, "", "", "", f"{pass_ms:.1f} ms/pass"],
    ]
    body = table(rows, ["metric", "StrataLab", "baseline: GET /health", "ratio", "goal", "met"])
    body += (
        f"\n\nConcurrency {args.concurrency}, {args.duration:.0f} s per measurement, "
        f"SQLite (WAL) store, 2 embedded workers; {int(submit['requests'])} submissions, "
        f"{int(submit['errors'])} errors, {queued} jobs left queued; "
        f"{args.latency_jobs} latency samples."
    )
    if args.no_record:
        print(body)
    else:
        record("Coordinator (bench_coordinator.py)", body, "python benchmarks/bench_coordinator.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
