"""Routes for jobs: submit, list, inspect, cancel, retry, re-prioritise, stream."""

from __future__ import annotations

import time

from tornado import web

from stratalab.errors import BadRequest
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.jupyter_ext.sse import KEEPALIVE_S, SSEHandler
from stratalab.scheduler.schemas import CancelRequest, JobSubmit, PriorityUpdate, RetryRequest
from stratalab.scheduler.states import TERMINAL, JobState
from stratalab.scheduler.training_schemas import TrainingSubmit
from stratalab.scheduler.views import level_number, log_out, timeline_entry

_ORDER_BY = {
    "created_at",
    "-created_at",
    "priority",
    "-priority",
    "name",
    "-name",
    "status",
    "-status",
}
_STATES = {s.value for s in JobState}
_TYPES = {"task", "training", "evaluation", "batch_inference", "inference", "benchmark"}


class JobsHandler(ApiHandler):
    """``/jobs``."""

    async def get(self) -> None:
        """List jobs, filtered by ``status``, ``type``, ``user_id``; ordered by ``order_by``."""
        states = [s.upper() for s in self.get_query_arguments("status")]
        if bad := sorted(set(states) - _STATES):
            raise BadRequest(f"unknown status {bad[0]}", details={"allowed": sorted(_STATES)})
        types = self.get_query_arguments("type")
        if bad := sorted(set(types) - _TYPES):
            raise BadRequest(f"unknown type {bad[0]}", details={"allowed": sorted(_TYPES)})
        order_by = self.get_query_argument("order_by", "-created_at")
        if order_by not in _ORDER_BY:
            raise BadRequest("unknown order_by", details={"allowed": sorted(_ORDER_BY)})
        offset, size = self.page()
        items, total = await self.coordinator.list_jobs(
            self.principal(),
            states=states,
            types=types,
            user_id=self.get_query_argument("user_id", None),
            order_by=order_by.replace("status", "state"),
            offset=offset,
            limit=size,
        )
        self.reply_page(items, total, offset, size)

    async def post(self) -> None:
        """Submit a job; it is committed before the 201."""
        data = self.json_body()
        if isinstance(data, dict) and data.get("type") == "training":
            training = self.body(TrainingSubmit)
            out = await self.coordinator.training.submit(self.principal(), training)
        else:
            out = await self.coordinator.submit(self.principal(), self.body(JobSubmit))
        self.reply(out, 201, location=f"{self.request.path}/{out['job_id']}")


class JobHandler(ApiHandler):
    """``/jobs/{id}``."""

    async def get(self, job_id: str) -> None:
        """One job with its timeline."""
        self.reply(await self.coordinator.get_job(self.principal(), job_id))


class JobCancelHandler(ApiHandler):
    """``/jobs/{id}/cancel``."""

    async def post(self, job_id: str) -> None:
        """Cancel a job; a running one has its processes killed."""
        req = self.body(CancelRequest, optional=True)
        self.reply(await self.coordinator.cancel(self.principal(), job_id, req.reason))


class JobRetryHandler(ApiHandler):
    """``/jobs/{id}/retry``."""

    async def post(self, job_id: str) -> None:
        """Re-run a failed or cancelled job as a child job."""
        req = self.body(RetryRequest, optional=True)
        out = await self.coordinator.retry(self.principal(), job_id, req)
        base = self.request.path.rsplit("/", 2)[0]
        self.reply(out, 201, location=f"{base}/{out['job_id']}")


class JobPriorityHandler(ApiHandler):
    """``/jobs/{id}/priority``."""

    async def patch(self, job_id: str) -> None:
        """Change a job's priority."""
        req = self.body(PriorityUpdate)
        self.reply(await self.coordinator.set_priority(self.principal(), job_id, req.priority))


