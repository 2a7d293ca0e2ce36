"""Routes for alerts: list and filter them, read one, acknowledge it, list the rules."""

from __future__ import annotations

from datetime import datetime

from tornado import web

from stratalab.errors import BadRequest
from stratalab.ids import as_utc
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.scheduler.alert_rules import SEVERITIES, STATUSES
from stratalab.scheduler.alert_schemas import AlertAcknowledge


class AlertsHandler(ApiHandler):
    """``/alerts?severity&status&rule&from&to``."""

    async def get(self) -> None:
        """The caller's alerts (every alert for admins), newest first."""
        since, until = self.query_time("from"), self.query_time("to")
        if since is not None and until is not None and since > until:
            raise BadRequest("from must not be after to", details={"field": "from"})
        offset, size = self.page()
        rules = self.get_query_argument("rule", None)
        items, total = await self.coordinator.alerts.list_alerts(
            self.principal(),
            severities=self.query_list("severity", SEVERITIES),
            statuses=self.query_list("status", STATUSES),
            rules=[r for r in rules.split(",") if r] if rules else None,
            since=since,
            until=until,
            offset=offset,
            limit=size,
        )
        self.reply_page(items, total, offset, size)

    def query_time(self, name: str) -> datetime | None:
        """An ISO 8601 time query parameter as UTC (no zone: UTC)."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return None
        try:
            return as_utc(datetime.fromisoformat(raw.strip()))
        except ValueError:
            raise BadRequest(
                f"{name} must be an ISO 8601 time such as 2026-01-31T12:00:00Z",
                details={"field": name},
            ) from None


class AlertRulesHandler(ApiHandler):
    """``/alerts/rules``."""

    async def get(self) -> None:
        """The rules in force (defaults changed by ``StrataLab.alert_rules``)."""
        self.principal()
        self.reply(self.coordinator.alerts.rules_view())


class AlertHandler(ApiHandler):
    """``/alerts/{id}``."""

    async def get(self, alert_id: str) -> None:
        """One alert."""
        self.reply(await self.coordinator.alerts.get(self.principal(), alert_id))


class AlertAcknowledgeHandler(ApiHandler):
    """``/alerts/{id}/acknowledge``."""

    async def post(self, alert_id: str) -> None:
        """Record that the caller has seen the alert, with an optional ``comment``."""
        req = self.body(AlertAcknowledge, optional=True)
        self.reply(
            await self.coordinator.alerts.acknowledge(self.principal(), alert_id, req.comment)
        )


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The alert routes under ``prefix``."""
    aid = r"(?P<alert_id>[A-Za-z0-9_-]{1,64})"
    return [
        (f"{prefix}/alerts", AlertsHandler),
        (f"{prefix}/alerts/rules", AlertRulesHandler),
        (f"{prefix}/alerts/{aid}", AlertHandler),
        (f"{prefix}/alerts/{aid}/acknowledge", AlertAcknowledgeHandler),
    ]
