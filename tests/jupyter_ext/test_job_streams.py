"""Job event and log streams subscribe before they read, so no transition is missed."""

from __future__ import annotations

import json
from typing import Any

GPU_JOB = {"name": "needs-gpu", "script": "pass", "gpu": 1}  # stays QUEUED: no GPU here


def events_of(text: str) -> list[tuple[str, Any]]:
    """(event, data) pairs of an SSE body."""
    out = []
    for frame in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def cancel_right_after_reading(api: Any, monkeypatch: Any) -> None:
    """The job ends between the stream's read of it and what follows (the old race)."""
    c = api.coordinator
    read = c.owned_job

    async def racing(principal: Any, job_id: str) -> Any:
        job = await read(principal, job_id)  # the state as read: QUEUED
        await c.cancel_job(job, "cancelled while the stream started")
        return job

    monkeypatch.setattr(c, "owned_job", racing)


async def test_events_stream_ends_when_the_job_ended_during_its_start(api, monkeypatch):
    job_id = (await api("POST", "jobs", json_body=GPU_JOB)).json["job_id"]
    cancel_right_after_reading(api, monkeypatch)

    resp = await api("GET", f"jobs/{job_id}/events", timeout=20)

    assert resp.status == 200, resp.text
    states = [d["to_state"] for e, d in events_of(resp.text) if e == "state"]
    assert states == ["PENDING", "QUEUED", "CANCELLED"]  # each once, and the stream ended


async def test_log_follower_ends_when_the_job_ended_during_its_start(api, monkeypatch):
    job_id = (await api("POST", "jobs", json_body=GPU_JOB)).json["job_id"]
    cancel_right_after_reading(api, monkeypatch)

    resp = await api("GET", f"jobs/{job_id}/logs", params={"follow": "true"}, timeout=20)

    assert resp.status == 200, resp.text
    assert events_of(resp.text)[-1] == ("end", {"status": "CANCELLED"})
