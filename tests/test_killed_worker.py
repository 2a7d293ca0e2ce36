"""A worker killed with SIGKILL mid-task: the task completes on another worker."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from distributed import Client as DaskClient

from stratalab.testing import local_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SCRIPT = """\
import os, time
print("attempt", os.environ["STRATALAB_ATTEMPT"], flush=True)
if os.environ["STRATALAB_ATTEMPT"] == "1":
    time.sleep(600)
print("finished", flush=True)
"""


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """This module's own cluster: its workers get killed."""
    with local_cluster(2) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'stratalab.db'}"


async def test_sigkilled_worker_task_completes_elsewhere_with_retry_in_timeline(api, dask_address):
    resp = await api(
        "POST", "jobs", json_body={"name": "victim", "script": SCRIPT, "max_retries": 2}
    )
    job_id = resp.json["job_id"]
    job = await api.wait_job(job_id, {"RUNNING"})
    victim = job["worker"]

    with DaskClient(dask_address, timeout=30) as dc:
        pid = dc.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)

    done = await api.wait_job(job_id, {"COMPLETED", "FAILED"}, timeout=120)
    assert done["status"] == "COMPLETED", done
    assert done["worker"] != victim
    assert done["retry_count"] == 1
    lost = [e for e in done["timeline"] if "lost" in e["reason"]]
    assert len(lost) == 1
    assert lost[0]["reason"] == f"worker {victim} lost; retry 1 of 2"
    assert (lost[0]["from_state"], lost[0]["to_state"]) == ("RUNNING", "QUEUED")
    assert "finished" in done["output"]
