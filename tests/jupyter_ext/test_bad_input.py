"""Bad input gets a clear error and loses nothing.

Every case sends something wrong to a real server and checks four things:
the HTTP status, the error envelope ``{"error": {code, message, trace_id,
details?}}`` with the exact code, that nothing internal (tracebacks, SQL)
leaks into the answer, and that the store holds exactly what it held before.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from stratalab.testing import assert_error

GPU_JOB = {"name": "needs-gpu", "script": "pass", "gpu": 1}  # stays QUEUED: no GPU here
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"


def error_fields(err: dict[str, Any]) -> list[str]:
    """Field names of a VALIDATION_ERROR's details."""
    return [e["field"] for e in err["details"]["errors"]]


def _snapshot(store: Any) -> tuple[Any, ...]:
    rows, total = store.list_jobs(user_id=None, limit=1000)
    with store.engine.connect() as conn:
        events = conn.execute(sa.text("SELECT count(*) FROM job_events")).scalar_one()
        keys = conn.execute(sa.text("SELECT count(*) FROM api_keys")).scalar_one()
    jobs = sorted((j.id, j.state, j.priority, j.retry_count, j.attempt) for j in rows)
    return total, jobs, events, keys


async def snapshot(api: Any) -> tuple[Any, ...]:
    """Jobs (with state and priority), timeline rows and keys in the store now."""
    return await api.coordinator.db(_snapshot, api.coordinator.store)


async def queued_job(api: Any) -> str:
    resp = await api("POST", "jobs", json_body=GPU_JOB)
    assert resp.status == 201, resp.text
    return str(resp.json["job_id"])


# --------------------------------------------------------------- bodies
async def test_malformed_json_is_400_and_stores_nothing(api):
    before = await snapshot(api)

    resp = await api(
        "POST",
        "jobs",
        body='{"name": "x", "script": ',
        headers={"Content-Type": "application/json"},
    )

    err = assert_error(resp, 400, "BAD_REQUEST")
    assert "JSON" in err["message"]
    assert err["details"]["position"] == 24
    assert await snapshot(api) == before


async def test_body_that_is_not_utf8_is_400(api):
    before = await snapshot(api)

    resp = await api(
        "POST", "jobs", body=b"\xff\xfe{}", headers={"Content-Type": "application/json"}
    )

    assert_error(resp, 400, "BAD_REQUEST")
    assert await snapshot(api) == before


async def test_missing_body_is_400(api):
    before = await snapshot(api)

    resp = await api("POST", "jobs")

    err = assert_error(resp, 400, "BAD_REQUEST")
    assert "body is required" in err["message"]
    assert await snapshot(api) == before


async def test_json_array_body_is_422(api):
    before = await snapshot(api)

    resp = await api("POST", "jobs", json_body=[{"name": "x", "script": "pass"}])

    err = assert_error(resp, 422, "VALIDATION_ERROR")
    assert "JSON object" in err["message"]
    assert await snapshot(api) == before


async def test_deeply_nested_json_is_a_client_error(api):
    before = await snapshot(api)
    depth = 5000
    body = '{"name": "deep", "script": "pass", "metadata": ' + '{"a": ' * depth + "1" + "}" * depth
    body += "}"

    resp = await api("POST", "jobs", body=body, headers={"Content-Type": "application/json"})

    assert await snapshot(api) == before
    assert_error(resp, 400, "BAD_REQUEST")


