"""Routes for usage and billing: the caller's, a project's, every user's, and internal.

``/internal/*`` routes answer other services, not users: they skip the API
key and Jupyter identity and check the ``X-Internal-Token`` header instead
(see :mod:`stratalab.scheduler.usage_api`).
"""

from __future__ import annotations

from tornado import web

from stratalab.jupyter_ext.base import ApiHandler
from stratalab.scheduler.usage_api import MAX_HOURLY_HOURS, MAX_HOURS


class UsageHandler(ApiHandler):
    """``/usage``."""

    async def get(self) -> None:
        """The caller's CPU/GPU time, tasks, items, errors and cost over ``hours``."""
        hours = self.query_int("hours", 24, lo=1, hi=MAX_HOURS)
        self.reply(await self.coordinator.usage.usage(self.principal(), hours))


class UsageHourlyHandler(ApiHandler):
    """``/usage/hourly``."""

    async def get(self) -> None:
        """The caller's usage per hour with activity, over the last ``hours`` (1-72)."""
        hours = self.query_int("hours", 24, lo=1, hi=MAX_HOURLY_HOURS)
        self.reply(await self.coordinator.usage.hourly(self.principal(), hours))


class ProjectUsageHandler(ApiHandler):
    """``/usage/projects/{id}``."""

    async def get(self, project_id: str) -> None:
        """A project's usage since it began, or over ``hours`` (owner or admin)."""
        raw = self.get_query_argument("hours", None)
        hours = None if raw is None else self.query_int("hours", 24, lo=1, hi=MAX_HOURS)
        self.reply(await self.coordinator.usage.project(self.principal(), project_id, hours))


class AdminUsageHandler(ApiHandler):
    """``/admin/usage``."""

    async def get(self) -> None:
        """Every user's usage over ``hours`` (admin keys only)."""
        hours = self.query_int("hours", 24, lo=1, hi=MAX_HOURS)
        self.reply(await self.coordinator.usage.admin(self.principal(), hours))


class InternalUsageHandler(ApiHandler):
    """``/internal/uuid-usage`` and ``/internal/uuid-usage/errors``."""

    auth_required = False

    async def get(self, errors: str | None = None) -> None:
        """Per user and hour (``from``/``to`` as ``YYYY-MM-DDTHH``), successes or failures."""
        c = self.coordinator
        await c.wait_ready()
        self.reply(
            await c.usage.internal(
                self.request.headers.get("X-Internal-Token"),
                self.get_query_argument("from", None),
                self.get_query_argument("to", None),
                failed=errors is not None,
            )
        )


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """URL patterns of this module."""
    pid = r"(?P<project_id>[A-Za-z0-9_-]{1,64})"
    return [
        (f"{prefix}/usage", UsageHandler),
        (f"{prefix}/usage/hourly", UsageHourlyHandler),
        (f"{prefix}/usage/projects/{pid}", ProjectUsageHandler),
        (f"{prefix}/admin/usage", AdminUsageHandler),
        (f"{prefix}/internal/uuid-usage(?P<errors>/errors)?", InternalUsageHandler),
    ]
