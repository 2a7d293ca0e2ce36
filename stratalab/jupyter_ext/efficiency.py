"""Routes for efficiency: rates per kind and per worker pool, charts, live runs, one job."""

from __future__ import annotations

from tornado import web

from stratalab.errors import BadRequest
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.scheduler.efficiency_api import CHARTS
from stratalab.scheduler.usage_api import MAX_HOURS

_POOLS = ("gpu", "cpu")


class EfficiencyHandler(ApiHandler):
    """``/efficiency``."""

    async def get(self) -> None:
        """Items per CPU/GPU second and energy per item, per kind (``hours``, ``pool``)."""
        hours = self.query_int("hours", 24, lo=1, hi=MAX_HOURS)
        pool = self.get_query_argument("pool", None)
        if pool is not None and pool not in _POOLS:
            raise BadRequest("pool must be gpu or cpu", details={"field": "pool"})
        self.reply(await self.coordinator.efficiency.overview(self.principal(), hours, pool))


class ComparisonHandler(ApiHandler):
    """``/efficiency/comparison``."""

    async def get(self) -> None:
        """The same figures side by side for the GPU and the CPU worker pools."""
        hours = self.query_int("hours", 24, lo=1, hi=MAX_HOURS)
        self.reply(await self.coordinator.efficiency.comparison(self.principal(), hours))


class ChartHandler(ApiHandler):
    """``/efficiency/chart/{tta,scaling,power,throughput}``."""

    async def get(self, chart: str) -> None:
        """Chart-ready series (``job_id`` and ``limit`` for training charts, ``hours`` else)."""
        hours = self.query_int("hours", 24, lo=1, hi=MAX_HOURS)
        limit = self.query_int("limit", 10, lo=1, hi=100)
        job_id = self.get_query_argument("job_id", None)
        self.reply(
            await self.coordinator.efficiency.chart(
                self.principal(), chart, hours=hours, job_id=job_id, limit=limit
            )
        )


class ActiveHandler(ApiHandler):
    """``/efficiency/active``."""

    async def get(self) -> None:
        """Running jobs with their current rates (newest first, at most ``limit``)."""
        limit = self.query_int("limit", 50, lo=1, hi=1000)
        self.reply(await self.coordinator.efficiency.active(self.principal(), limit))


class JobEfficiencyHandler(ApiHandler):
    """``/efficiency/job/{id}``."""

    async def get(self, job_id: str) -> None:
        """One job's CPU/GPU time, items, rates and energy (null where unmeasured)."""
        self.reply(await self.coordinator.efficiency.job(self.principal(), job_id))


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """URL patterns of this module."""
    charts = "|".join(CHARTS)
    return [
        (f"{prefix}/efficiency", EfficiencyHandler),
        (f"{prefix}/efficiency/comparison", ComparisonHandler),
        (f"{prefix}/efficiency/chart/(?P<chart>{charts})", ChartHandler),
        (f"{prefix}/efficiency/active", ActiveHandler),
        (f"{prefix}/efficiency/job/(?P<job_id>[A-Za-z0-9_-]{{1,64}})", JobEfficiencyHandler),
    ]