_VALID = {"name": "ok", "script": "pass"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({**_VALID, "priority": "high"}, "priority", id="priority-string"),
        pytest.param({**_VALID, "priority": 5.5}, "priority", id="priority-float"),
        pytest.param({**_VALID, "priority": True}, "priority", id="priority-bool"),
        pytest.param({**_VALID, "priority": 0}, "priority", id="priority-0"),
        pytest.param({**_VALID, "priority": 11}, "priority", id="priority-11"),
        pytest.param({**_VALID, "args": "--fast"}, "args", id="args-not-list"),
        pytest.param({**_VALID, "args": [1, 2]}, "args.0", id="args-not-strings"),
        pytest.param({**_VALID, "env": {"A": 1}}, "env.A", id="env-value-int"),
        pytest.param({**_VALID, "gpu": "1"}, "gpu", id="gpu-string"),
        pytest.param({**_VALID, "cpu": 0}, "cpu", id="cpu-0"),
        pytest.param({**_VALID, "max_retries": -1}, "max_retries", id="retries-negative"),
        pytest.param({**_VALID, "colour": "red"}, "colour", id="unknown-field"),
        pytest.param({**_VALID, "name": "has space"}, "name", id="name-space"),
        pytest.param({**_VALID, "name": "a" * 65}, "name", id="name-65"),
        pytest.param({**_VALID, "name": ""}, "name", id="name-empty"),
        pytest.param({**_VALID, "name": "x/../y"}, "name", id="name-slash"),
        pytest.param({"script": "pass"}, "name", id="name-missing"),
        pytest.param({**_VALID, "entrypoint": "run.py"}, "(body)", id="script-and-entrypoint"),
        pytest.param({"name": "ok"}, "(body)", id="neither-script-nor-entrypoint"),
        pytest.param({**_VALID, "script": ""}, "script", id="script-empty"),
    ],
)
async def test_invalid_job_fields_are_422_naming_the_field(api, body, field):
    before = await snapshot(api)

    resp = await api("POST", "jobs", json_body=body)

    err = assert_error(resp, 422, "VALIDATION_ERROR")
    assert field in error_fields(err), err
    if field == "colour":
        assert {"field": "colour", "type": "extra_forbidden"}.items() <= (
            err["details"]["errors"][0].items()
        )
    assert await snapshot(api) == before


@pytest.mark.parametrize(
    ("method", "suffix", "body", "field"),
    [
        pytest.param("PATCH", "priority", {"priority": "9"}, "priority", id="priority-string"),
        pytest.param("PATCH", "priority", {"priority": 0}, "priority", id="priority-0"),
        pytest.param("PATCH", "priority", {}, "priority", id="priority-missing"),
        pytest.param("POST", "cancel", {"reason": 5}, "reason", id="cancel-reason-int"),
        pytest.param("POST", "cancel", {"why": "x"}, "why", id="cancel-unknown-field"),
        pytest.param("POST", "retry", {"priority": 11}, "priority", id="retry-priority-11"),
    ],
)
async def test_invalid_action_bodies_are_422_and_change_nothing(api, method, suffix, body, field):
    job_id = await queued_job(api)
    before = await snapshot(api)

    resp = await api(method, f"jobs/{job_id}/{suffix}", json_body=body)

    err = assert_error(resp, 422, "VALIDATION_ERROR")
    assert field in error_fields(err), err
    assert await snapshot(api) == before
    assert job_id in api.coordinator.runner.queue


@pytest.mark.parametrize("stratalab_config", [{"max_json_kb": 1}])
async def test_body_over_the_limit_is_413_and_stores_nothing(api):
    small = await api("POST", "jobs", json_body={"name": "small", "script": "#" * 900})
    assert small.status == 201, small.text  # under 1 KiB is accepted
    await api.wait_job(small.json["job_id"], {"COMPLETED"})
    before = await snapshot(api)

    resp = await api("POST", "jobs", json_body={"name": "big", "script": "#" * 2000})

    err = assert_error(resp, 413, "PAYLOAD_TOO_LARGE")
    assert err["details"]["limit_bytes"] == 1024
    assert err["details"]["size_bytes"] > 1024
    patch = await api(
        "PATCH",
        f"jobs/{small.json['job_id']}/priority",
        json_body={"priority": 3, "pad": "x" * 2000},
    )
    assert_error(patch, 413, "PAYLOAD_TOO_LARGE")
    assert await snapshot(api) == before


