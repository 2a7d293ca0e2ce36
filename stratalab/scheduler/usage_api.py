"""The usage and billing actions, one method per route, and the internal token.

``GET /usage``, ``/usage/hourly``, ``/usage/projects/{id}`` and
``/admin/usage`` answer from grouped reads of the usage records
(:mod:`.usage_queries`) shaped by :mod:`.usage_report`. The internal routes
(``/internal/uuid-usage`` and ``.../errors``) are for other services, not
users: they take the ``X-Internal-Token`` header, a secret created once
(``secrets.token_urlsafe``) and kept in ``<data_dir>/internal_token``
(mode 0600) unless ``internal_token`` is configured.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from stratalab.errors import AuthInvalid, AuthRequired, BadRequest, Forbidden
from stratalab.files import write_private
from stratalab.ids import as_utc, isoformat
from stratalab.scheduler.config import CoordinatorConfig
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.projects import ProjectService
from stratalab.scheduler.store import Store
from stratalab.scheduler.usage import UsageRecorder
from stratalab.scheduler.usage_queries import UsageRow, grouped
from stratalab.scheduler.usage_report import (
    Prices,
    hour_label,
    hourly,
    parse_hour,
    per_user,
    summary,
    uuid_usage,
)

logger = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]

#: the longest window ``hours`` may ask for (30 days), and the hourly route's limit.
MAX_HOURS = 720
MAX_HOURLY_HOURS = 72
#: the internal routes' rolling window, in hours.
INTERNAL_WINDOW_HOURS = 72
#: the file that keeps the internal token.
TOKEN_FILE = "internal_token"


def ensure_internal_token(config: CoordinatorConfig) -> str:
    """The configured token, the saved one, or a new one saved with mode 0600."""
    if config.internal_token:
        return config.internal_token
    path = config.data_dir / TOKEN_FILE
    if path.exists():
        saved = path.read_text().strip()
        if saved:
            return saved
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    logger.info("created the internal token in %s", path)
    return token


def _iso(ts: float) -> str | None:
    return isoformat(datetime.fromtimestamp(ts, timezone.utc))


class UsageApi:
    """Usage totals, hourly series, project and admin views, and the internal routes."""

    def __init__(
        self,
        *,
        config: CoordinatorConfig,
        store: Store,
        db: DbCall,
        recorder: UsageRecorder,
        projects: ProjectService,
    ) -> None:
        self.config = config
        self.store = store
        self.db = db
        #: where measured work is written (the coordinator feeds it).
        self.recorder = recorder
        self.projects = projects
        self._token: str | None = None

    async def start(self) -> None:
        """Make sure the internal token exists, and start writing records."""
        self._token = await self.db(ensure_internal_token, self.config)
        self.recorder.start()

    async def stop(self) -> None:
        """Write the last records."""
        await self.recorder.stop()

    @property
    def prices(self) -> Prices:
        """The configured price table."""
        c = self.config
        return Prices(
            c.price_cpu_hour, c.price_gpu_hour, c.price_inference_1k_items, c.price_currency
        )

    async def rows(self, **query: Any) -> list[UsageRow]:
        """Grouped usage rows (after writing what is queued, so answers are current)."""
        await self.recorder.flush()
        return await self.db(grouped, self.store, **query)

    async def window(self, hours: int) -> tuple[float, float, dict[str, Any]]:
        """The last ``hours`` up to now, after writing what is queued (so it falls inside)."""
        await self.recorder.flush()
        until = time.time()
        since = until - hours * 3600
        return since, until, {"hours": hours, "from": _iso(since), "to": _iso(until)}

    # ----------------------------------------------------------------- users
    async def usage(self, principal: Principal, hours: int) -> dict[str, Any]:
        """``GET /usage``: the caller's totals and per-kind figures over ``hours``."""
        since, until, window = await self.window(hours)
        rows = await self.rows(since=since, until=until, by=("kind",), user_id=principal.user_id)
        return {
            "user_id": principal.user_id,
            "window": window,
            **summary(rows, self.prices),
            "prices": self.prices.view(),
        }

    async def hourly(self, principal: Principal, hours: int) -> dict[str, Any]:
        """``GET /usage/hourly``: one entry per hour with activity."""
        since, until, window = await self.window(hours)
        rows = await self.rows(
            since=since, until=until, by=("hour", "kind"), user_id=principal.user_id
        )
        return {
            "user_id": principal.user_id,
            "window": window,
            "data": hourly(rows, self.prices),
            "prices": self.prices.view(),
        }

    async def project(
        self, principal: Principal, project_id: str, hours: int | None
    ) -> dict[str, Any]:
        """``GET /usage/projects/{id}``: since the project began (or over ``hours``)."""
        project = await self.projects.get(principal, project_id)  # 404 for others' projects
        if hours is None:
            age_h = (time.time() - as_utc(project.created_at).timestamp()) / 3600
            hours = min(MAX_HOURS, max(1, int(age_h) + 1))
        since, until, window = await self.window(hours)
        rows = await self.rows(since=since, until=until, by=("kind",), project_id=project_id)
        return {
            "project_id": project_id,
            "user_id": project.user_id,
            "window": window,
            **summary(rows, self.prices),
            "prices": self.prices.view(),
        }

    async def admin(self, principal: Principal, hours: int) -> dict[str, Any]:
        """``GET /admin/usage``: every user's figures (admins only)."""
        if not principal.is_admin:
            raise Forbidden("usage of all users needs an admin key")
        since, until, window = await self.window(hours)
        rows = await self.rows(since=since, until=until, by=("user_id", "kind"))
        return {
            "window": window,
            "totals": summary(rows, self.prices)["totals"],
            "users": per_user(rows, self.prices),
            "prices": self.prices.view(),
        }

    # -------------------------------------------------------------- internal
    def check_token(self, given: str | None) -> None:
        """401 unless ``given`` is the internal token (compared in constant time)."""
        if not given:
            raise AuthRequired("send the X-Internal-Token header")
        if self._token is None or not hmac.compare_digest(given.encode(), self._token.encode()):
            raise AuthInvalid("the internal token is not valid")

    async def internal(
        self, token: str | None, start: str | None, end: str | None, *, failed: bool
    ) -> dict[str, Any]:
        """``GET /internal/uuid-usage`` (successes) or ``.../errors`` (failures).

        ``start`` (required) and ``end`` (default: the current hour) are UTC
        hours written ``YYYY-MM-DDTHH``, both included. The window rolls: hours
        older than :data:`INTERNAL_WINDOW_HOURS` are not reported, so an older
        ``from`` is moved up to the window's first hour (the answer says so).
        """
        self.check_token(token)
        now_hour = int(time.time()) // 3600
        first = now_hour - INTERNAL_WINDOW_HOURS + 1
        if start is None:
            raise BadRequest(
                "from is required: an hour written YYYY-MM-DDTHH (UTC)", details={"field": "from"}
            )
        begin = _hour_arg("from", start)
        finish = now_hour if end is None else _hour_arg("to", end)
        if finish < begin:
            raise BadRequest("to is before from", details={"field": "to"})
        begin, finish = max(begin, first), min(finish, now_hour)
        data: list[dict[str, Any]] = []
        if begin <= finish:
            rows = await self.rows(
                since=begin * 3600.0,
                until=(finish + 1) * 3600.0,
                by=("user_id", "hour", "failed", "gpu"),
            )
            data = uuid_usage(rows, failed=failed)
        return {
            "from": hour_label(begin),
            "to": hour_label(max(begin, finish)),
            "window_hours": INTERNAL_WINDOW_HOURS,
            "data": data,
        }


def _hour_arg(name: str, value: str) -> int:
    try:
        return parse_hour(value)
    except ValueError as exc:
        raise BadRequest(str(exc), details={"field": name, "format": "YYYY-MM-DDTHH"}) from None
