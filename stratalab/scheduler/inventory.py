"""The worker inventory: what each Dask worker holds, drains, and cluster capacity.

Split from the coordinator so that one module answers "what runs where";
the live worker list itself is refreshed by the coordinator's monitor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from stratalab.errors import Forbidden, NotFound
from stratalab.scheduler.cluster import DaskCluster, WorkerInfo
from stratalab.scheduler.events import EventBus
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.runner import JobRunner
from stratalab.scheduler.store import Store


class Inventory:
    """Views of workers and capacity, and the operator's drain/enable actions."""

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        runner: JobRunner,
        cluster: DaskCluster,
        db: Callable[..., Awaitable[Any]],
    ) -> None:
        self.store = store
        self.bus = bus
        self.runner = runner
        self.cluster = cluster
        self.db = db

    def worker_view(self, w: WorkerInfo) -> dict[str, Any]:
        """A worker with its drain status and the jobs it runs."""
        running = [a for a in self.runner.active.values() if a.address == w.address]
        status = "active"
        if w.id in self.runner.drained:
            status = "draining" if running else "drained"
        elif w.status != "running":
            status = w.status
        return {
            "id": w.id,
            "address": w.address,
            "name": w.name,
            "host": w.host,
            "status": status,
            "nthreads": w.nthreads,
            "memory_limit_bytes": w.memory_limit,
            "gpus": w.gpus,
            "resources": w.resources,
            "cpu_percent": w.metrics.get("cpu"),
            "memory_bytes": w.metrics.get("memory"),
            "running_jobs": [a.job_id for a in running],
            "used_cpu": sum(a.request.cpu for a in running),
            "used_gpus": sum(a.request.gpu for a in running),
        }

    def workers(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every live worker, optionally only those with ``status``."""
        views = [self.worker_view(w) for w in self.runner.workers.values()]
        return [v for v in views if status is None or v["status"] == status]

    def find_worker(self, worker_id: str) -> WorkerInfo:
        """A live worker by id (or address)."""
        for w in self.runner.workers.values():
            if worker_id in (w.id, w.address):
                return w
        raise NotFound(f"no worker {worker_id}")

    async def drain(self, principal: Principal, worker_id: str, *, force: bool) -> dict[str, Any]:
        """Stop placing work on a worker; ``force`` re-queues what runs there."""
        if not principal.is_admin:
            raise Forbidden("draining a worker needs an admin key")
        w = self.find_worker(worker_id)
        await self.db(self.store.set_worker_flag, w.id, "drained", "drained by operator")
        self.runner.drained.add(w.id)
        if force:
            for a in [a for a in self.runner.active.values() if a.address == w.address]:
                await self.runner.requeue_active(
                    a.job_id, f"worker {w.id} drained (force)", count_retry=False
                )
        self.bus.publish("workers", {"worker_id": w.id, "status": "drained"})
        return self.worker_view(w)

    async def enable(self, principal: Principal, worker_id: str) -> dict[str, Any]:
        """Let a drained worker take work again."""
        if not principal.is_admin:
            raise Forbidden("enabling a worker needs an admin key")
        w = self.find_worker(worker_id)
        await self.db(self.store.set_worker_flag, w.id, None)
        self.runner.drained.discard(w.id)
        self.runner.wake()
        self.bus.publish("workers", {"worker_id": w.id, "status": "active"})
        return self.worker_view(w)

    def cluster_summary(self) -> dict[str, Any]:
        """Capacity and allocation across the cluster."""
        ws = self.workers()
        total_cpu = sum(w["nthreads"] for w in ws)
        total_gpu = sum(w["gpus"] for w in ws)
        used_cpu = sum(w["used_cpu"] for w in ws)
        used_gpu = sum(w["used_gpus"] for w in ws)
        return {
            "scheduler_address": self.cluster.scheduler_address,
            "dashboard_link": self.cluster.dashboard_link,
            "embedded": self.cluster.embedded,
            "workers": {"total": len(ws), "active": sum(1 for w in ws if w["status"] == "active")},
            "capacity": {
                "cpu": total_cpu,
                "gpu": total_gpu,
                "memory_bytes": sum(w["memory_limit_bytes"] for w in ws),
            },
            "allocated": {"cpu": used_cpu, "gpu": used_gpu},
            "utilization": {
                "cpu": round(used_cpu / total_cpu, 4) if total_cpu else 0.0,
                "gpu": round(used_gpu / total_gpu, 4) if total_gpu else 0.0,
            },
            "running_jobs": len(self.runner.active),
            "queued_jobs": len(self.runner.queue),
        }