# ----------------------------------------------------------- unknown ids
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        pytest.param("GET", "", None, id="get"),
        pytest.param("POST", "/cancel", None, id="cancel"),
        pytest.param("POST", "/retry", None, id="retry"),
        pytest.param("PATCH", "/priority", {"priority": 5}, id="priority"),
        pytest.param("GET", "/events", None, id="events"),
        pytest.param("GET", "/logs", None, id="logs"),
    ],
)
async def test_unknown_job_is_404(api, method, suffix, body):
    await queued_job(api)  # a real job exists; the id asked for is another one
    before = await snapshot(api)

    resp = await api(method, f"jobs/job_0000000000000000{suffix}", json_body=body, timeout=10)

    err = assert_error(resp, 404, "NOT_FOUND")
    assert "job_0000000000000000" in err["message"]
    assert await snapshot(api) == before


# ------------------------------------------------------ state conflicts
async def test_cancel_or_reprioritise_a_finished_job_is_409(api):
    resp = await api("POST", "jobs", json_body={"name": "quick", "script": "pass"})
    job_id = resp.json["job_id"]
    await api.wait_job(job_id, {"COMPLETED"})
    before = await snapshot(api)

    cancel = await api("POST", f"jobs/{job_id}/cancel")
    prio = await api("PATCH", f"jobs/{job_id}/priority", json_body={"priority": 9})

    err = assert_error(cancel, 409, "CANNOT_CANCEL")
    assert err["details"] == {"status": "COMPLETED"}
    assert_error(prio, 409, "CONFLICT")
    assert await snapshot(api) == before
    assert (await api("GET", f"jobs/{job_id}")).json["status"] == "COMPLETED"


async def test_retry_of_a_queued_job_is_409(api):
    job_id = await queued_job(api)
    before = await snapshot(api)

    resp = await api("POST", f"jobs/{job_id}/retry")

    err = assert_error(resp, 409, "CONFLICT")
    assert err["details"] == {"status": "QUEUED"}
    assert await snapshot(api) == before


async def test_retry_of_a_running_job_is_409(api):
    resp = await api("POST", "jobs", json_body={"name": "sleeper", "script": SLEEPER})
    job_id = resp.json["job_id"]
    try:
        await api.wait_job(job_id, {"RUNNING"})
        before = await snapshot(api)

        retry = await api("POST", f"jobs/{job_id}/retry")

        err = assert_error(retry, 409, "CONFLICT")
        assert err["details"] == {"status": "RUNNING"}
        assert await snapshot(api) == before
    finally:
        cancel = await api("POST", f"jobs/{job_id}/cancel")
        assert cancel.status == 200, cancel.text


# -------------------------------------------------------- query params
@pytest.mark.parametrize(
    ("route", "params", "hint"),
    [
        pytest.param("jobs", {"page_size": "0"}, "page_size", id="page_size-0"),
        pytest.param("jobs", {"page_size": "1001"}, "page_size", id="page_size-1001"),
        pytest.param("jobs", {"page_size": "abc"}, "page_size", id="page_size-abc"),
        pytest.param("jobs", {"page_token": "garbage"}, "page_token", id="page_token-garbage"),
        pytest.param("jobs", {"page_token": "W10"}, "page_token", id="page_token-list"),
        pytest.param("jobs", {"status": "NOPE"}, "NOPE", id="status"),
        pytest.param("jobs", {"type": "nope"}, "nope", id="type"),
        pytest.param("jobs", {"order_by": "evil"}, "order_by", id="order_by"),
        pytest.param("jobs", {"order_by": "id; DROP TABLE jobs"}, "order_by", id="order_by-sql"),
        pytest.param("logs", {"level": "LOUD"}, "level", id="logs-level"),
        pytest.param("logs", {"tail": "-1"}, "tail", id="logs-tail-negative"),
        pytest.param("logs", {"tail": "ten"}, "tail", id="logs-tail-text"),
        pytest.param("logs", {"follow": "maybe"}, "follow", id="logs-follow"),
        pytest.param("workers", {"status": "sleepy"}, "status", id="workers-status"),
        pytest.param("workers", {"page_size": "0"}, "page_size", id="workers-page_size"),
    ],
)
async def test_bad_query_parameters_are_400(api, route, params, hint):
    job_id = await queued_job(api)
    path = f"jobs/{job_id}/logs" if route == "logs" else route
    before = await snapshot(api)

    resp = await api("GET", path, params=params, timeout=10)

    err = assert_error(resp, 400, "BAD_REQUEST")
    assert hint in err["message"], err
    assert await snapshot(api) == before


