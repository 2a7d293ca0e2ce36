"""``c.jobs``: submit work, find it, follow it, and steer it.

A job is submitted with :meth:`Jobs.submit`, watched with :meth:`Jobs.monitor`
(its state changes, live over SSE) or :meth:`Jobs.stream_logs` (its output,
live), and awaited with :meth:`Jobs.wait` (with a progress bar in a notebook).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, closing
from typing import TYPE_CHECKING, Any

from stratalab.notebook.errors import WaitTimeout
from stratalab.notebook.resource import AsyncResource, SyncResource, collect, seg, to_frame
from stratalab.notebook.transport import Op, Request, Sleep, SSEEvent
from stratalab.notebook.types import Job, JobUpdate, LogLine, SubmitResult, TimelineEntry

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

#: states a job does not leave.
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


def submit_request(
    name: str,
    script: str | None,
    *,
    entrypoint: str | None,
    args: list[str] | None,
    env: dict[str, str] | None,
    cpu: int | None,
    memory_gb: float | None,
    gpu: int | None,
    priority: int | None,
    max_retries: int | None,
    metadata: dict[str, Any] | None,
    project_id: str | None,
    type: str,
    fields: dict[str, Any],
) -> Request:
    """``POST /jobs``: only what the caller set, so the server's defaults apply."""
    given = {
        "script": script,
        "entrypoint": entrypoint,
        "args": args,
        "env": env,
        "cpu": cpu,
        "memory_gb": memory_gb,
        "gpu": gpu,
        "priority": priority,
        "max_retries": max_retries,
        "metadata": metadata,
        "project_id": project_id,
    }
    body = {"name": name, "type": type, **{k: v for k, v in given.items() if v is not None}}
    return Request("POST", "/jobs", json={**body, **fields})


def list_params(
    status: str | list[str] | None, type: str | list[str] | None, user_id: str | None, order_by: str
) -> dict[str, Any]:
    """Query parameters of ``GET /jobs``."""
    return {"status": status, "type": type, "user_id": user_id, "order_by": order_by}


def logs_request(job_id: str, *, tail: int, level: str, follow: bool) -> Request:
    """``GET /jobs/{id}/logs``: JSON for a snapshot, SSE to follow."""
    params = {"follow": str(follow).lower(), "tail": tail, "level": level}
    headers = None if follow else {"Accept": "application/json"}
    return Request("GET", f"/jobs/{seg(job_id)}/logs", params=params, headers=headers)


def wait_op(job_id: str, *, timeout: float | None, poll_s: float, progress: bool) -> Op[Job]:
    """Poll ``GET /jobs/{id}`` until the job ends, showing its state in a tqdm bar."""
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=100, desc=job_id, bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}")
    try:
        while True:
            job: Job = yield Request("GET", f"/jobs/{seg(job_id)}")
            if bar is not None:
                _show(bar, job_id, job)
            if job["status"] in TERMINAL:
                if bar is not None:
                    bar.n = 100
                    bar.refresh()
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} is still {job['status']} after {timeout} s")
            yield Sleep(poll_s)
    finally:
        if bar is not None:
            bar.close()


def _show(bar: Any, job_id: str, job: Job) -> None:
    """State in the description; a training job's percent, loss and accuracy on the bar."""
    note = job.get("why_pending") or job.get("worker_id") or ""
    bar.set_description_str(f"{job_id}: {job['status']} {note}".strip())
    progress = job.get("progress") or {}
    if progress.get("percent_complete") is not None:
        bar.n = float(progress["percent_complete"])
        shown = {
            "round": progress.get("current_round"),
            "loss": progress.get("current_loss"),
            "val_acc": progress.get("val_accuracy"),
        }
        bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items() if v is not None}, refresh=False)
    bar.refresh()


