"""Routes for metrics and logs: system figures, live per-service figures, Prometheus, logs.

Registered before :mod:`stratalab.jupyter_ext.workers`, whose ``/workers/{id}``
pattern would otherwise also match ``/workers/stats`` and ``/workers/{id}/logs``.
"""

from __future__ import annotations

import asyncio
import re
import time

from tornado import web

from stratalab.errors import BadRequest
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.jupyter_ext.sse import SSEHandler
from stratalab.scheduler.livestats import METRIC_GROUPS, SERVICES
from stratalab.scheduler.views import level_number

_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _min_level(handler: ApiHandler, default: str) -> int:
    """``level`` as a minimum level number (``all`` means everything)."""
    raw = handler.get_query_argument("level", default)
    if raw.lower() == "all":
        return 0
    number = level_number(raw)
    if number is None:
        raise BadRequest(
            "level must be all, DEBUG, INFO, WARNING or ERROR", details={"field": "level"}
        )
    return number


class MetricsHandler(ApiHandler):
    """``/metrics``."""

    async def get(self) -> None:
        """Checkpoint MB/s, requests/s, workers, barrier p99, shard assignment ms, and more."""
        self.principal()
        self.reply(await self.coordinator.observability.metrics())


class MetricsLiveHandler(SSEHandler):
    """``/metrics/live?services&metrics&interval``: JSON, or SSE every ``interval`` s."""

    async def get(self) -> None:
        """Per-service CPU, memory and queue sizes (the coordinator, Dask, the database)."""
        self.principal()
        services = self.query_list("services", SERVICES)
        groups = self.query_list("metrics", METRIC_GROUPS)
        interval = self.query_float("interval", 5.0, lo=1.0, hi=3600.0)
        obs = self.coordinator.observability
        if "text/event-stream" not in self.request.headers.get("Accept", ""):
            self.reply({**await obs.live(services, groups), "interval": interval})
            return
        self.start_stream()
        while not self.closed:
            started = time.monotonic()
            await self.send("metrics", {**await obs.live(services, groups), "interval": interval})
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
        self.finish()


class PrometheusHandler(ApiHandler):
    """``/metrics/prometheus``."""

    async def get(self) -> None:
        """The metrics in the Prometheus text exposition format."""
        self.principal()
        obs = self.coordinator.observability
        body = await obs.prometheus_text()
        self.finish(body, set_content_type=obs.prometheus.content_type)


class LogsHandler(ApiHandler):
    """``/logs?limit&level&job_id``."""

    async def get(self) -> None:
        """The newest log entries: the caller's jobs' output; for admins the coordinator's too."""
        limit = self.query_int("limit", 100, lo=1, hi=1000)
        min_level = _min_level(self, "all")
        job_id = self.get_query_argument("job_id", None)
        if job_id is not None and not _JOB_ID.fullmatch(job_id):
            raise BadRequest("job_id is not a job id", details={"field": "job_id"})
        self.reply(
            await self.coordinator.observability.logs(
                self.principal(), limit=limit, min_level=min_level, job_id=job_id
            )
        )


class WorkerLogsHandler(ApiHandler):
    """``/workers/{id}/logs?lines&level``."""

    async def get(self, worker_id: str) -> None:
        """The worker's own newest log lines, pulled from the Dask worker (admin)."""
        lines = self.query_int("lines", 100, lo=1, hi=10_000)
        min_level = _min_level(self, "all")
        self.reply(
            await self.coordinator.observability.worker_logs(
                self.principal(), worker_id, lines=lines, min_level=min_level
            )
        )


class WorkerStatsHandler(ApiHandler):
    """``/workers/stats``."""

    async def get(self) -> None:
        """Counts, capacity, CPU/memory use and task queues over all live workers."""
        self.principal()
        self.reply(self.coordinator.observability.workers_stats())


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The metrics and logs routes under ``prefix``."""
    wid = r"(?P<worker_id>[A-Za-z0-9_.:/-]{1,128})"
    return [
        (f"{prefix}/metrics", MetricsHandler),
        (f"{prefix}/metrics/live", MetricsLiveHandler),
        (f"{prefix}/metrics/prometheus", PrometheusHandler),
        (f"{prefix}/logs", LogsHandler),
        (f"{prefix}/workers/stats", WorkerStatsHandler),
        (f"{prefix}/workers/{wid}/logs", WorkerLogsHandler),
    ]
