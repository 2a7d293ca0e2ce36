"""System routes: health, dependencies, status, configuration, OpenAPI."""

from __future__ import annotations

import asyncio
import time

from tornado import web

import stratalab
from stratalab.errors import Forbidden
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.jupyter_ext.openapi import openapi_document
from stratalab.scheduler import health
from stratalab.scheduler.schemas import ConfigUpdate


class HealthHandler(ApiHandler):
    """``/health``: liveness, no credentials needed (load balancers call it)."""

    auth_required = False

    async def get(self) -> None:
        """Whether the server answers and the coordinator started."""
        c = self.coordinator
        status = "ok" if c.ready else "starting"
        self.reply(
            {
                "status": status,
                "version": stratalab.__version__,
                "uptime_s": round(time.time() - c.started_at, 3),
            }
        )


class HealthDetailedHandler(ApiHandler):
    """``/health/detailed``."""

    async def get(self) -> None:
        """Database, Dask, queue and worker health in one answer."""
        c = self.coordinator
        self.principal()
        db, dask = await asyncio.gather(
            c.db(health.probe_database, c.store), health.probe_dask(c.cluster)
        )
        ok = db["status"] == "ok" and dask["status"] == "ok"
        self.reply(
            {
                "status": "ok" if ok else "degraded",
                "version": stratalab.__version__,
                "uptime_s": round(time.time() - c.started_at, 3),
                "components": {"database": db, "dask": dask},
                "queue": {"queued": len(c.runner.queue), "running": len(c.runner.active)},
                "workers": {"total": len(c.runner.workers), "drained": len(c.runner.drained)},
                "event_subscribers": c.bus.subscriber_count,
            }
        )


class HealthDependenciesHandler(ApiHandler):
    """``/health/dependencies``: real probes of each dependency."""

    async def get(self) -> None:
        """Dask, database, torch, ONNX Runtime and CUDA, each probed for real."""
        c = self.coordinator
        self.principal()
        db, dask, torch_p, ort_p = await asyncio.gather(
            c.db(health.probe_database, c.store),
            health.probe_dask(c.cluster),
            c.db(health.probe_torch),
            c.db(health.probe_onnxruntime),
        )
        gpus = sum(w.gpus for w in c.runner.workers.values())
        deps = {
            "dask": dask,
            "database": db,
            "torch": torch_p,
            "onnxruntime": ort_p,
            "cuda": health.probe_cuda(torch_p, gpus),
        }
        required_ok = all(
            deps[k]["status"] == "ok" for k in ("dask", "database", "torch", "onnxruntime")
        )
        self.reply({"status": "ok" if required_ok else "degraded", "dependencies": deps})


class StatusHandler(ApiHandler):
    """``/status``."""

    async def get(self) -> None:
        """Dask address and dashboard, uptime, version, counts."""
        c = self.coordinator
        self.principal()
        self.reply(
            {
                "version": stratalab.__version__,
                "uptime_s": round(time.time() - c.started_at, 3),
                "dask_address": c.cluster.scheduler_address,
                "dask_dashboard": c.cluster.dashboard_link,
                "embedded_cluster": c.cluster.embedded,
                "database": c.store.dialect,
                "workers": len(c.runner.workers),
                "queued_jobs": len(c.runner.queue),
                "running_jobs": len(c.runner.active),
            }
        )


class ConfigHandler(ApiHandler):
    """``/config``."""

    async def get(self) -> None:
        """The effective settings (no secrets)."""
        self.principal()
        self.reply(self.coordinator.config.public())

    async def put(self) -> None:
        """Change runtime-tunable settings (admin only); they persist."""
        p = self.principal()
        if not p.is_admin:
            raise Forbidden("changing the configuration needs an admin key")
        req = self.body(ConfigUpdate)
        self.reply(await self.coordinator.update_config(p, req.model_dump()))


class OpenAPIHandler(ApiHandler):
    """``/openapi.json``: generated from the pydantic models and the route table."""

    auth_required = False

    async def get(self) -> None:
        """The OpenAPI 3.1 document of this API."""
        self.reply(openapi_document(self.settings.get("base_url", "/")))


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The system routes under ``prefix``."""
    return [
        (f"{prefix}/health", HealthHandler),
        (f"{prefix}/health/detailed", HealthDetailedHandler),
        (f"{prefix}/health/dependencies", HealthDependenciesHandler),
        (f"{prefix}/status", StatusHandler),
        (f"{prefix}/config", ConfigHandler),
        (f"{prefix}/openapi.json", OpenAPIHandler),
    ]
