"""Training and task jobs share workers without one waiting inside the other."""

from __future__ import annotations

import pytest

from tests.conftest import Api
from tests.training.conftest import DONE, register_digits, submit, training_body, wait_for

pytestmark = pytest.mark.usefixtures("jp_server_config")

SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(120)\n"


async def test_task_jobs_holding_every_thread_make_training_wait_with_a_reason(
    api: Api,
) -> None:
    sleepers = []
    for i in range(2):  # the session cluster has two single-thread workers
        resp = await api("POST", "jobs", json_body={"name": f"s{i}", "script": SLEEPER})
        sleepers.append(resp.json["job_id"])
    for job_id in sleepers:
        await api.wait_job(job_id, {"RUNNING"})
    ds = await register_digits(api)
    job_id = await submit(api, training_body(ds, epochs=1))
    waiting = await wait_for(api, job_id, lambda j: bool(j.get("why_pending")))
    assert waiting["status"] == "QUEUED"
    assert "2 worker(s) busy with task jobs" in waiting["why_pending"]

    # a task ending frees its worker: the training job runs there
    await api("POST", f"jobs/{sleepers[0]}/cancel")
    done = await api.wait_job(job_id, DONE, timeout=120)
    assert done["status"] == "COMPLETED", done
    await api("POST", f"jobs/{sleepers[1]}/cancel")


async def test_a_task_job_is_not_placed_on_a_worker_a_training_run_holds(api: Api) -> None:
    ds = await register_digits(api)
    job_id = await submit(api, training_body(ds, epochs=200, resources={"min_devices": 2}))
    await wait_for(api, job_id, lambda j: (j.get("progress") or {}).get("current_round", 0) >= 1)
    resp = await api("POST", "jobs", json_body={"name": "t", "script": "print(1)"})
    task = await wait_for(api, resp.json["job_id"], lambda j: bool(j.get("why_pending")))
    assert task["status"] == "QUEUED"
    await api("POST", f"jobs/{job_id}/cancel")
    done = await api.wait_job(resp.json["job_id"], DONE)
    assert done["status"] == "COMPLETED"
