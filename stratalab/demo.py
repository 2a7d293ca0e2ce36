"""``stratalab demo``: start the embedded server and show what StrataLab does.

Everything goes through the public REST API with the Python client, exactly
as a user's script would: an API key is minted, tasks of different
priorities are submitted, one job's log is streamed with a progress bar, one
job is cancelled, one fails and is retried, and the queue, the workers and
the results are printed as tables. Exits non-zero if anything did not happen
as promised, so CI can run it. The second part (:mod:`stratalab.demo_inference`)
serves a model: sync, async and a 100,000-row batch, then prints the analytics.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from stratalab.demo_inference import run_inference_demo
from stratalab.demo_training import run_training_demo
from stratalab.launcher import start_server
from stratalab.notebook.client import Client

#: A training-like script: prints progress lines the demo turns into a bar.
PROGRESS_SCRIPT = """\
import sys, time
steps = int(sys.argv[1])
for i in range(1, steps + 1):
    time.sleep(0.15)
    print(f"progress {i}/{steps} loss={1.0 / i:.4f}", flush=True)
print("done")
"""

SHORT_SCRIPT = """\
import os, socket, time
time.sleep(0.5)
print(f"{os.environ['STRATALAB_JOB_ID']} ran in {os.getcwd()} on {socket.gethostname()}")
"""

FAILING_SCRIPT = """\
import sys
print("checking inputs...")
print("input file missing", file=sys.stderr)
sys.exit(2)
"""

SLEEPER_SCRIPT = "import time\nprint('waiting forever', flush=True)\ntime.sleep(3600)\n"

_PROGRESS = re.compile(r"progress (\d+)/(\d+)")


def _banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)), flush=True)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    frame = pd.DataFrame(rows)
    for col in columns:
        if col not in frame:
            frame[col] = None
    return str(frame[columns].fillna("").to_string(index=False))


def _stream_with_progress(client: Client, job_id: str) -> list[str]:
    """Follow a job's log and show its progress lines as a tqdm bar.

    On a terminal the bar redraws live; in a log (CI, a pipe) a line is
    printed at each quarter instead of hundreds of bar frames.
    """
    tty = sys.stdout.isatty()
    lines: list[str] = []
    bar: tqdm[Any] | None = None
    quarter = 0
    for entry in client.logs(job_id, follow=True, tail=1000):
        message = entry["message"]
        lines.append(message)
        match = _PROGRESS.search(message)
        if not match:
            tqdm.write(f"  [{entry['stream']}] {message}", file=sys.stdout)
            continue
        done, total = int(match.group(1)), int(match.group(2))
        detail = message.split(" ", 2)[-1]
        if tty:
            if bar is None:
                bar = tqdm(total=total, desc=job_id, unit="step", file=sys.stdout)
            bar.update(done - bar.n)
            bar.set_postfix_str(detail, refresh=False)
        elif done * 4 >= (quarter + 1) * total:
            quarter = done * 4 // total
            print(f"  progress {done}/{total} ({100 * done // total}%) {detail}", flush=True)
    if bar is not None:
        bar.close()
    return lines


def run_demo(data_dir: Path | None = None, *, workers: int = 2) -> int:
    """Run the showcase; returns the process exit code."""
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="stratalab-demo-")
        data_dir = Path(tmp.name)
    problems: list[str] = []
    t0 = time.perf_counter()
    _banner("starting the embedded StrataLab server")
    server = start_server(data_dir, extra_args=["--workers", str(workers)])
    try:
        info = server.info
        print(f"API:            {info['url']}")
        print(f"Dask dashboard: {info['dask_dashboard']}")
        print(f"Dask scheduler: {info['dask_address']}")
        print(f"data dir:       {info['data_dir']}  (SQLite: stratalab.db)")
        print(f"started in {time.perf_counter() - t0:.1f} s")

        with Client(info["url"], api_key=info["admin_key"]) as admin:
            key = admin.create_key("demo-user", name="demo")
            print(f"created API key {key['id']} for user demo-user ({key['prefix']}…)")
        client = Client(info["url"], api_key=key["key"])

        _banner("submitting tasks through POST /jobs")
        sleeper = client.submit("sleeper", script=SLEEPER_SCRIPT, priority=1, max_retries=0)
        specs: list[dict[str, Any]] = [
            {"name": "train-model", "script": PROGRESS_SCRIPT, "args": ["20"], "priority": 9},
            {"name": "nightly-etl", "script": SHORT_SCRIPT, "priority": 2},
            {"name": "report", "script": SHORT_SCRIPT, "priority": 5},
            {"name": "feature-build", "script": SHORT_SCRIPT, "priority": 5},
            {"name": "broken-step", "script": FAILING_SCRIPT, "priority": 7, "max_retries": 1},
            {"name": "gpu-finetune", "script": SHORT_SCRIPT, "priority": 8, "gpu": 1},
        ]
        submitted = [client.submit(**spec) for spec in specs]
        for s in [sleeper, *submitted]:
            job = s["job"]
            print(
                f"  {s['job_id']}  {job['name']:<14} priority {job['priority']:>2}  {job['status']}"
            )

        time.sleep(1.5)
        _banner("GET /queue")
        queue = client.queue()
        print(
            f"depth {queue['depth']}, running {queue['running']}, "
            f"by priority {queue['by_priority']}"
        )
        print(_table(queue["jobs"], ["id", "name", "priority", "priority_aged", "why_pending"]))

        train_id = submitted[0]["job_id"]
        _banner(f"streaming GET /jobs/{train_id}/logs (SSE)")
        lines = _stream_with_progress(client, train_id)
        if "done" not in lines:
            problems.append("the training task's log did not end with 'done'")

        _banner("cancelling the sleeper (POST /jobs/{id}/cancel)")
        cancelled = client.cancel(sleeper["job_id"], "demo: not needed any more")
        print(f"  {cancelled['id']} -> {cancelled['status']}")

        ids = [s["job_id"] for s in submitted[:-1]]
        finals = [client.wait(i, timeout=120) for i in ids]
        gpu_job = client.job(submitted[-1]["job_id"])

        _banner("GET /workers")
        print(
            _table(client.workers(), ["id", "address", "status", "nthreads", "gpus", "cpu_percent"])
        )

        _banner("results")
        rows = []
        for job in [*finals, client.job(sleeper["job_id"]), gpu_job]:
            started = job.get("started_at") or ""
            rows.append(
                {
                    "job": job["id"],
                    "name": job["name"],
                    "priority": job["priority"],
                    "status": job["status"],
                    "exit": "" if job["exit_code"] is None else str(job["exit_code"]),
                    "attempts": job["attempt"],
                    "worker": job.get("worker_id") or "",
                    "started": started[11:23],
                    "note": (job.get("why_pending") or job.get("error") or "")[:48],
                }
            )
        print(
            _table(
                rows,
                [
                    "job",
                    "name",
                    "priority",
                    "status",
                    "exit",
                    "attempts",
                    "worker",
                    "started",
                    "note",
                ],
            )
        )

        broken = finals[4]
        _banner(f"timeline of {broken['name']} ({broken['id']})")
        for ev in broken["timeline"]:
            print(
                f"  {ev['ts']}  {ev['from_state'] or '-':>10} -> {ev['to_state']:<10} "
                f"{ev['reason']}"
            )

        expected = {
            "train-model": "COMPLETED",
            "nightly-etl": "COMPLETED",
            "report": "COMPLETED",
            "feature-build": "COMPLETED",
            "broken-step": "FAILED",
        }
        for job in finals:
            if job["status"] != expected[job["name"]]:
                problems.append(f"{job['name']} ended {job['status']}")
        if broken["retry_count"] != 1:
            problems.append("broken-step was not retried once")
        if cancelled["status"] != "CANCELLED":
            problems.append("the sleeper was not cancelled")
        if gpu_job["status"] != "QUEUED" and not any(w["gpus"] for w in client.workers()):
            problems.append("the GPU job left the queue on a cluster without GPUs")
        problems += run_inference_demo(client, _banner, _table)
        problems += run_training_demo(client, _banner, _table)
        client.close()
    finally:
        code = server.stop()
        if tmp is not None:
            tmp.cleanup()
    _banner("summary")
    print(f"server stopped (exit {code}); demo took {time.perf_counter() - t0:.1f} s")
    if problems:
        for p in problems:
            print(f"PROBLEM: {p}")
        return 1
    print("all demo checks passed")
    return 0
