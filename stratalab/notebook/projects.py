"""``c.projects``: group inference or training work and read its latency analytics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratalab.notebook.resource import AsyncResource, SyncResource, collect, seg, to_frame
from stratalab.notebook.transport import Request
from stratalab.notebook.types import Project

if TYPE_CHECKING:
    import pandas as pd


def create_request(
    name: str, type: str, model_id: str | None, total_tasks: int | None, description: str
) -> Request:
    """``POST /projects`` (types realtime, batch, training, benchmark)."""
    body: dict[str, Any] = {"name": name, "type": type, "description": description}
    if model_id is not None:
        body["model_id"] = model_id
    if total_tasks is not None:
        body["total_tasks"] = total_tasks
    return Request("POST", "/projects", json=body)


def analytics_request(project_id: str, bucket_size: float | None) -> Request:
    """``GET /projects/{id}/analytics`` (throughput in ``bucket_size``-second buckets)."""
    params = {"bucket_size": None if bucket_size is None else int(bucket_size)}
    return Request("GET", f"/projects/{seg(project_id)}/analytics", params=params)


class Projects(SyncResource):
    """Projects: ``c.projects.create("serving", "realtime")``, ``.analytics(id)``, ..."""

    def create(
        self,
        name: str,
        type: str = "realtime",
        *,
        model_id: str | None = None,
        total_tasks: int | None = None,
        description: str = "",
    ) -> Project:
        """A new project of ``type`` realtime, batch, training or benchmark."""
        req = create_request(name, type, model_id, total_tasks, description)
        project: Project = self._run(req)
        return project

    def records(self, *, status: str | None = None, limit: int | None = None) -> list[Project]:
        """Your projects as dicts, newest first (``status``: active, completed, cancelled)."""
        return list(self._run(collect("/projects", {"status": status}, limit)))

    def list(self, *, status: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Your projects as a DataFrame, newest first (``status`` filters)."""
        return to_frame(self.records(status=status, limit=limit), Project)

    def get(self, project_id: str) -> Project:
        """One project."""
        project: Project = self._run(Request("GET", f"/projects/{seg(project_id)}"))
        return project

    def analytics(self, project_id: str, *, bucket_size: float | None = None) -> dict[str, Any]:
        """Latency percentiles, throughput and a per worker-pool comparison."""
        return dict(self._run(analytics_request(project_id, bucket_size)))

    def complete(self, project_id: str) -> Project:
        """Mark the project completed."""
        project: Project = self._run(Request("POST", f"/projects/{seg(project_id)}/complete"))
        return project

    def cancel(self, project_id: str) -> Project:
        """Cancel the project and every unfinished job in it."""
        project: Project = self._run(Request("POST", f"/projects/{seg(project_id)}/cancel"))
        return project


class AsyncProjects(AsyncResource):
    """The asyncio twin of :class:`Projects`."""

    async def create(
        self,
        name: str,
        type: str = "realtime",
        *,
        model_id: str | None = None,
        total_tasks: int | None = None,
        description: str = "",
    ) -> Project:
        """See :meth:`Projects.create`."""
        req = create_request(name, type, model_id, total_tasks, description)
        project: Project = await self._run(req)
        return project

    async def records(
        self, *, status: str | None = None, limit: int | None = None
    ) -> list[Project]:
        """See :meth:`Projects.records`."""
        return list(await self._run(collect("/projects", {"status": status}, limit)))

    async def list(self, *, status: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """See :meth:`Projects.list`."""
        return to_frame(await self.records(status=status, limit=limit), Project)

    async def get(self, project_id: str) -> Project:
        """See :meth:`Projects.get`."""
        project: Project = await self._run(Request("GET", f"/projects/{seg(project_id)}"))
        return project

    async def analytics(
        self, project_id: str, *, bucket_size: float | None = None
    ) -> dict[str, Any]:
        """See :meth:`Projects.analytics`."""
        return dict(await self._run(analytics_request(project_id, bucket_size)))

    async def complete(self, project_id: str) -> Project:
        """See :meth:`Projects.complete`."""
        req = Request("POST", f"/projects/{seg(project_id)}/complete")
        project: Project = await self._run(req)
        return project

    async def cancel(self, project_id: str) -> Project:
        """See :meth:`Projects.cancel`."""
        req = Request("POST", f"/projects/{seg(project_id)}/cancel")
        project: Project = await self._run(req)
        return project