class JobEventsHandler(SSEHandler):
    """``/jobs/{id}/events``: the timeline so far, then live transitions."""

    async def get(self, job_id: str) -> None:
        """Stream state changes until the job ends or the client leaves."""
        c, p = self.coordinator, self.principal()
        # subscribe first, then read: a transition between the two is in the
        # queue (and skipped by id if the read saw it too), never lost
        with c.bus.subscribe(["jobs"], accept=lambda e: e.data.get("job_id") == job_id) as sub:
            job = await c.owned_job(p, job_id)
            timeline = await c.db(c.store.job_events, job_id)
            self.start_stream()
            last = 0
            for ev in timeline:
                last = ev.id
                await self.send("state", timeline_entry(ev), ev.id)
            status = timeline[-1].to_state if timeline else job.state
            while not self.closed and JobState(status) not in TERMINAL:
                event = await sub.get(timeout=KEEPALIVE_S)
                if sub.take_lagged():  # events were dropped: catch up from the store
                    for ev in await c.db(c.store.job_events, job_id, after_id=last):
                        last, status = ev.id, ev.to_state
                        await self.send("state", timeline_entry(ev), ev.id)
                if event is None:
                    await self.keepalive()
                    continue
                entry = event.data.get("event")
                if entry is None:
                    status = event.data.get("status", status)
                    await self.send("update", event.data)
                elif entry["id"] > last:
                    last, status = entry["id"], entry["to_state"]
                    await self.send("state", entry, entry["id"])
        self.finish()


class JobLogsHandler(SSEHandler):
    """``/jobs/{id}/logs?follow&level&tail``: output lines as SSE (or JSON)."""

    async def get(self, job_id: str) -> None:
        """The last ``tail`` lines, then (``follow``) new ones until the job ends."""
        c, p = self.coordinator, self.principal()
        follow = self.query_bool("follow", True)
        tail = self.query_int("tail", 100, lo=0, hi=100_000)
        level_arg = self.get_query_argument("level", "INFO")
        min_level = level_number(level_arg)
        if min_level is None:
            raise BadRequest(
                "level must be DEBUG, INFO, WARNING or ERROR", details={"field": "level"}
            )

        def wanted(e: object) -> bool:
            data = getattr(e, "data", {})
            return bool(data.get("job_id") == job_id and data.get("level", 20) >= min_level)

        # subscribe first, then read the job and its stored lines: a line or the
        # final state change published in between is queued, and de-duplicated
        with c.bus.subscribe(["logs", "jobs"], accept=wanted, maxsize=10_000) as sub:
            job = await c.owned_job(p, job_id)
            await c.runner.logs.flush()
            rows = await c.db(c.store.job_logs, job_id, min_level=min_level, tail=tail)
            if "application/json" in self.request.headers.get("Accept", "") and not follow:
                self.reply({"items": [log_out(r) for r in rows], "status": job.state})
                return
            self.start_stream()
            seen = {_line_key(r) for r in rows}
            for r in rows:
                await self.send("log", log_out(r), r.id)
            status = job.state
            while follow and not self.closed and JobState(status) not in TERMINAL:
                event = await sub.get(timeout=KEEPALIVE_S)
                if lagged := sub.take_lagged():
                    await self.send("lagged", {"dropped": lagged})
                if event is None:
                    await self.keepalive()
                    continue
                if event.topic == "jobs":
                    status = event.data.get("status", status)
                    continue
                d = event.data
                if _line_key(d) in seen:
                    continue
                await self.send("log", log_out(d))
            # lines that raced with the final state change
            deadline = time.monotonic() + 0.5
            while follow and not self.closed and time.monotonic() < deadline:
                event = await sub.get(timeout=0.1)
                if (
                    event is not None
                    and event.topic == "logs"
                    and _line_key(event.data) not in seen
                ):
                    await self.send("log", log_out(event.data))
            if follow:
                await self.send("end", {"status": status})
        self.finish()


def _line_key(row: object) -> tuple[object, ...]:
    """What identifies a log line, stored (a row) or live (an event's dict).

    Output lines carry a sequence number per attempt and stream; coordinator
    notes ("system") all have seq 0, so their time and text tell them apart.
    """
    get = row.get if isinstance(row, dict) else (lambda k: getattr(row, k, None))
    if get("stream") == "system":
        return (get("attempt"), "system", get("ts"), get("message"))
    return (get("attempt"), get("stream"), get("seq"))


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The job routes under ``prefix``."""
    jid = r"(?P<job_id>[A-Za-z0-9_-]{1,64})"
    return [
        (f"{prefix}/jobs", JobsHandler),
        (f"{prefix}/jobs/{jid}", JobHandler),
        (f"{prefix}/jobs/{jid}/cancel", JobCancelHandler),
        (f"{prefix}/jobs/{jid}/retry", JobRetryHandler),
        (f"{prefix}/jobs/{jid}/priority", JobPriorityHandler),
        (f"{prefix}/jobs/{jid}/events", JobEventsHandler),
        (f"{prefix}/jobs/{jid}/logs", JobLogsHandler),
    ]
