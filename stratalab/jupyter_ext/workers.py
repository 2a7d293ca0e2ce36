"""Routes for the cluster: workers (drain/enable), capacity, and the queue."""

from __future__ import annotations

from tornado import web

from stratalab.errors import BadRequest
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.scheduler.schemas import DrainRequest

_WORKER_STATUS = {"active", "draining", "drained", "closing", "paused"}


class WorkersHandler(ApiHandler):
    """``/workers``."""

    async def get(self) -> None:
        """Live workers, optionally by ``status``."""
        self.principal()
        status = self.get_query_argument("status", None)
        if status is not None and status not in _WORKER_STATUS:
            raise BadRequest("unknown worker status", details={"allowed": sorted(_WORKER_STATUS)})
        offset, size = self.page()
        items = self.coordinator.inventory.workers(status)
        self.reply_page(items[offset : offset + size], len(items), offset, size)


class WorkerHandler(ApiHandler):
    """``/workers/{id}``."""

    async def get(self, worker_id: str) -> None:
        """One worker."""
        self.principal()
        inv = self.coordinator.inventory
        self.reply(inv.worker_view(inv.find_worker(worker_id)))


class WorkerDrainHandler(ApiHandler):
    """``/workers/{id}/drain``."""

    async def post(self, worker_id: str) -> None:
        """Stop placing work there; ``force`` re-queues its running jobs (admin)."""
        req = self.body(DrainRequest, optional=True)
        self.reply(
            await self.coordinator.inventory.drain(self.principal(), worker_id, force=req.force)
        )


class WorkerEnableHandler(ApiHandler):
    """``/workers/{id}/enable``."""

    async def post(self, worker_id: str) -> None:
        """Let a drained worker take work again (admin)."""
        self.reply(await self.coordinator.inventory.enable(self.principal(), worker_id))


class ClusterHandler(ApiHandler):
    """``/cluster``."""

    async def get(self) -> None:
        """Capacity, allocation and utilisation."""
        self.principal()
        self.reply(self.coordinator.inventory.cluster_summary())


class QueueHandler(ApiHandler):
    """``/queue``."""

    async def get(self) -> None:
        """Depth by priority, running jobs, waits, and the last day's outcomes."""
        self.reply(await self.coordinator.queue_stats(self.principal()))


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The cluster routes under ``prefix``."""
    wid = r"(?P<worker_id>[A-Za-z0-9_.:/-]{1,128})"
    return [
        (f"{prefix}/workers", WorkersHandler),
        (f"{prefix}/workers/{wid}/drain", WorkerDrainHandler),
        (f"{prefix}/workers/{wid}/enable", WorkerEnableHandler),
        (f"{prefix}/workers/{wid}", WorkerHandler),
        (f"{prefix}/cluster", ClusterHandler),
        (f"{prefix}/queue", QueueHandler),
    ]
