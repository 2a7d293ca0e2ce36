"""``c.workers``: the Dask workers the platform places jobs on, and draining them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratalab.notebook.resource import AsyncResource, SyncResource, collect, seg, to_frame
from stratalab.notebook.transport import Request
from stratalab.notebook.types import Worker

if TYPE_CHECKING:
    import pandas as pd


def drain_request(worker_id: str, force: bool) -> Request:
    """``POST /workers/{id}/drain``."""
    return Request("POST", f"/workers/{seg(worker_id)}/drain", json={"force": force})


class Workers(SyncResource):
    """Workers: ``c.workers.list()``, ``c.workers.drain(id)``, ..."""

    def __call__(self) -> list[Worker]:
        """Every live worker as dicts (kept for scripts written against ``c.workers()``)."""
        return self.records()

    def records(self, *, status: str | None = None) -> list[Worker]:
        """Live workers as dicts, optionally only those with ``status`` (active, drained...)."""
        return list(self._run(collect("/workers", {"status": status})))

    def list(self, *, status: str | None = None) -> pd.DataFrame:
        """Live workers as a DataFrame: threads, GPUs, CPU %, memory, running jobs."""
        return to_frame(self.records(status=status), Worker)

    def get(self, worker_id: str) -> Worker:
        """One worker by id or address."""
        worker: Worker = self._run(Request("GET", f"/workers/{seg(worker_id)}"))
        return worker

    def drain(self, worker_id: str, *, force: bool = False) -> Worker:
        """Place no more work there; ``force`` re-queues its running jobs (admin)."""
        worker: Worker = self._run(drain_request(worker_id, force))
        return worker

    def enable(self, worker_id: str) -> Worker:
        """Let a drained worker take work again (admin)."""
        worker: Worker = self._run(Request("POST", f"/workers/{seg(worker_id)}/enable"))
        return worker

    def stats(self) -> dict[str, Any]:
        """Cluster-wide worker statistics (``GET /workers/stats``)."""
        return dict(self._run(Request("GET", "/workers/stats")))


class AsyncWorkers(AsyncResource):
    """The asyncio twin of :class:`Workers`."""

    async def records(self, *, status: str | None = None) -> list[Worker]:
        """See :meth:`Workers.records`."""
        return list(await self._run(collect("/workers", {"status": status})))

    async def list(self, *, status: str | None = None) -> pd.DataFrame:
        """See :meth:`Workers.list`."""
        return to_frame(await self.records(status=status), Worker)

    async def get(self, worker_id: str) -> Worker:
        """See :meth:`Workers.get`."""
        worker: Worker = await self._run(Request("GET", f"/workers/{seg(worker_id)}"))
        return worker

    async def drain(self, worker_id: str, *, force: bool = False) -> Worker:
        """See :meth:`Workers.drain`."""
        worker: Worker = await self._run(drain_request(worker_id, force))
        return worker

    async def enable(self, worker_id: str) -> Worker:
        """See :meth:`Workers.enable`."""
        worker: Worker = await self._run(Request("POST", f"/workers/{seg(worker_id)}/enable"))
        return worker

    async def stats(self) -> dict[str, Any]:
        """See :meth:`Workers.stats`."""
        return dict(await self._run(Request("GET", "/workers/stats")))
