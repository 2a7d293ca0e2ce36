"""The Python client (sync and async) against a real server with a real Dask worker."""

from __future__ import annotations

import inspect
import re

import pandas as pd
import pytest

from stratalab.launcher import ServerProcess, free_port
from stratalab.notebook import ApiError, AsyncClient, Client, WaitTimeout, to_numpy
from stratalab.notebook.tensors import encode

COUNTING = (
    "import sys, time\n"
    "for i in range(3):\n"
    "    print(f'line {i}', flush=True)\n"
    "    time.sleep(0.2)\n"
    "print('to stderr', file=sys.stderr)\n"
)
SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"
TASK_STATES = ["PENDING", "QUEUED", "SCHEDULING", "PREPARING", "RUNNING", "COMPLETED"]
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def test_submit_wait_and_read_logs(client: Client):
    submitted = client.jobs.submit("counting", COUNTING, priority=7)

    job = client.jobs.wait(submitted["job_id"], timeout=90, progress=True)

    assert submitted["status"] == "QUEUED" and submitted["job"]["priority"] == 7
    assert job["status"] == "COMPLETED" and job["exit_code"] == 0
    lines = client.jobs.logs(job["id"])
    output = [(x["stream"], x["message"]) for x in lines if x["stream"] != "system"]
    assert output == [
        ("stdout", "line 0"),
        ("stdout", "line 1"),
        ("stdout", "line 2"),
        ("stderr", "to stderr"),
    ]
    assert [e["to_state"] for e in client.jobs.events(job["id"])] == TASK_STATES


def test_monitor_yields_every_state_change_until_the_job_ends(client: Client):
    job_id = client.jobs.submit("monitored", COUNTING)["job_id"]

    updates = list(client.jobs.monitor(job_id))

    states = [u["status"] for u in updates if u["event"] == "state"]
    assert states == TASK_STATES
    assert all(u["job_id"] == job_id for u in updates)
    assert updates[-1]["reason"] == "exit code 0"
    assert updates[2]["worker"] is not None  # SCHEDULING names the worker


def test_stream_logs_follows_output_live_until_the_end(client: Client):
    job_id = client.jobs.submit("streamed", COUNTING)["job_id"]

    lines = [x["message"] for x in client.jobs.stream_logs(job_id) if x["stream"] != "system"]

    assert lines == ["line 0", "line 1", "line 2", "to stderr"]
    assert client.jobs.get(job_id)["status"] == "COMPLETED"


def test_list_is_a_dataframe_filtered_by_status(client: Client):
    failed_id = client.jobs.submit("fails", "raise SystemExit(3)", max_retries=0)["job_id"]
    assert client.jobs.wait(failed_id, timeout=90)["status"] == "FAILED"

    failed = client.jobs.list(status="FAILED")
    everything = client.jobs.list(limit=1000)
    none = client.jobs.list(status="PAUSED")

    assert isinstance(failed, pd.DataFrame)
    assert failed_id in set(failed["id"]) and set(failed["status"]) == {"FAILED"}
    assert failed.loc[failed["id"] == failed_id, "exit_code"].item() == 3
    assert len(everything) > len(failed)
    assert pd.api.types.is_datetime64_any_dtype(everything["created_at"])
    assert list(everything.columns[:4]) == ["id", "name", "type", "status"]
    assert none.empty and "status" in none.columns
    assert client.jobs.records(status=["FAILED"], limit=1)[0]["status"] == "FAILED"


def test_priority_wait_timeout_cancel_and_retry(client: Client):
    job_id = client.jobs.submit("sleeper", SLEEPER, priority=2, max_retries=0)["job_id"]
    try:
        assert client.jobs.set_priority(job_id, 9)["priority"] == 9
        with pytest.raises(WaitTimeout) as info:
            client.jobs.wait(job_id, timeout=0.3, poll_s=0.1)
        assert info.value.code == "TIMEOUT" and isinstance(info.value, TimeoutError)
    finally:
        cancelled = client.jobs.cancel(job_id, "test done")
    assert cancelled["status"] == "CANCELLED"

    child = client.jobs.retry(job_id, priority=3)
    child_job = client.jobs.cancel(child["job_id"])

    assert child["job"]["parent_job_id"] == job_id
    assert child_job["status"] == "CANCELLED" and child_job["priority"] == 3


def test_workers_list_get_drain_and_enable(client: Client):
    frame = client.workers.list()
    assert len(frame) == 1 and frame.loc[0, "status"] == "active"
    worker_id = frame.loc[0, "id"]
    assert client.workers.get(worker_id)["address"] == frame.loc[0, "address"]
    assert [w["id"] for w in client.workers()] == [worker_id]  # the script-era call

    try:
        drained = client.workers.drain(worker_id)
        assert drained["status"] in {"drained", "draining"}
        assert client.workers.list(status="active").empty
    finally:
        enabled = client.workers.enable(worker_id)
    assert enabled["status"] == "active"


