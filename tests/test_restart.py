"""A server restart loses nothing: jobs, logs and queued work survive.

The server runs as a user runs it (``stratalab server``, embedded
LocalCluster, SQLite in the data dir), is stopped, and started again on the
same data dir.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stratalab.launcher import start_server
from stratalab.notebook.client import Client
from stratalab.testing import wait_until

# The first attempt hangs (it is cut off by the stop); the retry succeeds.
RESUMABLE = """\
import os, time
attempt = os.environ["STRATALAB_ATTEMPT"]
print(f"attempt {attempt} starting", flush=True)
if attempt == "1":
    time.sleep(600)
print("finished", flush=True)
"""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def wait_status(c: Client, job_id: str, wanted: set[str], timeout: float = 90) -> dict:
    return wait_until(
        lambda: (j := c.job(job_id))["status"] in wanted and j,
        timeout=timeout,
        what=f"{job_id} to reach {wanted}",
    )


def test_restart_keeps_jobs_and_logs_and_runs_queued_work(tmp_path: Path):
    data = tmp_path / "data"
    with start_server(data, extra_args=["--workers", "1"]) as server:
        c = Client(server.url, api_key=server.info["admin_key"])
        assert c.status()["embedded_cluster"] is True
        running = c.submit("resumable", script=RESUMABLE, max_retries=1)["job_id"]
        queued = c.submit("queued", script="print('queued ran')", priority=3)["job_id"]
        wait_status(c, running, {"RUNNING"})
        wait_until(
            lambda: any("attempt 1" in x["message"] for x in c.logs(running, follow=False)),
            timeout=30,
            what="the first attempt's log line",
        )
        assert c.job(queued)["status"] == "QUEUED"
        c.close()
    assert server.process.returncode == 0

    with start_server(data, extra_args=["--workers", "1"]) as server:
        c = Client(server.url, api_key=server.info["admin_key"])
        first = wait_status(c, running, {"COMPLETED", "FAILED"})
        second = wait_status(c, queued, {"COMPLETED", "FAILED"})
        lines = [x["message"] for x in c.logs(running, follow=False, tail=1000)]
        c.close()

    assert first["status"] == "COMPLETED", first
    assert first["retry_count"] == 1
    reasons = [e["reason"] for e in first["timeline"]]
    assert any("server stopped while the job was RUNNING; retry 1 of 1" in r for r in reasons)
    assert "attempt 1 starting" in lines and "attempt 2 starting" in lines
    assert "finished" in lines
    assert second["status"] == "COMPLETED"
    assert "queued ran" in second["output"]


def test_restart_fails_running_job_without_retries_left(tmp_path: Path):
    data = tmp_path / "data"
    with start_server(data, extra_args=["--workers", "1"]) as server:
        c = Client(server.url, api_key=server.info["admin_key"])
        job_id = c.submit("no-retry", script=RESUMABLE, max_retries=0)["job_id"]
        wait_status(c, job_id, {"RUNNING"})
        c.close()
    with start_server(data, extra_args=["--workers", "1"]) as server:
        c = Client(server.url, api_key=server.info["admin_key"])
        job = c.job(job_id)
        c.close()
    assert job["status"] == "FAILED"
    assert job["timeline"][-1]["reason"] == (
        "the server stopped while the job was RUNNING; no retries left"
    )
