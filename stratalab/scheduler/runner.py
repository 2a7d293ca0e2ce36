"""Run queued jobs on Dask and follow them to the end.

The runner owns the in-memory queue (rebuilt from the store on start), the
set of jobs holding capacity, and the Dask futures. Every state change goes
through the store first (commit, then publish), so a restart finds the truth
in the database. A worker that disappears while running a job costs that job
one retry, and the dispatcher places it on a live worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from distributed import Client, Future

from stratalab.ids import as_utc, utcnow
from stratalab.kernels import task as task_kernel
from stratalab.kernels import topics
from stratalab.scheduler.cluster import WorkerInfo
from stratalab.scheduler.db import Job
from stratalab.scheduler.dispatcher import QueuedJob, Request, WorkerSlot, plan
from stratalab.scheduler.events import EventBus
from stratalab.scheduler.joblogs import ERROR, INFO, LogSink, clean_text
from stratalab.scheduler.states import JobState
from stratalab.scheduler.store import Store
from stratalab.scheduler.views import timeline_entry

if TYPE_CHECKING:
    from stratalab.scheduler.usage import UsageRecorder

logger = logging.getLogger(__name__)

T = TypeVar("T")
DbCall = Callable[..., Awaitable[Any]]

_S = JobState


@dataclass
class ActiveJob:
    """A job that holds capacity on a worker."""

    job_id: str
    user_id: str
    address: str
    attempt: int
    request: Request
    future: Future | None = None
    state: JobState = JobState.SCHEDULING
    cancel_requested: bool = False
    #: serialises the transitions of this one job (start events vs. its end).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: the job's project, which its usage record carries.
    project_id: str | None = None


def request_of(job: Job) -> Request:
    """The capacity a stored job asks for."""
    res = job.resources or {}
    return Request(
        cpu=int(res.get("cpu", 1)),
        memory_gb=float(res.get("memory_gb", 0.0)),
        gpu=int(res.get("gpu", 0)),
    )


class JobRunner:
    """The queue, the dispatcher loop, and the life of each running job."""

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        db: DbCall,
        workdir_root: Path,
        aging_interval_s: float,
        dispatch_interval_s: float = 1.0,
        log_flush_interval_s: float = 0.2,
    ) -> None:
        self.store = store
        self.bus = bus
        self._db = db
        self.workdir_root = workdir_root
        #: seconds of waiting that lift a job by one priority level.
        self.aging_interval_s = aging_interval_s
        self.dispatch_interval_s = dispatch_interval_s
        #: shortest gap between passes, so submission floods share one pass.
        self.min_pass_interval_s = 0.02
        self.log_flush_interval_s = log_flush_interval_s
        self.client: Client | None = None
        #: queued jobs by id.
        self.queue: dict[str, QueuedJob] = {}
        #: jobs holding capacity, by id.
        self.active: dict[str, ActiveJob] = {}
        #: live workers by address (refreshed by the coordinator's monitor).
        self.workers: dict[str, WorkerInfo] = {}
        #: worker ids an operator drained.
        self.drained: set[str] = set()
        #: why each queued job waits, from the last dispatch pass.
        self.why_pending: dict[str, str] = {}
        #: aged priority of each queued job, from the last dispatch pass.
        self.priority_aged: dict[str, float] = {}
        #: dispatch passes and decisions made, for metrics.
        self.passes = 0
        #: capacity other job kinds hold (a training run's thread on each of its
        #: workers), so task jobs are not placed where a round would wait for them.
        self.held_elsewhere: Callable[[], list[tuple[str, Request]]] = list
        #: recent run times (seconds) of finished jobs, for wait estimates.
        self.recent_runtimes: list[float] = []
        self._seq = 0
        self._wake = asyncio.Event()
        #: job output lines: live to subscribers, batched to the store.
        self.logs = LogSink(store=store, bus=bus, db=db, flush_interval_s=log_flush_interval_s)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        #: where each ended attempt's measured CPU time goes (the coordinator sets it).
        self.usage: UsageRecorder | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self, client: Client) -> None:
        """Subscribe to worker events and start the dispatcher and log flusher."""
        self.client = client
        client.subscribe_topic(topics.LOGS, self.logs.on_worker_event)
        client.subscribe_topic(topics.LIFECYCLE, self._on_lifecycle_event)
        self._spawn(self._dispatch_loop())
        self._spawn(self.logs.run(lambda: self._closing))

    async def stop(self) -> None:
        """Stop loops and flush buffered log lines; running jobs stay as stored."""
        self._closing = True
        self._wake.set()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.logs.flush()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_task_error)

    def wake(self) -> None:
        """Ask for a dispatch pass soon (work arrived or capacity freed)."""
        self._wake.set()

    # ---------------------------------------------------------------- queue
    def enqueue(self, job: Job) -> None:
        """Put a stored QUEUED job into the in-memory queue."""
        self._seq += 1
        queued_at = as_utc(job.queued_at or job.created_at).timestamp()
        self.queue[job.id] = QueuedJob(
            job.id, job.priority, queued_at, self._seq, request_of(job), job.user_id
        )
        self.wake()

    def estimated_wait(self) -> float | None:
        """Queue depth times the mean recent run time, over the worker slots."""
        runtimes = self.recent_runtimes
        if not runtimes:
            return None
        slots = sum(w.nthreads for w in self.workers.values()) or 1
        return round(len(self.queue) * (sum(runtimes) / len(runtimes)) / slots, 3)

    def dequeue(self, job_id: str) -> None:
        """Forget a job that left the queue, and its queue-only fields."""
        self.queue.pop(job_id, None)
        self.why_pending.pop(job_id, None)
        self.priority_aged.pop(job_id, None)

    def set_priority(self, job_id: str, priority: int) -> None:
        """Change a queued job's priority in place."""
        q = self.queue.get(job_id)
        if q is not None:
            self.queue[job_id] = QueuedJob(q.id, priority, q.queued_at, q.seq, q.request, q.user_id)
            self.wake()

    def slots(self) -> list[WorkerSlot]:
        """Every live worker's capacity minus what active jobs hold."""
        slots = {
            addr: WorkerSlot(
                address=addr,
                nthreads=w.nthreads,
                memory_gb=(w.memory_limit / 2**30) if w.memory_limit else float("inf"),
                gpus=w.gpus,
                accepting=w.id not in self.drained and w.status == "running",
            )
            for addr, w in self.workers.items()
        }
        for a in self.active.values():
            if a.address in slots:
                slots[a.address].take(a.request)
        for address, request in self.held_elsewhere():
            if address in slots:
                slots[address].take(request)
        return list(slots.values())

    def dispatch_once(self) -> list[tuple[str, str]]:
        """One pass: decide placements and refresh every queued job's reason."""
        self.passes += 1
        p = plan(self.queue.values(), self.slots(), time.time(), self.aging_interval_s)
        self.why_pending, self.priority_aged = p.pending, p.aged
        for job_id, _ in p.placements:
            self.dequeue(job_id)
        return p.placements

    async def _dispatch_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.dispatch_interval_s)
            # coalesce bursts of wake-ups (a flood of submissions) into one pass
            await asyncio.sleep(self.min_pass_interval_s)
            self._wake.clear()
            if self.client is None:
                continue
            if not self.queue:
                self.why_pending, self.priority_aged = {}, {}
                continue
            for job_id, address in self.dispatch_once():
                try:
                    await self._launch(job_id, address)
                except Exception:
                    logger.exception("could not launch job %s", job_id)

    # ------------------------------------------------------------ transitions
    async def transition(self, job_id: str, to: JobState, *, reason: str, **kw: Any) -> Job:
        """Commit a state change, then publish it."""
        job, ev = await self._db(self.store.transition, job_id, to, reason=reason, **kw)
        self.bus.publish(
            "jobs",
            {
                "job_id": job_id,
                "user_id": job.user_id,
                "status": to.value,
                "event": timeline_entry(ev),
            },
        )
        return job

    def syslog(self, job_id: str, attempt: int, message: str, level: int = INFO) -> None:
        """A coordinator note in the job's log (placed, lost worker, exit code)."""
        self.logs.system(job_id, attempt, message, level)

    async def fail_or_retry(self, job: Job, reason: str, **updates: Any) -> Job:
        """Re-queue a job that failed while retries remain; otherwise FAILED."""
        if job.retry_count < job.max_retries:
            n = job.retry_count + 1
            job = await self.transition(
                job.id,
                _S.QUEUED,
                reason=f"{reason}; retry {n} of {job.max_retries}",
                retry_count=n,
                queued_at=utcnow(),
                worker=None,
                **updates,
            )
            self.enqueue(job)
            return job
        return await self.transition(
            job.id,
            _S.FAILED,
            reason=f"{reason}; no retries left",
            ended_at=utcnow(),
            error=reason,
            **updates,
        )

    # --------------------------------------------------------------- running
    async def _launch(self, job_id: str, address: str) -> None:
        worker = self.workers.get(address)
        wid = worker.id if worker else address
        job = await self.transition(
            job_id,
            _S.SCHEDULING,
            reason=f"placed on worker {wid}",
            expect={_S.QUEUED},
            at_worker=address,
            worker=address,
            attempt=Job.attempt + 1,
        )
        active = ActiveJob(job.id, job.user_id, address, job.attempt, request_of(job))
        active.project_id = job.project_id
        self.active[job.id] = active
        self.syslog(job.id, job.attempt, f"attempt {job.attempt} placed on {wid} ({address})")
        spec = {
            **(job.spec or {}),
            "job_id": job.id,
            "attempt": job.attempt,
            "workdir_root": str(self.workdir_root),
        }
        assert self.client is not None
        res = {"GPU": active.request.gpu} if active.request.gpu else None
        active.future = self.client.submit(
            task_kernel.run_task,
            spec,
            key=f"stratalab-{job.id}-{job.attempt}",
            workers=[address],
            allow_other_workers=False,
            resources=res,
            pure=False,
        )
        self._spawn(self._follow(active, active.future))

    async def _follow(self, active: ActiveJob, future: Future) -> None:
        """Wait for a job's Dask future and record how it ended."""
        result: dict[str, Any] | None = None
        error: str | None = None
        try:
            result = await future
        except asyncio.CancelledError:
            if self._closing:
                raise
            error = "the Dask task was cancelled"
        except Exception as exc:  # noqa: BLE001 - whatever the task raised on the worker
            error = f"{type(exc).__name__}: {exc}"
        await self._finish(active, result, error)

    async def _mark_running(self, active: ActiveJob, info: dict[str, Any]) -> None:
        """SCHEDULING -> PREPARING -> RUNNING, once, when the worker starts it."""
        if active.state == _S.SCHEDULING:
            await self.transition(
                active.job_id,
                _S.PREPARING,
                reason="worker preparing the working directory",
                at_worker=active.address,
            )
            active.state = _S.PREPARING
        if active.state == _S.PREPARING:
            pid = info.get("pid")
            await self.transition(
                active.job_id,
                _S.RUNNING,
                reason=f"process {pid} started" if pid else "started",
                at_worker=active.address,
                started_at=utcnow(),
            )
            active.state = _S.RUNNING

    def _current(self, job_id: str, attempt: int) -> ActiveJob | None:
        active = self.active.get(job_id)
        if active is None or active.attempt != attempt:
            return None
        return active

    async def _finish(
        self, active: ActiveJob, result: dict[str, Any] | None, error: str | None
    ) -> None:
        async with active.lock:
            if self._current(active.job_id, active.attempt) is not active:
                return  # superseded: cancelled, re-queued after a lost worker, ...
            if active.cancel_requested:
                return
            await self.logs.flush()
            if result is not None:
                await self._mark_running(active, result)
            exit_code = None if result is None else int(result.get("exit_code", -1))
            output = None if result is None else clean_text(str(result.get("output_tail", "")))
            self.active.pop(active.job_id, None)
            if self.usage is not None:
                self.usage.task_ended(active, result, failed=exit_code != 0)
            if result is not None and exit_code == 0:
                runtime = float(result.get("ended_at", 0)) - float(result.get("started_at", 0))
                self.recent_runtimes = [*self.recent_runtimes[-99:], max(runtime, 0.0)]
                self.syslog(active.job_id, active.attempt, "exit code 0")
                await self.transition(
                    active.job_id,
                    _S.COMPLETED,
                    reason="exit code 0",
                    ended_at=utcnow(),
                    exit_code=0,
                    output=output,
                    error=None,
                )
            else:
                reason = error or f"exit code {exit_code}"
                self.syslog(active.job_id, active.attempt, reason, ERROR)
                job = await self._db(self.store.get_job, active.job_id)
                await self.fail_or_retry(job, reason, exit_code=exit_code, output=output)
            self.wake()

    async def requeue_active(self, job_id: str, reason: str, *, count_retry: bool) -> None:
        """Take a running job back to the queue (lost worker, forced drain)."""
        active = self.active.get(job_id)
        if active is None:
            return
        async with active.lock:
            if self.active.get(job_id) is not active:
                return
            self.active.pop(job_id, None)
            await self._kill(active)
            self.syslog(job_id, active.attempt, reason, ERROR)
            job = await self._db(self.store.get_job, job_id)
            if count_retry:
                await self.fail_or_retry(job, reason)
            else:
                job = await self.transition(
                    job_id, _S.QUEUED, reason=reason, queued_at=utcnow(), worker=None
                )
                self.enqueue(job)
        self.wake()

    async def cancel_active(self, job_id: str, reason: str) -> bool:
        """Kill a running job's process tree and mark it CANCELLED."""
        active = self.active.get(job_id)
        if active is None:
            return False
        async with active.lock:
            if self.active.get(job_id) is not active:
                return False
            active.cancel_requested = True
            await self._kill(active)
            self.active.pop(job_id, None)
            self.syslog(job_id, active.attempt, reason)
            await self.transition(job_id, _S.CANCELLED, reason=reason, ended_at=utcnow())
        self.wake()
        return True

    async def _kill(self, active: ActiveJob) -> None:
        """Stop the job's process tree on its worker and drop the future."""
        if self.client is None:
            return
        if active.address in self.workers:
            try:
                await asyncio.wait_for(
                    self.client.run(
                        task_kernel.kill_job,
                        active.job_id,
                        workers=[active.address],
                        on_error="return",
                    ),
                    timeout=15,
                )
            except (asyncio.TimeoutError, OSError) as exc:
                logger.warning(
                    "could not reach %s to kill %s: %s", active.address, active.job_id, exc
                )
        if active.future is not None:
            with contextlib.suppress(Exception):
                await self.client.cancel([active.future], force=True)

    async def kill_everywhere(self, job_ids: list[str]) -> None:
        """Kill leftovers of jobs on every worker (after a coordinator restart)."""
        if self.client is None or not job_ids:
            return
        for job_id in job_ids:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.client.run(task_kernel.kill_job, job_id, on_error="return"), 15
                )

    # ---------------------------------------------------- worker membership
    async def workers_changed(self, workers: dict[str, WorkerInfo]) -> None:
        """Adopt a fresh worker list; re-queue the jobs of workers that left."""
        gone = set(self.workers) - set(workers)
        self.workers = workers
        for active in [a for a in self.active.values() if a.address in gone]:
            await self.requeue_active(
                active.job_id, f"worker {active.address} lost", count_retry=True
            )
        self.wake()

    # ------------------------------------------------------- worker events
    def _on_lifecycle_event(self, event: tuple[float, dict[str, Any]]) -> None:
        _, msg = event
        active = self._current(str(msg.get("job_id")), int(msg.get("attempt", -1)))
        if active is not None and msg.get("event") == "started":
            self._spawn(self._started(active, msg))

    async def _started(self, active: ActiveJob, msg: dict[str, Any]) -> None:
        async with active.lock:
            if self._current(active.job_id, active.attempt) is active:
                await self._mark_running(active, msg)


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("background task failed", exc_info=task.exception())