def job_update(job_id: str, ev: SSEEvent, status: str) -> JobUpdate | None:
    """A :class:`JobUpdate` from one ``/jobs/{id}/events`` event (None for others)."""
    data = ev.data if isinstance(ev.data, dict) else {}
    if ev.event == "state":
        return JobUpdate(
            job_id=job_id,
            event="state",
            status=str(data.get("to_state", status)),
            from_state=data.get("from_state"),
            reason=data.get("reason"),
            ts=data.get("ts"),
            worker=data.get("worker"),
            data=data,
        )
    if ev.event == "update":
        return JobUpdate(
            job_id=job_id,
            event="update",
            status=str(data.get("status", status)),
            from_state=None,
            reason=None,
            ts=None,
            worker=None,
            data=data,
        )
    return None


class Jobs(SyncResource):
    """Jobs: ``c.jobs.submit(...)``, ``c.jobs.list()``, ``c.jobs.monitor(id)``, ..."""

    def submit(
        self,
        name: str,
        script: str | None = None,
        *,
        entrypoint: str | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        cpu: int | None = None,
        memory_gb: float | None = None,
        gpu: int | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        metadata: dict[str, Any] | None = None,
        project_id: str | None = None,
        type: str = "task",
        **fields: Any,
    ) -> SubmitResult:
        """Submit a job; it is stored before this returns.

        Parameters
        ----------
        name
            A label: letters, digits, ``-`` and ``_``.
        script
            Inline Python source to run (or give ``entrypoint``).
        entrypoint
            A ``.py`` file or a command line to run on the worker.
        args, env
            Command-line arguments and extra environment variables.
        cpu, memory_gb, gpu
            What the job needs on one worker (server defaults: 1 CPU, no GPU).
        priority
            1 (lowest) to 10 (most urgent); default 5.
        max_retries
            Retries after a failure (server default when None).
        fields
            Fields of other job types, passed through.

        Returns
        -------
        SubmitResult
            ``job_id``, ``status``, ``estimated_wait_seconds`` and the ``job``.
        """
        req = submit_request(
            name,
            script,
            entrypoint=entrypoint,
            args=args,
            env=env,
            cpu=cpu,
            memory_gb=memory_gb,
            gpu=gpu,
            priority=priority,
            max_retries=max_retries,
            metadata=metadata,
            project_id=project_id,
            type=type,
            fields=fields,
        )
        result: SubmitResult = self._run(req)
        return result

    def records(
        self,
        *,
        status: str | list[str] | None = None,
        type: str | list[str] | None = None,
        user_id: str | None = None,
        order_by: str = "-created_at",
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs matching the filters, as dicts (newest first by default)."""
        params = list_params(status, type, user_id, order_by)
        return list(self._run(collect("/jobs", params, limit)))

    def get(self, job_id: str) -> Job:
        """One job with its timeline."""
        job: Job = self._run(Request("GET", f"/jobs/{seg(job_id)}"))
        return job

    def cancel(self, job_id: str, reason: str | None = None) -> Job:
        """Cancel a job; a running one has its process tree killed."""
        body = {"reason": reason} if reason else None
        job: Job = self._run(Request("POST", f"/jobs/{seg(job_id)}/cancel", json=body))
        return job

    def retry(self, job_id: str, **resources: Any) -> SubmitResult:
        """Re-run a failed or cancelled job as a child job (``priority``, ``cpu``, ``gpu``...)."""
        req = Request("POST", f"/jobs/{seg(job_id)}/retry", json=resources or None)
        result: SubmitResult = self._run(req)
        return result

    def set_priority(self, job_id: str, priority: int) -> Job:
        """Change a job's priority (1-10)."""
        req = Request("PATCH", f"/jobs/{seg(job_id)}/priority", json={"priority": priority})
        job: Job = self._run(req)
        return job

    def events(self, job_id: str) -> list[TimelineEntry]:
        """The job's state transitions so far (its timeline)."""
        return list(self.get(job_id).get("timeline", []))

    def logs(self, job_id: str, *, tail: int = 100, level: str = "INFO") -> list[LogLine]:
        """The last ``tail`` lines of output (``level``: DEBUG, INFO, WARNING, ERROR)."""
        req = logs_request(job_id, tail=tail, level=level, follow=False)
        return list(self._run(req)["items"])

    def stream_logs(
        self, job_id: str, *, tail: int = 100, level: str = "INFO"
    ) -> Iterator[LogLine]:
        """The last ``tail`` lines, then new ones as they are printed, until the job ends."""
        req = logs_request(job_id, tail=tail, level=level, follow=True)
        with closing(self._client._transport.stream(req)) as events:
            for ev in events:
                if ev.event == "log":
                    yield ev.data
                elif ev.event == "end":
                    return

    def monitor(self, job_id: str) -> Iterator[JobUpdate]:
        """Every state change of the job (past ones first), live, until it ends.

        Ends after the job's final state, whether or not the server has closed the stream.
        """
        status = ""
        req = Request("GET", f"/jobs/{seg(job_id)}/events")
        with closing(self._client._transport.stream(req)) as events:
            for ev in events:
                if (update := job_update(job_id, ev, status)) is not None:
                    status = update["status"]
                    yield update
                    if status in TERMINAL:
                        return

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 0.5,
        progress: bool = False,
    ) -> Job:
        """Block until the job ends; return it. ``progress`` shows a tqdm bar.

        Raises
        ------
        WaitTimeout
            After ``timeout`` seconds (the job itself goes on).
        """
        job: Job = self._run(wait_op(job_id, timeout=timeout, poll_s=poll_s, progress=progress))
        return job

    def metrics(self, job_id: str, *, max_points: int | None = None) -> dict[str, Any]:
        """Training metrics of a job (``GET /jobs/{id}/metrics``)."""
        req = Request("GET", f"/jobs/{seg(job_id)}/metrics", params={"max_points": max_points})
        return dict(self._run(req))

    def plot_metrics(
        self, job_id: str, *, interval: float = 2.0, follow: bool = True
    ) -> go.FigureWidget:
        """A live Plotly figure of the job's loss (and other metrics) until it ends."""
        from stratalab.notebook.plots import MetricsPlot

        return MetricsPlot(self._client.connection, job_id, interval=interval, follow=follow).figure

    # `list` comes last: below it, `list[...]` in an annotation would name this method.
    def list(
        self,
        *,
        status: str | list[str] | None = None,
        type: str | list[str] | None = None,
        user_id: str | None = None,
        order_by: str = "-created_at",
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Jobs matching the filters as a DataFrame (``status`` may repeat: a list)."""
        rows = self.records(
            status=status, type=type, user_id=user_id, order_by=order_by, limit=limit
        )
        return to_frame(rows, Job)


class AsyncJobs(AsyncResource):
    """The asyncio twin of :class:`Jobs`; same methods, awaited."""

    async def submit(
        self,
        name: str,
        script: str | None = None,
        *,
        entrypoint: str | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        cpu: int | None = None,
        memory_gb: float | None = None,
        gpu: int | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        metadata: dict[str, Any] | None = None,
        project_id: str | None = None,
        type: str = "task",
        **fields: Any,
    ) -> SubmitResult:
        """See :meth:`Jobs.submit`."""
        req = submit_request(
            name,
            script,
            entrypoint=entrypoint,
            args=args,
            env=env,
            cpu=cpu,
            memory_gb=memory_gb,
            gpu=gpu,
            priority=priority,
            max_retries=max_retries,
            metadata=metadata,
            project_id=project_id,
            type=type,
            fields=fields,
        )
        result: SubmitResult = await self._run(req)
        return result

    async def records(
        self,
        *,
        status: str | list[str] | None = None,
        type: str | list[str] | None = None,
        user_id: str | None = None,
        order_by: str = "-created_at",
        limit: int | None = None,
    ) -> list[Job]:
        """See :meth:`Jobs.records`."""
        params = list_params(status, type, user_id, order_by)
        return list(await self._run(collect("/jobs", params, limit)))

    async def get(self, job_id: str) -> Job:
        """See :meth:`Jobs.get`."""
        job: Job = await self._run(Request("GET", f"/jobs/{seg(job_id)}"))
        return job

    async def cancel(self, job_id: str, reason: str | None = None) -> Job:
        """See :meth:`Jobs.cancel`."""
        body = {"reason": reason} if reason else None
        job: Job = await self._run(Request("POST", f"/jobs/{seg(job_id)}/cancel", json=body))
        return job

    async def retry(self, job_id: str, **resources: Any) -> SubmitResult:
        """See :meth:`Jobs.retry`."""
        req = Request("POST", f"/jobs/{seg(job_id)}/retry", json=resources or None)
        result: SubmitResult = await self._run(req)
        return result

    async def set_priority(self, job_id: str, priority: int) -> Job:
        """See :meth:`Jobs.set_priority`."""
        req = Request("PATCH", f"/jobs/{seg(job_id)}/priority", json={"priority": priority})
        job: Job = await self._run(req)
        return job

    async def events(self, job_id: str) -> list[TimelineEntry]:
        """See :meth:`Jobs.events`."""
        return list((await self.get(job_id)).get("timeline", []))

    async def logs(self, job_id: str, *, tail: int = 100, level: str = "INFO") -> list[LogLine]:
        """See :meth:`Jobs.logs`."""
        req = logs_request(job_id, tail=tail, level=level, follow=False)
        return list((await self._run(req))["items"])

    async def stream_logs(
        self, job_id: str, *, tail: int = 100, level: str = "INFO"
    ) -> AsyncIterator[LogLine]:
        """See :meth:`Jobs.stream_logs`."""
        req = logs_request(job_id, tail=tail, level=level, follow=True)
        async with aclosing(self._client._transport.stream(req)) as events:
            async for ev in events:
                if ev.event == "log":
                    yield ev.data
                elif ev.event == "end":
                    return

    async def monitor(self, job_id: str) -> AsyncIterator[JobUpdate]:
        """See :meth:`Jobs.monitor`."""
        status = ""
        req = Request("GET", f"/jobs/{seg(job_id)}/events")
        async with aclosing(self._client._transport.stream(req)) as events:
            async for ev in events:
                if (update := job_update(job_id, ev, status)) is not None:
                    status = update["status"]
                    yield update
                    if status in TERMINAL:
                        return

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 0.5,
        progress: bool = False,
    ) -> Job:
        """See :meth:`Jobs.wait`."""
        op = wait_op(job_id, timeout=timeout, poll_s=poll_s, progress=progress)
        job: Job = await self._run(op)
        return job

    async def metrics(self, job_id: str, *, max_points: int | None = None) -> dict[str, Any]:
        """See :meth:`Jobs.metrics`."""
        req = Request("GET", f"/jobs/{seg(job_id)}/metrics", params={"max_points": max_points})
        return dict(await self._run(req))

    def plot_metrics(
        self, job_id: str, *, interval: float = 2.0, follow: bool = True
    ) -> go.FigureWidget:
        """See :meth:`Jobs.plot_metrics` (refreshes on the running loop)."""
        from stratalab.notebook.plots import MetricsPlot

        return MetricsPlot(self._client.connection, job_id, interval=interval, follow=follow).figure

    # `list` comes last: below it, `list[...]` in an annotation would name this method.
    async def list(
        self,
        *,
        status: str | list[str] | None = None,
        type: str | list[str] | None = None,
        user_id: str | None = None,
        order_by: str = "-created_at",
        limit: int | None = None,
    ) -> pd.DataFrame:
        """See :meth:`Jobs.list`."""
        rows = await self.records(
            status=status, type=type, user_id=user_id, order_by=order_by, limit=limit
        )
        return to_frame(rows, Job)
