"""Benchmark routes: start a measured run, list runs, read one with its per-step figures."""

from __future__ import annotations

from tornado import web

from stratalab.jupyter_ext.base import ApiHandler
from stratalab.scheduler.benchmark_schemas import BenchmarkCreate


class BenchmarksHandler(ApiHandler):
    """``/benchmarks``."""

    async def post(self) -> None:
        """Accept a run (mode inference, training, gpu-training or perf); committed before 202."""
        out = await self.coordinator.benchmarks.create(self.principal(), self.body(BenchmarkCreate))
        self.reply(out, 202, location=out["poll_url"])

    async def get(self) -> None:
        """The caller's runs, newest first."""
        offset, size = self.page()
        items, total = await self.coordinator.benchmarks.page(
            self.principal(), offset=offset, limit=size
        )
        self.reply_page(items, total, offset, size)


class BenchmarkHandler(ApiHandler):
    """``/benchmarks/{id}``."""

    async def get(self, benchmark_id: str) -> None:
        """Status, progress, summary and the figures of every step so far."""
        self.reply(await self.coordinator.benchmarks.get(self.principal(), benchmark_id))


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """URL patterns of this module."""
    return [
        (f"{prefix}/benchmarks", BenchmarksHandler),
        (rf"{prefix}/benchmarks/(?P<benchmark_id>[A-Za-z0-9_-]{{1,64}})", BenchmarkHandler),
    ]