async def test_page_token_with_a_huge_offset_is_400(api):
    await queued_job(api)
    token = "eyJvIjogMTAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMH0"  # {"o": 10**30}

    resp = await api("GET", "jobs", params={"page_token": token})

    assert_error(resp, 400, "BAD_REQUEST")


# ------------------------------------------------------- routes, methods
@pytest.mark.parametrize("authenticated", [True, False], ids=["token", "anonymous"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "nope"),
        ("POST", "nope/deeper"),
        ("GET", "jobs/job_1/nope"),
        ("GET", "jobs/" + "j" * 65),
    ],
)
async def test_unknown_route_is_404_envelope(api, method, path, authenticated):
    before = await snapshot(api)

    resp = await api(method, path, token=authenticated)

    assert_error(resp, 404, "NOT_FOUND")
    assert await snapshot(api) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "jobs"), ("PUT", "jobs/{job}"), ("GET", "jobs/{job}/cancel"), ("POST", "health")],
)
async def test_wrong_method_is_405_envelope(api, method, path):
    job_id = await queued_job(api)
    before = await snapshot(api)

    resp = await api(method, path.format(job=job_id), json_body={} if method != "GET" else None)

    assert_error(resp, 405, "BAD_REQUEST")
    assert await snapshot(api) == before
    assert job_id in api.coordinator.runner.queue


async def test_wrong_method_names_the_allowed_ones(api):
    resp = await api("DELETE", "jobs")

    assert resp.status == 405
    assert {"GET", "POST"} <= {m.strip() for m in resp.headers.get("Allow", "").split(",")}


# --------------------------------------------------------- NUL characters
_NUL_BUG = (
    "BUG: PostgreSQL text columns reject NUL; store.py writes {what} unchecked, "
    "so psycopg raises DataError and {effect}"
)


async def test_cancel_reason_with_nul_loses_nothing(api, request):
    job_id = await queued_job(api)

    resp = await api("POST", f"jobs/{job_id}/cancel", json_body={"reason": "stop\u0000now"})

    job = (await api("GET", f"jobs/{job_id}")).json
    assert job["status"] in ("QUEUED", "CANCELLED"), job
    if job["status"] == "QUEUED":  # refused: the job must still be dispatchable
        assert job_id in api.coordinator.runner.queue, "the job is stored QUEUED but never runs"
        assert_error(resp, {400, 422}, None)
    else:
        assert resp.status == 200, resp.text


async def test_key_name_with_nul_is_not_a_server_error(api, request):
    before = await snapshot(api)

    resp = await api("POST", "keys", json_body={"user_id": "bob", "name": "laptop\u0000"})

    assert resp.status in (201, 422), resp.text
    if resp.status == 422:
        assert_error(resp, 422, "VALIDATION_ERROR")
        assert await snapshot(api) == before


async def test_job_printing_nul_still_finishes_with_its_logs(api, request):
    script = "print('a\\x00b', flush=True)\nprint('after', flush=True)\n"
    resp = await api("POST", "jobs", json_body={"name": "nul-out", "script": script})
    job_id = resp.json["job_id"]

    job = await api.wait_job(job_id, {"COMPLETED", "FAILED"}, timeout=15)

    assert job["status"] == "COMPLETED", job
    assert "after" in job["output"]
    logs = await api(
        "GET",
        f"jobs/{job_id}/logs",
        params={"follow": "false"},
        headers={"Accept": "application/json"},
    )
    assert "after" in [line["message"] for line in logs.json["items"]]
