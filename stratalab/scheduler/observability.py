"""Dashboard, metrics, logs and live figures: the read side of the coordinator.

The coordinator owns one :class:`Observability` (``coordinator.observability``)
and the routes of ``/dashboard``, ``/metrics`` and ``/logs`` call it. Every
figure comes from indexed, bounded store reads (:mod:`.telemetry`), from
state already in memory (queue, running jobs, worker heartbeats) or from
Dask; each aggregate is cached for :attr:`Observability.cache_ttl_s`, so a
dashboard polled at 10 Hz costs one rebuild per second, serialized once.

``GET /dashboard/stream`` subscribers share one ticker: while any are
connected it publishes a snapshot per owner on the bus topic
``dashboard`` every :attr:`Observability.stream_interval_s`; each consumer's
queue is bounded, so a slow one loses old snapshots, never blocks the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import stratalab
from stratalab.errors import Forbidden, NotFound, ServiceUnavailable
from stratalab.kernels.diagnostics import scheduler_probe
from stratalab.scheduler import analytics, health, telemetry
from stratalab.scheduler.cluster import DaskCluster
from stratalab.scheduler.events import Event, EventBus, Subscription
from stratalab.scheduler.inventory import Inventory
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.livestats import (
    LogRing,
    ProcessSampler,
    now_iso,
    parse_worker_logs,
    scheduler_service,
    select,
    worker_services,
    workers_stats,
)
from stratalab.scheduler.metrics import Cached, PrometheusExporter, RateMeter, RequestStats
from stratalab.scheduler.projects import ProjectService
from stratalab.scheduler.records import RecordSink
from stratalab.scheduler.runner import JobRunner
from stratalab.scheduler.states import ACTIVE, WAITING
from stratalab.scheduler.store import Store

logger = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]
#: topics a dashboard stream forwards as they happen, besides its snapshots.
STREAM_TOPICS = ("dashboard", "jobs", "workers", "alerts")
#: events one dashboard stream may have waiting before the oldest are dropped.
STREAM_QUEUE = 64
#: the logger tree whose records :class:`LogRing` mirrors.
_LOGGER = "stratalab"


class Observability:
    """Builds ``/dashboard``, ``/metrics``, ``/logs`` and the live figures."""

    def __init__(
        self,
        *,
        store: Store,
        db: DbCall,
        bus: EventBus,
        runner: JobRunner,
        inventory: Inventory,
        cluster: DaskCluster,
        records: RecordSink,
        projects: ProjectService,
        executor: ThreadPoolExecutor,
        started_at: float,
        ready: Callable[[], bool],
        cache_ttl_s: float = 1.0,
        stream_interval_s: float = 1.0,
    ) -> None:
        self.store = store
        self._db = db
        self.bus = bus
        self.runner = runner
        self.inventory = inventory
        self.cluster = cluster
        self.records = records
        self.projects = projects
        self._executor = executor
        self.started_at = started_at
        self._ready = ready
        #: seconds an aggregate is served before it is rebuilt.
        self.cache_ttl_s = cache_ttl_s
        #: seconds between the snapshots the dashboard streams share.
        self.stream_interval_s = stream_interval_s
        #: the Prometheus exposition (its registry holds the request counters).
        self.prometheus = PrometheusExporter()
        #: API requests, counted by the web layer (``coordinator_rps``).
        self.requests = RequestStats(self.prometheus.registry)
        #: the coordinator's newest log records (WARNING and above unless the
        #: "stratalab" logger is configured lower).
        self.log_ring = LogRing()
        self._process = ProcessSampler()
        #: inference requests served by this coordinator (recorded, whether flushed or not).
        self._inference = RateMeter(lambda: records.written + records.backlog)
        self._dashboards: Cached[tuple[dict[str, Any], str]] = Cached(cache_ttl_s)
        self._metrics: Cached[dict[str, Any]] = Cached(cache_ttl_s)
        self._live: Cached[dict[str, Any]] = Cached(cache_ttl_s)
        #: dashboard-stream consumers per owner (None: admins).
        self._stream_owners: Counter[str | None] = Counter()
        self._ticker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start mirroring the coordinator's log records."""
        logging.getLogger(_LOGGER).addHandler(self.log_ring)

    async def stop(self) -> None:
        """Stop the stream ticker and the log mirror."""
        logging.getLogger(_LOGGER).removeHandler(self.log_ring)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    # ------------------------------------------------------------- dashboard
    async def dashboard(self, principal: Principal) -> tuple[dict[str, Any], str]:
        """Everything in one object, and the same as JSON text (cached per owner)."""
        owner = principal.owner_filter()
        return await self._dashboards.get(owner, lambda: self._build_dashboard(owner))

    async def _build_dashboard(self, owner: str | None) -> tuple[dict[str, Any], str]:
        started = time.perf_counter()
        running_ids = list(self.runner.active)[:100]
        view, metrics = await asyncio.gather(
            self._db(telemetry.read_view, self.store, owner, running_ids=running_ids),
            self.metrics(),
        )
        workers = []
        for w in self.inventory.workers():
            workers.append(
                {
                    **w,
                    "assigned_shards": view.shards_by_worker.get(w["address"], 0),
                    "current_step": view.worker_steps.get(w["address"]),
                }
            )
        queued = [q for q in self.runner.queue.values() if owner is None or q.user_id == owner]
        logs = view.logs
        if owner is None:
            logs = sorted(logs + self.log_ring.entries(limit=50), key=lambda e: e["ts"] or "")
            logs = logs[-50:]
        out = {
            "generated_at": now_iso(),
            "cache_ttl_s": self.cache_ttl_s,
            "coordinator": self.coordinator_status(),
            "workers": workers,
            "datasets": view.datasets,
            "checkpoints": view.checkpoints,
            "barriers": view.barriers,
            "metrics": metrics,
            "jobs": {
                "by_state": view.jobs_by_state,
                "queued": len(queued),
                "running": view.running_jobs,
                "recent": view.recent_jobs,
            },
            "logs": logs,
        }
        out["build_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return out, json.dumps(out, default=str)

    def coordinator_status(self) -> dict[str, Any]:
        """The coordinator's own state (no I/O)."""
        return {
            "status": "ok" if self._ready() else "starting",
            "version": stratalab.__version__,
            "uptime_s": round(time.time() - self.started_at, 3),
            "dask_address": self.cluster.scheduler_address,
            "dask_dashboard": self.cluster.dashboard_link,
            "embedded_cluster": self.cluster.embedded,
            "database": self.store.dialect,
            "queued_jobs": len(self.runner.queue),
            "running_jobs": len(self.runner.active),
            "dispatch_passes": self.runner.passes,
            "event_subscribers": self.bus.subscriber_count,
        }

    async def throughput(
        self,
        principal: Principal,
        *,
        bucket_s: float | None,
        window_s: float,
        project_id: str | None,
    ) -> dict[str, Any]:
        """Requests, items and errors per time bucket over the last ``window_s`` seconds."""
        if project_id is not None:
            await self.projects.get(principal, project_id)  # NotFound unless visible
        await self.records.flush()
        since = time.time() - window_s
        rows = await self._db(self._inference_rows, principal.owner_filter(), project_id, since)
        return {
            "window_s": window_s,
            "project_id": project_id,
            **analytics.throughput(rows, bucket_s),
            "summary": analytics.summarize(rows),
        }

    def _inference_rows(
        self, owner: str | None, project_id: str | None, since: float
    ) -> list[analytics.Row]:
        with self.store.session() as s:
            return telemetry.inference_rows(s, owner=owner, project_id=project_id, since=since)

    @contextlib.contextmanager
    def dashboard_stream(self, principal: Principal) -> Iterator[Subscription]:
        """A bounded subscription to dashboard snapshots and live job/worker events."""
        owner = principal.owner_filter()

        def accept(event: Event) -> bool:
            if event.topic == "dashboard":
                return bool(event.data.get("owner") == owner)
            if event.topic == "alerts":  # platform alerts (user_id None) are for admins only
                return owner is None or event.data.get("user_id") == owner
            return owner is None or event.data.get("user_id") in (None, owner)

        sub = self.bus.subscribe(STREAM_TOPICS, maxsize=STREAM_QUEUE, accept=accept)
        self._stream_owners[owner] += 1
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())
        try:
            yield sub
        finally:
            sub.close()
            self._stream_owners[owner] -= 1
            if self._stream_owners[owner] <= 0:
                del self._stream_owners[owner]

    async def _tick(self) -> None:
        """Publish one snapshot per owner per interval while anyone listens."""
        try:
            while self._stream_owners:
                for owner in list(self._stream_owners):
                    try:
                        view, text = await self._dashboards.get(
                            owner, partial(self._build_dashboard, owner), fresh=True
                        )
                    except Exception:
                        logger.exception("dashboard snapshot failed")
                        continue
                    self.bus.publish(
                        "dashboard",
                        {"owner": owner, "text": text, "generated_at": view["generated_at"]},
                    )
                await asyncio.sleep(self.stream_interval_s)
        finally:
            self._ticker = None

    # --------------------------------------------------------------- metrics
    async def metrics(self) -> dict[str, Any]:
        """``GET /metrics``: the Strata figures and more, for the whole system (cached)."""
        return await self._metrics.get("all", self._build_metrics)

    async def _build_metrics(self) -> dict[str, Any]:
        figures = await self._db(telemetry.read_figures, self.store)
        workers = self.inventory.workers()
        return {
            "timestamp": now_iso(),
            "version": stratalab.__version__,
            "uptime_s": round(time.time() - self.started_at, 3),
            "checkpoint_throughput": figures.checkpoint_throughput,
            "coordinator_rps": self.requests.rate(10),
            "active_workers": sum(1 for w in workers if w["status"] == "active"),
            "total_workers": len(workers),
            "barrier_latency_p99": figures.barrier_latency_p99,
            "shard_assignment_time": figures.shard_assignment_time,
            "units": {
                "checkpoint_throughput": "MB/s",
                "coordinator_rps": "requests/s",
                "barrier_latency_p99": "ms",
                "shard_assignment_time": "ms",
                "inference_rps": "requests/s",
            },
            "samples": {
                "checkpoints": figures.checkpoints_measured,
                "barriers": figures.barriers_measured,
            },
            "queued_jobs": len(self.runner.queue),
            "running_jobs": len(self.runner.active),
            "jobs_by_state": figures.jobs_by_state,
            "jobs_waiting": sum(figures.jobs_by_state.get(s.value, 0) for s in WAITING),
            "jobs_active": sum(figures.jobs_by_state.get(s.value, 0) for s in ACTIVE),
            "inference_rps": self._inference.rate(),
            "requests_total": self.requests.total,
            "requests_by_class": dict(self.requests.by_class),
            "request_latency_ms": self.requests.latency_ms(),
            "event_subscribers": self.bus.subscriber_count,
            "events": {"published": dict(self.bus.published), "dropped": self.bus.dropped},
            "log_lines_dropped": self.runner.logs.dropped,
        }

    async def prometheus_text(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return self.prometheus.render(await self.metrics())

    async def live(self, services: list[str] | None, groups: list[str] | None) -> dict[str, Any]:
        """Per-service CPU, memory and queue sizes, optionally only some services and groups."""
        full = await self._live.get("all", self._build_live)
        chosen = {k: v for k, v in full["services"].items() if services is None or k in services}
        return {"timestamp": full["timestamp"], "services": select(chosen, groups)}

    async def _build_live(self) -> dict[str, Any]:
        probe, latency = await self._probe_scheduler()
        database = await self._db(health.probe_database, self.store)
        pool = self.store.engine.pool
        checked_out = getattr(pool, "checkedout", None)
        return {
            "timestamp": now_iso(),
            "services": {
                "coordinator": {
                    "status": "healthy" if self._ready() else "starting",
                    **self._process.sample(),
                    "queue_size": len(self.runner.queue),
                    "running": len(self.runner.active),
                    "log_backlog": self.runner.logs.backlog,
                    "record_backlog": self.records.backlog,
                    "executor_queue": _executor_queue(self._executor),
                    "event_subscribers": self.bus.subscriber_count,
                    "events_dropped": self.bus.dropped,
                },
                "scheduler": scheduler_service(probe, latency),
                "workers": worker_services(self.runner.workers, self._drained_ids()),
                "database": {
                    "status": "healthy" if database["status"] == "ok" else "unreachable",
                    "dialect": self.store.dialect,
                    "latency_ms": database["latency_ms"],
                    "pool_checked_out": checked_out() if callable(checked_out) else None,
                },
            },
        }

    def _drained_ids(self) -> set[str]:
        return set(self.runner.drained)

    async def _probe_scheduler(self) -> tuple[dict[str, Any] | None, float]:
        client = self.cluster.client
        t0 = time.perf_counter()
        if client is None:
            return None, 0.0
        try:
            probe = await asyncio.wait_for(client.run_on_scheduler(scheduler_probe), 5.0)
        except (OSError, asyncio.TimeoutError) as exc:
            logger.warning("Dask scheduler probe failed: %s", exc)
            return None, (time.perf_counter() - t0) * 1000
        except Exception:  # the probe runs remote code: any failure is "unreachable"
            logger.exception("Dask scheduler probe failed")
            return None, (time.perf_counter() - t0) * 1000
        return dict(probe), (time.perf_counter() - t0) * 1000

    # ------------------------------------------------------------------ logs
    async def logs(
        self,
        principal: Principal,
        *,
        limit: int,
        min_level: int,
        job_id: str | None,
    ) -> dict[str, Any]:
        """The newest ``limit`` log entries (jobs', and the coordinator's for admins)."""
        owner = principal.owner_filter()
        if job_id is not None:
            job = await self._db(self.store.get_job, job_id)
            if job is None or not principal.may_see(job.user_id):
                raise NotFound(f"no job {job_id}")
        await self.runner.logs.flush()
        items = await self._db(self._recent_logs, owner, limit, min_level, job_id)
        if job_id is None and principal.is_admin:
            mine = self.log_ring.entries(min_level=min_level, limit=limit)
            items = sorted(items + mine, key=lambda e: e["ts"] or "")[-limit:]
        return {"items": items, "limit": limit, "job_id": job_id}

    def _recent_logs(
        self, owner: str | None, limit: int, min_level: int, job_id: str | None
    ) -> list[dict[str, Any]]:
        with self.store.session() as s:
            return telemetry.recent_logs(s, owner, limit=limit, min_level=min_level, job_id=job_id)

    async def worker_logs(
        self, principal: Principal, worker_id: str, *, lines: int, min_level: int
    ) -> dict[str, Any]:
        """The newest ``lines`` log lines of one Dask worker, pulled from the worker itself."""
        if not principal.is_admin:
            raise Forbidden("worker logs need an admin key (they show every user's work)")
        worker = self.inventory.find_worker(worker_id)
        client = self.cluster.client
        if client is None:
            raise ServiceUnavailable("the Dask cluster is not connected")
        try:
            got = await asyncio.wait_for(
                client.get_worker_logs(n=lines, workers=[worker.address]), 10.0
            )
        except (OSError, asyncio.TimeoutError):
            raise ServiceUnavailable(f"worker {worker.id} did not answer") from None
        raw = got.get(worker.address, ())
        items = parse_worker_logs(raw, min_level=min_level)
        return {"worker_id": worker.id, "address": worker.address, "items": items}

    def workers_stats(self) -> dict[str, Any]:
        """``GET /workers/stats`` (in memory: the monitor refreshes workers every second)."""
        return workers_stats(self.inventory.workers(), self.runner.workers)


def _executor_queue(executor: ThreadPoolExecutor) -> int | None:
    """Store calls waiting for a database thread."""
    queue = getattr(executor, "_work_queue", None)
    return queue.qsize() if queue is not None else None
