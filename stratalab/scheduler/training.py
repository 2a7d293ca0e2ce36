"""Training jobs: accepting them, sharing workers between them, and their lifecycle.

The service keeps its own queue of training jobs (they hold several workers
each, unlike task jobs) and plans allocations with
:func:`~stratalab.scheduler.allocation.plan_allocation` whenever something
changes: a job arrives or ends, a worker joins or leaves, a reservation is
made. The rounds of one job are :class:`~stratalab.scheduler.training_loop.TrainingRun`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from distributed import Client
from pydantic import ValidationError

from stratalab.errors import (
    CannotPause,
    Conflict,
    NoTrainingDevices,
    ValidationFailed,
    validation_details,
)
from stratalab.ids import as_utc, new_id, utcnow
from stratalab.kernels import topics
from stratalab.scheduler.allocation import Demand, plan_allocation
from stratalab.scheduler.checkpoints import CheckpointStore
from stratalab.scheduler.config import CoordinatorConfig
from stratalab.scheduler.datasets import DatasetService
from stratalab.scheduler.db import Job
from stratalab.scheduler.dispatcher import Request
from stratalab.scheduler.events import EventBus
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.registry import ModelRegistry
from stratalab.scheduler.reservations import ReservationBook
from stratalab.scheduler.runner import JobRunner
from stratalab.scheduler.states import ACTIVE, TERMINAL, JobState
from stratalab.scheduler.store import Store
from stratalab.scheduler.training_loop import TrainingRun
from stratalab.scheduler.training_metrics import MetricsSink
from stratalab.scheduler.training_schemas import (
    PauseRequest,
    ResourceConfig,
    ResumeRequest,
    TrainingRequest,
)
from stratalab.scheduler.training_specs import TrainingSpecs, resources_of
from stratalab.scheduler.usage import UsageRecorder

logger = logging.getLogger(__name__)

_S = JobState
DbCall = Callable[..., Awaitable[Any]]
AcceptCall = Callable[[Job], Awaitable[None]]
#: the job type this module runs (the task runner leaves it alone).
TRAINING_TYPE = "training"


class TrainingService:
    """Accepts, schedules, pauses, resumes and preempts training jobs."""

    def __init__(
        self,
        *,
        config: CoordinatorConfig,
        store: Store,
        bus: EventBus,
        db: DbCall,
        runner: JobRunner,
        registry: ModelRegistry,
        checkpoints: CheckpointStore,
        datasets: DatasetService,
        accept: AcceptCall,
    ) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.db = db
        self.runner = runner
        self.registry = registry
        self.checkpoints = checkpoints
        self.reservations = ReservationBook(store)
        self.sink = MetricsSink(store, bus, db)
        runner.held_elsewhere = self.held
        self.specs = TrainingSpecs(store=store, registry=registry, db=db, datasets=datasets)
        self._accept = accept
        self._client: Client | None = None
        #: queued training jobs by id: (priority, queued_at, job spec, resources).
        self.queue: dict[str, Job] = {}
        #: jobs holding workers.
        self.running: dict[str, TrainingRun] = {}
        #: why each queued training job waits.
        self.why_pending: dict[str, str] = {}
        #: where rounds' and validations' measured work goes (the coordinator sets it).
        self.usage: UsageRecorder | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # ------------------------------------------------------------- lifecycle
    async def start(self, client: Client, leftovers: list[Job]) -> None:
        """Subscribe to worker metrics and resume jobs a stop cut off."""
        self._client = client
        client.subscribe_topic(topics.METRICS, self.sink.on_worker_event)
        await self.db(self.reservations.load)
        for stored in leftovers:
            job = stored
            if JobState(stored.state) in ACTIVE:
                job = await self.transition(
                    stored.id,
                    _S.QUEUED,
                    reason=f"the server stopped while the job was {stored.state}; "
                    "it resumes from its latest checkpoint",
                    queued_at=utcnow(),
                    worker=None,
                )
            elif stored.state == _S.PENDING.value:
                job = await self.transition(
                    stored.id, _S.QUEUED, reason="queued after restart", queued_at=utcnow()
                )
            self.queue[job.id] = job
        self._spawn(self._planner())
        self._spawn(self.sink.run(lambda: self._closing))
        self.wake()

    async def stop(self) -> None:
        """Stop planning and every run; jobs stay as stored and resume on start."""
        self._closing = True
        for run in list(self.running.values()):
            if run.task is not None:
                run.task.cancel()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        await self.sink.flush()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def client(self) -> Client:
        """The Dask client (the service is started)."""
        assert self._client is not None, "training service not started"
        return self._client

    def wake(self) -> None:
        """Ask for a planning pass soon."""
        self._wake.set()

    # ---------------------------------------------------------------- accept
    async def submit(self, principal: Principal, req: TrainingRequest) -> dict[str, Any]:
        """Check a training request, commit the job and queue it (the 201 body)."""
        spec = await self.specs.build(principal, req)
        rc = req.resource_config
        if rc.gpu and not any(w.gpus for w in self.runner.workers.values()):
            raise NoTrainingDevices(
                f"the job needs {rc.gpu} GPU(s) per worker and no worker has a GPU",
                details={"gpu": rc.gpu, "workers": len(self.runner.workers)},
            )
        if rc.reservation_id is not None:
            res = await self.db(self.reservations.get, principal, rc.reservation_id)
            if res.status != "active":
                raise Conflict(
                    f"reservation {res.id} is {res.status}", details={"status": res.status}
                )
        now = utcnow()
        job = Job(
            id=new_id("job"),
            user_id=principal.user_id,
            name=req.name,
            type=TRAINING_TYPE,
            state=_S.QUEUED.value,
            priority=req.priority,
            created_at=now,
            queued_at=now,
            updated_at=now,
            spec=spec,
            resources=spec["resources"],
            metadata_={"labels": req.labels},
            max_retries=self.config.default_max_retries
            if req.max_retries is None
            else req.max_retries,
            retry_count=0,
            attempt=0,
            project_id=req.project_id,
            progress={"percent_complete": 0.0, "total_samples": spec["total_samples"]},
        )
        return await self.accept(job)

    async def accept(self, job: Job) -> dict[str, Any]:
        """Commit a queued training job (new or a retry's child) and plan."""
        if job.resources.get("reservation_id"):
            await self.db(
                self.reservations.set_status, job.resources["reservation_id"], "claimed", job.id
            )
        await self._accept(job)
        self.queue[job.id] = job
        self.wake()
        await asyncio.sleep(0)
        return {
            "job_id": job.id,
            "status": job.state,
            "message": "training job accepted and queued",
            "estimated_devices": self.estimated_devices(job),
        }

    def estimated_devices(self, job: Job) -> int:
        """How many workers the job would get now, between min and max."""
        res = job.resources
        free = len(self.live_workers()) - sum(len(r.workers) for r in self.running.values())
        cap = res.get("max_devices") or len(self.live_workers())
        return max(int(res["min_devices"]), min(int(cap), max(free, 0)))

    # ------------------------------------------------------------- planning
    def live_workers(self) -> list[str]:
        """Workers that accept work (alive, running, not drained)."""
        return [
            a
            for a, w in self.runner.workers.items()
            if w.id not in self.runner.drained and w.status == "running"
        ]

    def trainable_workers(self) -> list[str]:
        """Live workers with a thread (and the GPUs) that task jobs do not hold.

        A round task on a worker whose threads all run task jobs would wait
        behind them, so such a worker is not offered to training.
        """
        used: dict[str, int] = {}
        for active in self.runner.active.values():
            used[active.address] = used.get(active.address, 0) + active.request.cpu
        return [
            a for a in self.live_workers() if self.runner.workers[a].nthreads - used.get(a, 0) >= 1
        ]

    def held(self) -> list[tuple[str, Request]]:
        """One thread (and its GPUs) on every worker a training run holds (for the task runner)."""
        return [
            (w, Request(cpu=1, memory_gb=0.0, gpu=int(run.spec["resources"].get("gpu") or 0)))
            for run in self.running.values()
            for w in run.workers
        ]

    def worker_ids(self, addresses: list[str]) -> list[str]:
        """Stable worker ids for addresses (for views and log lines)."""
        return [self.runner.workers[a].id if a in self.runner.workers else a for a in addresses]

    def free_workers(self, asking: TrainingRun) -> set[str]:
        """Live workers no other run holds and no foreign reservation keeps."""
        held = {w for r in self.running.values() if r is not asking for w in r.workers}
        reserved = self.reservations.held_workers(except_job=asking.job_id)
        return set(self.trainable_workers()) - held - reserved

    def priority_on(self, address: str) -> int:
        """The priority of the run holding a worker (0 if free): reservations take the lowest."""
        return max((r.priority for r in self.running.values() if address in r.workers), default=0)

    async def _planner(self) -> None:
        while not self._closing:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            try:
                expired = await self.db(self.reservations.expire)
                for rid in expired:
                    logger.info("reservation %s expired", rid)
                self.plan()
            except Exception:
                logger.exception("training planning pass failed")

    def _demand(
        self,
        job_id: str,
        priority: int,
        spec: dict[str, Any],
        order: float,
        run: TrainingRun | None,
    ) -> Demand:
        res = spec["resources"]
        rid = res.get("reservation_id")
        holding = self.reservations.holding
        return Demand(
            job_id=job_id,
            priority=priority,
            weight=float(spec.get("total_samples", 1)),
            min_devices=int(res["min_devices"]),
            max_devices=res.get("max_devices"),
            gpu=int(res.get("gpu") or 0),
            held=tuple(run.workers) if run else (),
            running=run is not None,
            order=order,
            reserved=tuple(holding[rid].workers) if rid in holding else (),
        )

    def plan(self) -> None:
        """One planning pass: start what fits, re-share workers, preempt what must give way."""
        if self._client is None:
            return
        demands = [
            self._demand(r.job_id, r.priority, r.spec, r.started, r) for r in self.running.values()
        ]
        demands += [
            self._demand(
                j.id, j.priority, j.spec, as_utc(j.queued_at or j.created_at).timestamp(), None
            )
            for j in self.queue.values()
        ]
        if not demands:
            self.why_pending = {}
            return
        claimed = {d.job_id for d in demands if d.reserved}
        unclaimed = {
            w
            for r in self.reservations.holding.values()
            if r.claimed_by not in claimed
            for w in r.workers
        }
        pool = [w for w in self.trainable_workers() if w not in unclaimed]
        gpus = {a: w.gpus for a, w in self.runner.workers.items()}
        allocation = plan_allocation(demands, pool, gpus)
        for job_id in allocation.preempt:
            run = self.running.get(job_id)
            if run is not None and not run.preempt:
                logger.info("preempting training job %s", job_id)
                run.preempt = True
        for job_id, target in allocation.targets.items():
            run = self.running.get(job_id)
            if run is not None:
                run.target = target
        held = {w for r in self.running.values() for w in r.workers}
        pending = dict(allocation.pending)
        busy = len(self.live_workers()) - len(self.trainable_workers())
        if busy:
            pending = {j: f"{r}; {busy} worker(s) busy with task jobs" for j, r in pending.items()}
        for job_id, target in allocation.targets.items():
            job = self.queue.get(job_id)
            if job is None:
                continue
            free = [w for w in target if w not in held]
            if len(free) < int(job.resources["min_devices"]):
                pending[job_id] = (
                    "waiting for other training jobs to release workers at their next round"
                )
                continue
            self._start(job, free)
            held.update(free)
        self.why_pending = pending

    def _start(self, job: Job, workers: list[str]) -> None:
        del self.queue[job.id]
        self.why_pending.pop(job.id, None)
        run = TrainingRun(self, job, workers)
        self.running[job.id] = run
        run.task = self._spawn(run.run())

    def released(self, run: TrainingRun) -> None:
        """A run ended (any way): its workers go back to the pool."""
        if self.running.get(run.job_id) is run:
            del self.running[run.job_id]
        rid = run.spec["resources"].get("reservation_id")
        if rid and rid in self.reservations.holding and run.job_id not in self.queue:
            self._spawn(self._release_reservation(rid, run.job_id))
        self.wake()

    async def _release_reservation(self, rid: str, job_id: str) -> None:
        job = await self.db(self.store.get_job, job_id)
        if job is not None and JobState(job.state) in TERMINAL:
            await self.db(self.reservations.set_status, rid, "released")
            self.wake()

    def workers_changed(self) -> None:
        """Lost workers leave their runs (Dask re-runs their tasks elsewhere); re-plan."""
        live = set(self.live_workers())
        for run in self.running.values():
            run.workers = [w for w in run.workers if w in live] or run.workers
        self.wake()

    # ----------------------------------------------------------- transitions
    async def transition(self, job_id: str, to: JobState, *, reason: str, **kw: Any) -> Job:
        """Commit and publish a state change (the runner's, shared by every job type)."""
        return await self.runner.transition(job_id, to, reason=reason, **kw)

    def syslog(self, job_id: str, attempt: int, message: str) -> None:
        """A coordinator line in the job's log."""
        self.runner.syslog(job_id, attempt, message)

    async def requeue(self, job_id: str, reason: str) -> None:
        """Back to the queue (after preemption); the next start resumes from a checkpoint."""
        job = await self.transition(
            job_id, _S.QUEUED, reason=reason, queued_at=utcnow(), worker=None
        )
        self.queue[job.id] = job

    async def fail_or_retry(self, job_id: str, reason: str) -> None:
        """Re-queue a failed attempt while retries remain (it resumes from a checkpoint)."""
        job = await self.db(self.store.get_job, job_id)
        if job is None or JobState(job.state) in TERMINAL:
            return
        self.syslog(job_id, job.attempt, reason)
        if job.retry_count < job.max_retries:
            n = job.retry_count + 1
            job = await self.transition(
                job_id,
                _S.QUEUED,
                reason=f"{reason}; retry {n} of {job.max_retries}",
                retry_count=n,
                queued_at=utcnow(),
                worker=None,
            )
            self.queue[job.id] = job
        else:
            await self.transition(
                job_id,
                _S.FAILED,
                reason=f"{reason}; no retries left",
                ended_at=utcnow(),
                error=reason,
            )

    # --------------------------------------------------------- user actions
    async def pause(self, job: Job, req: PauseRequest) -> None:
        """Pause a running training job at its next round boundary."""
        run = self.running.get(job.id)
        if job.type != TRAINING_TYPE:
            raise CannotPause(f"{job.id} is a {job.type} job; only training jobs can be paused")
        if run is None or JobState(job.state) not in ACTIVE:
            raise CannotPause(
                f"job {job.id} is {job.state}; only a running training job can be paused",
                details={"status": job.state},
            )
        run.pause = req.save_checkpoint

    async def resume(self, job: Job, req: ResumeRequest) -> None:
        """Queue a paused job again; it restarts from the chosen (or latest) checkpoint."""
        if job.type != TRAINING_TYPE or job.state != _S.PAUSED.value:
            raise Conflict(
                f"job {job.id} is {job.state}; only a PAUSED training job can be resumed",
                details={"status": job.state},
            )
        if req.checkpoint_id:
            await self.db(self.checkpoints.of_job, job.id, req.checkpoint_id)
        spec = {**job.spec, "resume_checkpoint": req.checkpoint_id}
        job = await self.transition(
            job.id,
            _S.QUEUED,
            reason="resumed by user",
            expect={_S.PAUSED},
            queued_at=utcnow(),
            spec=spec,
        )
        self.queue[job.id] = job
        self.wake()

    async def cancel(self, job: Job, reason: str) -> None:
        """Cancel a queued, paused or running training job (tasks are cancelled at once)."""
        run = self.running.get(job.id)
        if run is not None and run.task is not None:
            run.cancel_reason = reason
            run.task.cancel()
            with contextlib.suppress(BaseException):
                await run.task
        self.queue.pop(job.id, None)
        self.why_pending.pop(job.id, None)
        await self.transition(job.id, _S.CANCELLED, reason=reason, ended_at=utcnow())
        self.wake()

    async def retry(
        self, parent: Job, child: Job, new_resources: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Queue a retry's child job, with a new resource config if one is given."""
        spec = dict(parent.spec)
        spec.pop("resume_checkpoint", None)
        if new_resources is not None:
            try:
                rc = ResourceConfig.model_validate(new_resources)
            except ValidationError as exc:
                raise ValidationFailed(
                    "new_resource_config is not valid", details=validation_details(exc)
                ) from None
            spec["resources"] = resources_of(rc)
        child.spec = spec
        child.resources = spec["resources"]
        child.progress = {"percent_complete": 0.0, "total_samples": spec["total_samples"]}
        return await self.accept(child)

    # ---------------------------------------------------------------- export
