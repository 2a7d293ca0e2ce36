"""The coordinator: the one object the web layer talks to.

It owns the store, the key manager, the event bus, the Dask cluster and the
job runner, starts them in order (store and reconciliation before Dask, so
accepted work is known before anything runs) and exposes one method per API
action. No tornado here: the same object runs in tests without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from stratalab.errors import CannotCancel, Conflict, Forbidden, NotFound, ServiceUnavailable
from stratalab.ids import as_utc, new_id, utcnow
from stratalab.scheduler.alerts import AlertService
from stratalab.scheduler.benchmarks import BENCHMARK_TYPE, BenchmarkService
from stratalab.scheduler.checkpoints import CheckpointStore
from stratalab.scheduler.cluster import DaskCluster
from stratalab.scheduler.config import RUNTIME_TUNABLE, CoordinatorConfig
from stratalab.scheduler.datasets import DatasetService
from stratalab.scheduler.db import Job, JobEvent
from stratalab.scheduler.events import EventBus
from stratalab.scheduler.inventory import Inventory
from stratalab.scheduler.keys import KeyManager, Principal
from stratalab.scheduler.observability import Observability
from stratalab.scheduler.queue_stats import queue_stats
from stratalab.scheduler.ratelimit import RateLimiter
from stratalab.scheduler.retries import retry_child
from stratalab.scheduler.runner import JobRunner
from stratalab.scheduler.schemas import JobSubmit, RetryRequest
from stratalab.scheduler.serving_api import SERVING_TYPES, ServingApi
from stratalab.scheduler.states import ACTIVE, TERMINAL, WAITING, JobState
from stratalab.scheduler.store import Store, sqlite_url
from stratalab.scheduler.training import TRAINING_TYPE, TrainingService
from stratalab.scheduler.training_api import TrainingApi
from stratalab.scheduler.usage_wiring import attach_usage
from stratalab.scheduler.views import job_out

logger = logging.getLogger(__name__)
T = TypeVar("T")
_S = JobState


class Coordinator:
    """Accepts work, keeps it in the store, runs it on Dask, reports on it."""

    def __init__(self, config: CoordinatorConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        #: the database (SQLite in the data dir unless a URL is given).
        self.store = Store(config.db_url or sqlite_url(config.data_dir))
        self.keys = KeyManager(self.store)
        self.bus = EventBus()
        self.limiter = RateLimiter(config.rate_limit_per_minute)
        self.cluster = DaskCluster(
            address=config.dask_address,
            n_workers=config.n_workers,
            threads_per_worker=config.threads_per_worker,
            memory_limit=config.worker_memory_limit,
            local_directory=str(config.data_dir / "dask"),
        )
        # SQLite has one writer: more threads would only queue on its lock.
        threads = 1 if self.store.dialect == "sqlite" else 8
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="stratalab-db")
        self.runner = JobRunner(
            store=self.store,
            bus=self.bus,
            db=self.db,
            workdir_root=config.data_dir / "work",
            aging_interval_s=config.aging_interval_s,
            dispatch_interval_s=config.dispatch_interval_s,
        )
        #: workers, drains and cluster capacity.
        self.inventory = Inventory(
            store=self.store, bus=self.bus, runner=self.runner, cluster=self.cluster, db=self.db
        )
        #: models, inference and projects.
        self.serving = ServingApi(
            config=config, store=self.store, runner=self.runner, db=self.db, accept=self._commit
        )
        #: datasets, their shards' placement on workers, and the workers' shard caches.
        self.datasets = DatasetService(
            config=config,
            store=self.store,
            artifacts=self.serving.artifacts,
            db=self.db,
            workers=lambda: self.runner.workers,
        )
        #: training jobs: their queue, worker shares, rounds, checkpoints and metrics.
        self.training = TrainingService(
            config=config,
            store=self.store,
            bus=self.bus,
            db=self.db,
            runner=self.runner,
            registry=self.serving.registry,
            checkpoints=CheckpointStore(self.store, self.serving.artifacts),
            datasets=self.datasets,
            accept=self._commit,
        )
        #: the actions of the training, checkpoint, evaluation and reservation routes.
        self.train = TrainingApi(self.training, self.owned_job, self.get_job)
        #: benchmark runs (jobs of type ``benchmark``): inference, perf and training.
        self.benchmarks = BenchmarkService(self.serving, self.training, accept=self._commit)
        #: wall-clock time of start (for uptime).
        self.started_at = time.time()
        #: dashboard, metrics, logs and live figures (read side; counts API requests).
        self.observability = Observability(
            store=self.store,
            db=self.db,
            bus=self.bus,
            runner=self.runner,
            inventory=self.inventory,
            cluster=self.cluster,
            records=self.serving.records,
            projects=self.serving.projects,
            executor=self._executor,
            started_at=self.started_at,
            ready=lambda: self.ready,
        )
        #: alert rules over live figures; raised alerts go to the store and the bus.
        self.alerts = AlertService.for_coordinator(self)
        #: usage and billing, and efficiency: work measured on the workers, recorded in batches.
        self.usage, self.efficiency = attach_usage(self)
        self._ready = asyncio.Event()
        self._start_error: BaseException | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- lifecycle
    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    def start_soon(self) -> asyncio.Task[None]:
        """Start once, in the background; callers await :meth:`wait_ready`."""
        if self._start_task is None:
            self._start_task = asyncio.ensure_future(self._start())
        return self._start_task

    async def start(self) -> None:
        """Start and wait until ready (raises if the start failed)."""
        await self.start_soon()
        await self.wait_ready()

    async def _start(self) -> None:
        try:
            await self.db(self.store.migrate)
            settings = await self.db(self.store.settings)
            self.apply_settings(settings)
            await self.usage.start()
            self.runner.drained = set(await self.db(self.store.worker_flags))
            leftovers, serving_jobs, training_jobs = await self._reconcile()
            client = await self.cluster.start()
            self.datasets.client = client
            self.runner.start(client)
            await self._refresh_workers()
            await self.serving.start(client, serving_jobs)
            await self.training.start(client, training_jobs)
            await self.train.start(client)
            await self.benchmarks.start()
            if not self.cluster.embedded:
                await self.runner.kill_everywhere(leftovers)
            self._monitor = asyncio.ensure_future(self._monitor_loop())
            self.observability.start()
            await self.alerts.start()
        except BaseException as exc:
            self._start_error = exc
            logger.exception("StrataLab coordinator failed to start")
            raise
        finally:
            self._ready.set()

    async def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait for the start; :class:`ServiceUnavailable` if it failed or is slow."""
        if self.ready:
            return  # the per-request fast path: no task, no timer
        if self._start_task is None:
            self.start_soon()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            raise ServiceUnavailable("StrataLab is still starting; retry shortly") from None
        if self._start_error is not None:
            raise ServiceUnavailable("StrataLab failed to start; see the server log")

    @property
    def ready(self) -> bool:
        """Whether the start finished without error."""
        return self._ready.is_set() and self._start_error is None

    async def stop(self) -> None:
        """Stop loops, flush logs, close Dask (embedded) and the database."""
        await self.alerts.stop()
        await self.observability.stop()
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
            with contextlib.suppress(BaseException):
                await self._start_task
        await self.benchmarks.stop()
        await self.train.stop()
        await self.training.stop()
        await self.serving.stop()
        await self.runner.stop()
        await self.usage.stop()
        await self.cluster.close()
        self._executor.shutdown(wait=True)
        self.store.close()

    async def _reconcile(self) -> tuple[list[str], list[Job], list[Job]]:
        """Rebuild the queue from the store; re-queue or fail jobs cut off by a stop.

        Returns the ids of tasks that may have left processes behind, and the
        unfinished inference and training jobs (resumed once the cluster is up).
        """
        leftovers: list[str] = []
        serving: list[Job] = []
        training: list[Job] = []
        jobs = await self.db(self.store.jobs_in_states, ACTIVE | WAITING)
        for stored in sorted(jobs, key=lambda j: (as_utc(j.queued_at or j.created_at), j.id)):
            if stored.type in SERVING_TYPES:
                serving.append(stored)
                continue
            if stored.type == BENCHMARK_TYPE:
                continue  # BenchmarkService.start settles it
            if stored.type == TRAINING_TYPE:
                training.append(stored)
                continue
            state = JobState(stored.state)
            if state in ACTIVE:
                leftovers.append(stored.id)
                # fail_or_retry re-queues (and enqueues) the job while retries remain
                await self.runner.fail_or_retry(
                    stored, f"the server stopped while the job was {state.value}"
                )
                continue
            job = stored
            if state == _S.PENDING:
                job = await self.runner.transition(
                    stored.id, _S.QUEUED, reason="queued after restart", queued_at=utcnow()
                )
            self.runner.enqueue(job)
        if jobs:
            logger.info("reconciled %d jobs from the store", len(jobs))
        return leftovers, serving, training

    async def _refresh_workers(self) -> None:
        workers = await self.cluster.workers()
        if set(workers) != set(self.runner.workers):
            joined = set(workers) - set(self.runner.workers)
            left = set(self.runner.workers) - set(workers)
            self.bus.publish(
                "workers", {"joined": sorted(joined), "left": sorted(left), "count": len(workers)}
            )
            await self.runner.workers_changed(workers)
            self.serving.workers_changed(workers)
            self.training.workers_changed()
            await self.datasets.workers_changed(workers)
        else:
            self.runner.workers = workers

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.monitor_interval_s)
            try:
                await self._refresh_workers()
            except (OSError, asyncio.TimeoutError) as exc:
                logger.warning("could not reach the Dask scheduler: %s", exc)
            except Exception:
                logger.exception("worker monitor pass failed")

    # ---------------------------------------------------------------- config
    def apply_settings(self, values: dict[str, Any]) -> None:
        """Apply runtime-tunable settings (from the store or ``PUT /config``)."""
        for key, value in values.items():
            if key in RUNTIME_TUNABLE and value is not None:
                setattr(self.config, key, value)
        self.limiter.per_minute = self.config.rate_limit_per_minute
        self.runner.aging_interval_s = self.config.aging_interval_s

    async def update_config(self, principal: Principal, values: dict[str, Any]) -> dict[str, Any]:
        """Change runtime settings (admin only) and persist them."""
        if not principal.is_admin:
            raise Forbidden("changing the configuration needs an admin key")
        values = {k: v for k, v in values.items() if v is not None}
        await self.db(self.store.put_settings, values)
        self.apply_settings(values)
        return self.config.public()

    # ------------------------------------------------------------------ jobs
    async def submit(self, principal: Principal, req: JobSubmit) -> dict[str, Any]:
        """Accept a job: committed (and queued) before this returns."""
        now = utcnow()
        job = Job(
            id=new_id("job"),
            user_id=principal.user_id,
            name=req.name,
            type=req.type,
            state=_S.QUEUED.value,
            priority=req.priority,
            created_at=now,
            queued_at=now,
            updated_at=now,
            spec={
                "entrypoint": req.entrypoint,
                "script": req.script,
                "args": req.args,
                "env": req.env,
            },
            resources={"cpu": req.cpu, "memory_gb": req.memory_gb, "gpu": req.gpu},
            metadata_=req.metadata,
            max_retries=(
                self.config.default_max_retries if req.max_retries is None else req.max_retries
            ),
            retry_count=0,
            attempt=0,
            project_id=req.project_id,
        )
        return await self._accept(job, now)

    async def _accept(self, job: Job, now: Any) -> dict[str, Any]:
        await self._commit(job)
        self.runner.enqueue(job)
        return {
            "job_id": job.id,
            "status": job.state,
            "message": "job accepted and queued",
            "estimated_wait_seconds": self.runner.estimated_wait(),
            "job": self.view(job),
        }

    async def _commit(self, job: Job) -> None:
        """Insert an accepted job with its first timeline rows, then publish it."""
        now = job.created_at
        events = [
            JobEvent(
                job_id=job.id, ts=now, from_state=None, to_state=_S.PENDING.value, reason="accepted"
            ),
            JobEvent(
                job_id=job.id,
                ts=now,
                from_state=_S.PENDING.value,
                to_state=_S.QUEUED.value,
                reason="queued",
            ),
        ]
        await self.db(self.store.insert_jobs, [job], events)
        self.bus.publish(
            "jobs", {"job_id": job.id, "user_id": job.user_id, "status": job.state, "event": None}
        )

    def view(self, job: Job, timeline: list[JobEvent] | None = None) -> dict[str, Any]:
        """A job with the live fields (aged priority, why pending, worker id)."""
        worker = self.runner.workers.get(job.worker or "")
        queued = job.state == _S.QUEUED.value
        pending = self.runner.why_pending.get(job.id) or self.training.why_pending.get(job.id)
        return job_out(
            job,
            priority_aged=self.runner.priority_aged.get(job.id) if queued else None,
            why_pending=pending if queued else None,
            worker_id=worker.id if worker else None,
            timeline=timeline,
        )

    async def owned_job(self, principal: Principal, job_id: str) -> Job:
        """The job if the caller may see it; another user's job is 'not found'."""
        job = await self.db(self.store.get_job, job_id)
        if job is None or not principal.may_see(job.user_id):
            raise NotFound(f"no job {job_id}")
        return job

    async def get_job(self, principal: Principal, job_id: str) -> dict[str, Any]:
        """One job with its timeline."""
        job = await self.owned_job(principal, job_id)
        timeline = await self.db(self.store.job_events, job_id)
        return self.view(job, timeline)

    async def list_jobs(
        self,
        principal: Principal,
        *,
        states: list[str],
        types: list[str],
        user_id: str | None,
        order_by: str,
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the caller's jobs (any user's for admins)."""
        owner = principal.owner_filter()
        if user_id is not None:
            if owner is not None and user_id != owner:
                return [], 0
            owner = user_id
        rows, total = await self.db(
            self.store.list_jobs,
            user_id=owner,
            states=states,
            types=types,
            order_by=order_by,
            offset=offset,
            limit=limit,
        )
        return [self.view(j) for j in rows], total

    async def cancel(self, principal: Principal, job_id: str, reason: str) -> dict[str, Any]:
        """Cancel a job; a running one has its process tree killed first."""
        await self.cancel_job(await self.owned_job(principal, job_id), reason)
        return await self.get_job(principal, job_id)

    async def cancel_job(self, job: Job, reason: str) -> None:
        """Cancel any kind of job the caller was already allowed to see."""
        if job.type in SERVING_TYPES:
            await self.serving.cancel_job(job, reason)
            return
        state = JobState(job.state)
        if job.type == TRAINING_TYPE and state not in TERMINAL:
            await self.training.cancel(job, reason)
            return
        if state in TERMINAL:
            raise CannotCancel(
                f"job {job.id} already ended ({state.value})", details={"status": state.value}
            )
        if not await self.runner.cancel_active(job.id, reason):
            try:
                await self.runner.transition(job.id, _S.CANCELLED, reason=reason, ended_at=utcnow())
                self.runner.dequeue(job.id)
            except Conflict:
                latest = await self.db(self.store.get_job, job.id)
                if latest is not None and JobState(latest.state) in TERMINAL:
                    raise CannotCancel(f"job {job.id} already ended ({latest.state})") from None
                raise

    async def retry(self, principal: Principal, job_id: str, req: RetryRequest) -> dict[str, Any]:
        """Re-run a failed or cancelled job as a child job (``parent_job_id``)."""
        parent = await self.owned_job(principal, job_id)
        child = retry_child(parent, req, serving=parent.type in SERVING_TYPES)
        if parent.type == BENCHMARK_TYPE:
            return await self.benchmarks.retry(child)
        if parent.type == TRAINING_TYPE:
            return await self.training.retry(parent, child, req.new_resource_config)
        return await self._accept(child, child.created_at)

    async def set_priority(
        self, principal: Principal, job_id: str, priority: int
    ) -> dict[str, Any]:
        """Change a job's priority (it matters while the job is queued)."""
        job = await self.owned_job(principal, job_id)
        if JobState(job.state) in TERMINAL:
            raise Conflict(f"job {job_id} already ended ({job.state})")
        await self.db(self.store.update_job, job_id, priority=priority)
        self.runner.set_priority(job_id, priority)
        self.bus.publish(
            "jobs",
            {
                "job_id": job_id,
                "user_id": job.user_id,
                "status": job.state,
                "priority": priority,
                "event": None,
            },
        )
        return await self.get_job(principal, job_id)

    # ----------------------------------------------------------------- queue
    async def queue_stats(self, principal: Principal) -> dict[str, Any]:
        """Depth by priority, running work, waits, and the last day's outcomes."""
        return await queue_stats(self, principal)