def test_system_views(client: Client, server: ServerProcess):
    health, status = client.health(), client.status()
    cluster, queue = client.cluster(), client.queue()

    assert health["status"] == "ok"
    assert status["workers"] == 1 and status["dask_address"] == server.info["dask_address"]
    assert cluster["capacity"]["cpu"] == 1 and cluster["workers"]["total"] == 1
    assert queue["depth"] >= 0 and "COMPLETED" in queue["by_state"]
    assert client.config()["aging_interval_s"] > 0


def test_a_revoked_key_answers_auth_invalid(client: Client, server: ServerProcess):
    created = client.keys.create("alice", name="notebook-test")
    alice = Client(server.url, api_key=created["key"])
    try:
        assert alice.jobs.list().empty  # alice sees only her own jobs
        assert created["id"] in set(client.keys.list()["id"])

        client.keys.revoke(created["id"])

        with pytest.raises(ApiError) as info:
            alice.jobs.list()
    finally:
        alice.close()
    err = info.value
    assert err.code == "AUTH_INVALID" and err.status == 401
    assert TRACE_ID.match(err.trace_id or "")
    assert err.__cause__ is None


def test_unknown_job_is_not_found(client: Client):
    with pytest.raises(ApiError) as info:
        client.jobs.get("job_doesnotexist")
    assert info.value.code == "NOT_FOUND" and info.value.status == 404
    assert "job_doesnotexist" in info.value.message

    with pytest.raises(ApiError) as streamed:
        list(client.jobs.monitor("job_doesnotexist"))
    assert streamed.value.code == "NOT_FOUND"


def test_a_wrong_url_is_a_clear_service_unavailable():
    url = f"http://127.0.0.1:{free_port()}/stratalab/api/v1"
    with Client(url, api_key="slk_nothing") as c, pytest.raises(ApiError) as info:
        c.status()
    err = info.value
    assert err.code == "SERVICE_UNAVAILABLE" and err.status is None
    assert err.message.startswith(f"cannot reach StrataLab at {url}: ")
    assert err.__cause__ is None and err.__suppress_context__

    with Client(url) as c, pytest.raises(ApiError) as streamed:
        list(c.jobs.stream_logs("job_x"))
    assert streamed.value.code == "SERVICE_UNAVAILABLE"


def test_a_url_that_is_not_the_api_says_so(server: ServerProcess):
    url = server.info["server_url"] + "nothing/here"
    with Client(url, token=server.info["token"]) as c, pytest.raises(ApiError) as info:
        c.status()
    assert info.value.code == "NOT_FOUND" and info.value.status == 404


def test_jupyter_token_authenticates_like_the_kernel_does(server: ServerProcess):
    with Client(server.url, token=server.info["token"]) as c:
        assert c.status()["workers"] == 1


async def test_async_client_has_the_same_surface_and_works(server: ServerProcess):
    async with AsyncClient(server.url, api_key=server.info["admin_key"]) as c:
        job_id = (await c.jobs.submit("async-job", COUNTING))["job_id"]
        states = [u["status"] async for u in c.jobs.monitor(job_id) if u["event"] == "state"]
        job = await c.jobs.wait(job_id, timeout=60)
        lines = [x["message"] async for x in c.jobs.stream_logs(job_id)]
        workers = await c.workers.list()
        status = await c.status()
        with pytest.raises(ApiError) as info:
            await c.jobs.get("job_nope")

    assert states == TASK_STATES and job["status"] == "COMPLETED"
    assert "line 2" in lines
    assert len(workers) == 1 and status["workers"] == 1
    assert info.value.code == "NOT_FOUND"


@pytest.mark.parametrize(
    "name", ["jobs", "workers", "keys", "models", "inference", "projects", "datasets", "training"]
)
def test_sync_and_async_namespaces_match(name: str):
    sync_ns = type(getattr(Client("http://x/api"), name))
    async_ns = type(getattr(AsyncClient("http://x/api"), name))

    def surface(cls: type) -> dict[str, list[str]]:
        return {
            n: list(inspect.signature(f).parameters)
            for n, f in inspect.getmembers(cls, inspect.isfunction)
            if not n.startswith("_")
        }

    assert surface(sync_ns) == surface(async_ns)


def test_numpy_inputs_and_results_round_trip():
    np = pytest.importorskip("numpy")
    x = np.arange(6, dtype="float32").reshape(2, 3)

    wire = encode({"x": x, "scale": np.float32(2.0)})
    back = to_numpy({"logits": {"data": wire["x"]["data"], "shape": wire["x"]["shape"]}})

    assert wire == {"x": {"data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "shape": [2, 3]}, "scale": 2.0}
    assert back["logits"].shape == (2, 3)
    assert np.array_equal(back["logits"], x)
