"""Routes for projects: create, list, inspect, analytics, complete, cancel."""

from __future__ import annotations

from tornado import web

from stratalab.errors import BadRequest
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.scheduler.model_schemas import ProjectCreate

_STATUSES = {"active", "completed", "cancelled"}


class ProjectsHandler(ApiHandler):
    """``/projects``."""

    async def get(self) -> None:
        """The caller's projects, newest first (``status`` filters)."""
        status = self.get_query_argument("status", None)
        if status is not None and status not in _STATUSES:
            raise BadRequest("unknown status", details={"allowed": sorted(_STATUSES)})
        offset, size = self.page()
        items, total = await self.coordinator.serving.list_projects(
            self.principal(), status=status, offset=offset, limit=size
        )
        self.reply_page(items, total, offset, size)

    async def post(self) -> None:
        """A new project."""
        req = self.body(ProjectCreate)
        out = await self.coordinator.serving.create_project(self.principal(), req)
        self.reply(out, 201, location=f"{self.request.path}/{out['id']}")


class ProjectHandler(ApiHandler):
    """``/projects/{id}``."""

    async def get(self, project_id: str) -> None:
        """A project with its progress and headline metrics."""
        self.reply(await self.coordinator.serving.get_project(self.principal(), project_id))


class ProjectAnalyticsHandler(ApiHandler):
    """``/projects/{id}/analytics``."""

    async def get(self, project_id: str) -> None:
        """Latency percentiles, throughput over time (``bucket_size`` s), per worker pool."""
        bucket = self.query_int("bucket_size", 0, lo=0, hi=86_400)
        self.reply(
            await self.coordinator.serving.project_analytics(
                self.principal(), project_id, float(bucket) if bucket else None
            )
        )


class ProjectActionHandler(ApiHandler):
    """``/projects/{id}/complete`` and ``/projects/{id}/cancel``."""

    async def post(self, project_id: str, action: str) -> None:
        """Mark complete, or cancel with every unfinished job of the project."""
        status = "completed" if action == "complete" else "cancelled"
        coordinator = self.coordinator
        self.reply(
            await coordinator.serving.finish_project(
                self.principal(), project_id, status, coordinator.cancel_job
            )
        )


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """URL patterns of this module."""
    pid = r"(?P<project_id>[A-Za-z0-9_-]{1,64})"
    return [
        (f"{prefix}/projects", ProjectsHandler),
        (f"{prefix}/projects/{pid}", ProjectHandler),
        (f"{prefix}/projects/{pid}/analytics", ProjectAnalyticsHandler),
        (f"{prefix}/projects/{pid}/(?P<action>complete|cancel)", ProjectActionHandler),
    ]
