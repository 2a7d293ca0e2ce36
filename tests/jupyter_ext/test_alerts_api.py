"""``/alerts`` against a real server: a real failed job raises a real alert."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from stratalab.testing import assert_error
from tests.jupyter_ext.ws_client import call, until, ws_connect

DOOMED = {"name": "doomed", "script": "raise SystemExit(3)", "max_retries": 0}
#: a platform rule that always holds (at least 0 workers lost): an alert only admins see.
ALWAYS = {
    "name": "always_on",
    "metric": "workers_lost",
    "comparison": ">=",
    "threshold": 0,
    "severity": "info",
}


@pytest.fixture
def stratalab_config() -> dict[str, Any]:
    """Evaluate often, and add a platform rule that always fires."""
    return {"alert_interval_s": 0.5, "alert_rules": [ALWAYS]}


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def wait_alert(api: Any, key: str | None, **params: str) -> dict[str, Any]:
    """The newest alert matching ``params`` (polled with a deadline)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        resp = await api("GET", "alerts", key=key, params=params)
        assert resp.status == 200, resp.text
        if resp.json["items"]:
            return dict(resp.json["items"][0])
        await asyncio.sleep(0.2)
    raise AssertionError(f"no alert matching {params}")


async def test_a_failed_job_raises_an_alert_in_the_api_and_on_the_websocket(api, jp_ws_fetch):
    ann = await api.create_key("ann")
    conn = await ws_connect(jp_ws_fetch, key=ann)
    try:
        assert (await call(conn, {"action": "subscribe", "topics": ["alerts"]}))["type"] == (
            "subscribed"
        )
        job_id = (await api("POST", "jobs", json_body=DOOMED, key=ann)).json["job_id"]
        await api.wait_job(job_id, {"FAILED"}, key=ann)

        seen = await until(
            conn, lambda m: m["type"] == "event" and m["data"].get("job_id") == job_id
        )
        pushed = seen[-1]["data"]
        assert pushed["event"] == "raised" and pushed["rule"] == "job_failed"
        assert pushed["status"] == "active" and pushed["severity"] == "warning"
        assert pushed["user_id"] == "ann" and pushed["subject"] == job_id
        assert f"job {job_id} (doomed) failed" in pushed["message"]
        # ann's socket never carried the platform alert
        assert all(m["data"]["user_id"] == "ann" for m in seen if m["type"] == "event")

        mine = (await api("GET", "alerts", key=ann)).json
        assert [a["id"] for a in mine["items"]] == [pushed["id"]] and mine["total"] == 1
        everyone = (await api("GET", "alerts")).json["items"]  # the owner's token: admin
        assert {"job_failed", "always_on"} <= {a["rule"] for a in everyone}

        acked = await api(
            "POST",
            f"alerts/{pushed['id']}/acknowledge",
            json_body={"comment": "bad script, fixing"},
            key=ann,
        )
        assert acked.status == 200, acked.text
        assert acked.json["status"] == "acknowledged"
        assert acked.json["acknowledged_by"] == "ann"
        assert acked.json["comment"] == "bad script, fixing"
        assert acked.json["acknowledged_at"].endswith("Z")
        on_socket = await until(conn, lambda m: m["data"].get("event") == "acknowledged")
        assert on_socket[-1]["data"]["id"] == pushed["id"]
        again = await api("POST", f"alerts/{pushed['id']}/acknowledge", key=ann)
        assert_error(again, 409, "CONFLICT")
        got = await api("GET", f"alerts/{pushed['id']}", key=ann)
        assert got.json["status"] == "acknowledged" and got.json["job_id"] == job_id
    finally:
        conn.close()


async def test_alert_filters_bad_parameters_and_other_users(api):
    ann, bob = await api.create_key("ann"), await api.create_key("bob")
    job_id = (await api("POST", "jobs", json_body=DOOMED, key=ann)).json["job_id"]
    alert = await wait_alert(api, ann, rule="job_failed")
    platform = await wait_alert(api, None, rule="always_on")
    now = datetime.now(timezone.utc)

    async def ids(**params: str) -> list[str]:
        resp = await api("GET", "alerts", key=ann, params=params)
        assert resp.status == 200, resp.text
        return [a["id"] for a in resp.json["items"]]

    assert alert["subject"] == job_id and platform["user_id"] is None
    assert await ids(severity="warning,critical") == [alert["id"]]
    assert await ids(severity="critical") == []
    assert await ids(status="active") == [alert["id"]]
    assert await ids(status="resolved,acknowledged") == []
    assert await ids(**{"from": iso(now - timedelta(hours=1)), "to": iso(now)}) == [alert["id"]]
    assert await ids(**{"from": iso(now + timedelta(hours=1))}) == []
    assert await ids(to="2020-01-01T00:00:00") == []  # no zone: UTC

    for params in (
        {"from": "yesterday"},
        {"to": "2026-13-01T00:00:00Z"},
        {"from": iso(now), "to": iso(now - timedelta(hours=1))},
        {"severity": "fatal"},
        {"status": "open"},
        {"page_size": "0"},
    ):
        resp = await api("GET", "alerts", key=ann, params=params)
        assert_error(resp, 400, "BAD_REQUEST")

    # another user's alert does not exist for bob; platform alerts are for admins
    assert_error(await api("GET", f"alerts/{alert['id']}", key=bob), 404, "NOT_FOUND")
    ack = await api("POST", f"alerts/{alert['id']}/acknowledge", key=bob)
    assert_error(ack, 404, "NOT_FOUND")
    assert (await api("GET", "alerts", key=bob)).json["total"] == 0
    assert_error(await api("GET", f"alerts/{platform['id']}", key=ann), 404, "NOT_FOUND")
    long_comment = {"comment": "x" * 2001}
    too_long = await api("POST", f"alerts/{alert['id']}/acknowledge", json_body=long_comment)
    assert_error(too_long, 422, "VALIDATION_ERROR")
    assert_error(await api("GET", "alerts", token=False), 401, "AUTH_REQUIRED")

    rules = (await api("GET", "alerts/rules", key=bob)).json
    by_name = {r["name"]: r for r in rules["items"]}
    assert by_name["always_on"]["threshold"] == 0 and by_name["job_failed"]["enabled"]
    assert {"worker_lost", "memory_high", "queue_wait", "failed_jobs"} <= set(by_name)
    assert rules["interval_s"] == 0.5
