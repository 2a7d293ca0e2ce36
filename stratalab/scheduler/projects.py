"""Projects: inference or training work grouped for progress and analytics.

A project is ``active`` until completed or cancelled; requests may name only
an active project of their own. The hot-path check is answered from memory
after the first lookup. Analytics read the project's request records (an
indexed range on ``(project_id, ts)``) and hand them to
:mod:`~stratalab.scheduler.analytics`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from stratalab.errors import Conflict, NotFound
from stratalab.ids import isoformat, new_id, utcnow
from stratalab.scheduler import analytics
from stratalab.scheduler.db import InferenceRecord, Project
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.model_schemas import ProjectCreate
from stratalab.scheduler.store import Store

logger = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]
ACTIVE = "active"
#: newest records analytics reads for one project.
MAX_ANALYTICS_ROWS = 500_000


class ProjectService:
    """Create, read, complete and cancel projects; compute their analytics."""

    def __init__(self, store: Store, db: DbCall) -> None:
        self.store = store
        self._db = db
        #: (owner, status) by project id, for the per-request check.
        self._known: dict[str, tuple[str, str]] = {}

    # -------------------------------------------------------------- blocking
    def _insert(self, project: Project) -> None:
        with self.store.session() as s:
            s.add(project)

    def _get(self, project_id: str) -> Project | None:
        with self.store.session() as s:
            return s.get(Project, project_id)

    def _list(
        self, owner: str | None, status: str | None, offset: int, limit: int
    ) -> tuple[list[Project], int]:
        query = sa.select(Project)
        if owner is not None:
            query = query.where(Project.user_id == owner)
        if status is not None:
            query = query.where(Project.status == status)
        with self.store.session() as s:
            total = s.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
            rows = s.scalars(
                query.order_by(Project.created_at.desc(), Project.id).offset(offset).limit(limit)
            ).all()
        return list(rows), int(total)

    def _set_status(self, project_id: str, status: str) -> Project:
        with self.store.session() as s:
            project = s.get(Project, project_id)
            if project is None:
                raise NotFound(f"no project {project_id}")
            if project.status != ACTIVE:
                raise Conflict(
                    f"project {project_id} is already {project.status}",
                    details={"status": project.status},
                )
            project.status = status
            project.ended_at = utcnow()
            return project

    def _counts(self, project_ids: list[str]) -> dict[str, tuple[int, int]]:
        """(items done, items failed) per project, from the request records."""
        if not project_ids:
            return {}
        failed = sa.case((InferenceRecord.error_code.is_(None), 0), else_=InferenceRecord.items)
        done = sa.case((InferenceRecord.error_code.is_(None), InferenceRecord.items), else_=0)
        query = (
            sa.select(InferenceRecord.project_id, sa.func.sum(done), sa.func.sum(failed))
            .where(InferenceRecord.project_id.in_(project_ids))
            .group_by(InferenceRecord.project_id)
        )
        with self.store.session() as s:
            return {pid: (int(d or 0), int(f or 0)) for pid, d, f in s.execute(query).all()}

    def _rows(self, project_id: str) -> list[analytics.Row]:
        r = InferenceRecord
        query = (
            sa.select(
                r.ts, r.latency_ms, r.compute_ms, r.error_code, r.items, r.kind, r.worker, r.pool
            )
            .where(r.project_id == project_id)
            .order_by(r.ts.desc())
            .limit(MAX_ANALYTICS_ROWS)
        )
        with self.store.session() as s:
            return [analytics.Row(*row) for row in s.execute(query).all()]

    # ----------------------------------------------------------------- async
    async def create(
        self, principal: Principal, req: ProjectCreate, *, project_id: str | None = None
    ) -> Project:
        """A new active project owned by the caller."""
        project = Project(
            id=project_id or new_id("proj"),
            user_id=principal.user_id,
            name=req.name,
            type=req.type,
            status=ACTIVE,
            model_id=req.model_id,
            total_tasks=req.total_tasks,
            description=req.description,
            created_at=utcnow(),
        )
        await self._db(self._insert, project)
        self._known[project.id] = (project.user_id, project.status)
        return project

    async def get(self, principal: Principal, project_id: str) -> Project:
        """The caller's project; another user's is 'not found'."""
        project = await self._db(self._get, project_id)
        if project is None or not principal.may_see(project.user_id):
            raise NotFound(f"no project {project_id}", details={"project_id": project_id})
        self._known[project.id] = (project.user_id, project.status)
        return project

    async def require_active(self, principal: Principal, project_id: str) -> None:
        """Refuse work for a missing, foreign (404) or finished (409) project."""
        known = self._known.get(project_id)
        if known is None:
            project = await self.get(principal, project_id)
            known = (project.user_id, project.status)
        owner, status = known
        if not principal.may_see(owner):
            raise NotFound(f"no project {project_id}", details={"project_id": project_id})
        if status != ACTIVE:
            raise Conflict(
                f"project {project_id} is {status}; it takes no new work",
                details={"status": status},
            )

    async def page(
        self, principal: Principal, *, status: str | None, offset: int, limit: int
    ) -> tuple[list[Project], int]:
        """A page of the caller's projects, newest first."""
        return await self._db(self._list, principal.owner_filter(), status, offset, limit)

    async def finish(self, principal: Principal, project_id: str, status: str) -> Project:
        """Mark an active project ``completed`` or ``cancelled``."""
        await self.get(principal, project_id)
        project = await self._db(self._set_status, project_id, status)
        self._known[project_id] = (project.user_id, status)
        return project

    async def views(self, projects: list[Project]) -> list[dict[str, Any]]:
        """The API's project objects, with progress from the request records."""
        counts = await self._db(self._counts, [p.id for p in projects])
        return [project_view(p, *counts.get(p.id, (0, 0))) for p in projects]

    async def analytics(self, project: Project, bucket_s: float | None) -> dict[str, Any]:
        """Latency percentiles, throughput over time, errors, and per-pool figures."""
        rows = await self._db(self._rows, project.id)
        return {"project_id": project.id, **analytics.analytics(rows, bucket_s)}


def project_view(project: Project, completed: int, failed: int) -> dict[str, Any]:
    """One project as the API shows it."""
    total = project.total_tasks
    return {
        "id": project.id,
        "name": project.name,
        "type": project.type,
        "status": project.status,
        "model_id": project.model_id,
        "total_tasks": total,
        "completed_tasks": completed,
        "failed_tasks": failed,
        "description": project.description,
        "user_id": project.user_id,
        "created_at": isoformat(project.created_at),
        "ended_at": isoformat(project.ended_at),
        "progress_percent": round(100.0 * (completed + failed) / total, 2) if total else None,
    }
