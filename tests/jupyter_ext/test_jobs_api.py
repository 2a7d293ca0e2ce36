"""The job routes against a real server, real Dask workers and a real database."""

from __future__ import annotations

import asyncio

SCRIPT = "import sys\nfor i in range(3):\n    print('line', i)\nprint('oops', file=sys.stderr)\n"


async def test_submit_runs_task_and_keeps_output_and_timeline(api):
    resp = await api("POST", "jobs", json_body={"name": "hello", "script": SCRIPT, "priority": 7})
    assert resp.status == 201, resp.text
    job_id = resp.json["job_id"]
    assert resp.headers["Location"].endswith(f"/jobs/{job_id}")
    assert resp.json["status"] == "QUEUED"

    job = await api.wait_job(job_id, {"COMPLETED", "FAILED"})

    assert job["status"] == "COMPLETED", job
    assert job["exit_code"] == 0
    assert "line 2" in job["output"]
    states = [e["to_state"] for e in job["timeline"]]
    assert states == ["PENDING", "QUEUED", "SCHEDULING", "PREPARING", "RUNNING", "COMPLETED"]
    assert all(e["ts"].endswith("Z") for e in job["timeline"])


async def test_logs_endpoint_returns_lines_in_order(api):
    resp = await api("POST", "jobs", json_body={"name": "logs", "script": SCRIPT})
    job_id = resp.json["job_id"]
    await api.wait_job(job_id, {"COMPLETED"})

    logs = await api(
        "GET",
        f"jobs/{job_id}/logs",
        params={"follow": "false"},
        headers={"Accept": "application/json"},
    )

    assert logs.status == 200, logs.text
    user_lines = [x for x in logs.json["items"] if x["stream"] != "system"]
    assert [x["message"] for x in user_lines if x["stream"] == "stdout"] == [
        "line 0",
        "line 1",
        "line 2",
    ]
    assert any(x["stream"] == "stderr" and x["level"] == "WARNING" for x in user_lines)


async def test_failed_exit_code_retries_then_fails(api):
    resp = await api(
        "POST",
        "jobs",
        json_body={"name": "boom", "script": "raise SystemExit(3)", "max_retries": 1},
    )
    job = await api.wait_job(resp.json["job_id"], {"FAILED"})
    assert job["exit_code"] == 3
    assert job["retry_count"] == 1
    reasons = [e["reason"] for e in job["timeline"]]
    assert any("retry 1 of 1" in r for r in reasons)
    assert "no retries left" in reasons[-1]


async def test_cancel_running_job_kills_it(api):
    resp = await api(
        "POST",
        "jobs",
        json_body={
            "name": "sleeper",
            "script": "import time\nprint('up', flush=True)\ntime.sleep(300)",
        },
    )
    job_id = resp.json["job_id"]
    await api.wait_job(job_id, {"RUNNING"})

    cancel = await api("POST", f"jobs/{job_id}/cancel")

    assert cancel.status == 200, cancel.text
    assert cancel.json["status"] == "CANCELLED"
    again = await api("POST", f"jobs/{job_id}/cancel")
    assert again.status == 409
    assert again.error_code() == "CANNOT_CANCEL"


async def test_list_paginates_and_filters(api):
    ids = []
    for i in range(5):
        r = await api("POST", "jobs", json_body={"name": f"p{i}", "script": "pass"})
        ids.append(r.json["job_id"])
    first = await api("GET", "jobs", params={"page_size": 2})
    assert first.json["total"] == 5
    assert len(first.json["items"]) == 2
    second = await api(
        "GET", "jobs", params={"page_size": 2, "page_token": first.json["next_page_token"]}
    )
    seen = {j["id"] for j in first.json["items"] + second.json["items"]}
    assert len(seen) == 4
    for job_id in ids:
        await api.wait_job(job_id, {"COMPLETED"})
    done = await api("GET", "jobs", params={"status": "COMPLETED"})
    assert done.json["total"] == 5
    await asyncio.sleep(0)
