"""Alerts: rules evaluated over live figures, kept in the store, published on the bus.

Every ``interval_s`` seconds (and at once when a job fails or the workers
change) the evaluator measures the figures the rules watch, from state
already in memory (the runner's workers and their heartbeats, the two
queues) and one bounded, indexed read (jobs that failed within the failure
window). :class:`~stratalab.scheduler.alert_rules.RuleTracker` says what to
raise and resolve; each change is committed, then published on the bus topic
``alerts`` (so the WebSocket and the dashboard stream carry it). One alert is
open per (rule, subject) while the condition holds; a restart adopts the open
ones instead of raising them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stratalab.errors import Conflict, NotFound
from stratalab.ids import as_utc, isoformat, new_id, utcnow
from stratalab.scheduler.alert_rules import (
    DEFAULT_RULES,
    OPEN,
    AlertRule,
    FailedJob,
    Raised,
    Resolved,
    RuleTracker,
    Sample,
    WorkerLossWatch,
    failure_samples,
    memory_samples,
    merge_rules,
    queue_wait_sample,
)
from stratalab.scheduler.cluster import WorkerInfo
from stratalab.scheduler.db import Alert, Job
from stratalab.scheduler.events import Event, EventBus
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.store import Store

if TYPE_CHECKING:
    from stratalab.scheduler.coordinator import Coordinator

logger = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]
#: most failed jobs one pass reads (the ``failed_jobs`` figure saturates there).
MAX_FAILED = 500
#: job types whose failure is no alert: a failed async inference request is an answer.
_QUIET_TYPES = ("inference",)


def alert_out(a: Alert) -> dict[str, Any]:
    """An alert as the API and the bus show it."""
    details = dict(a.details or {})
    return {
        "id": a.id,
        "rule": a.rule,
        "severity": a.severity,
        "status": a.status,
        "message": a.message,
        "metric": a.metric,
        "value": a.value,
        "threshold": a.threshold,
        "subject": a.subject,
        "job_id": details.get("job_id"),
        "user_id": a.user_id,
        "details": details,
        "started_at": isoformat(a.started_at),
        "updated_at": isoformat(a.updated_at),
        "resolved_at": isoformat(a.resolved_at),
        "acknowledged_at": isoformat(a.acknowledged_at),
        "acknowledged_by": a.acknowledged_by,
        "comment": a.comment,
    }


class AlertService:
    """Evaluates the rules, keeps the alerts, and answers ``/alerts``."""

    def __init__(
        self,
        *,
        store: Store,
        db: DbCall,
        bus: EventBus,
        workers: Callable[[], dict[str, WorkerInfo]],
        queued_since: Callable[[], Iterable[float]],
        rules: list[AlertRule],
        interval_s: float = 5.0,
        failed_window_s: float = 900.0,
        worker_window_s: float = 300.0,
    ) -> None:
        self.store = store
        self._db = db
        self.bus = bus
        self._workers = workers
        self._queued_since = queued_since
        #: the rules in force (defaults changed by configuration).
        self.rules = rules
        #: seconds between evaluations (a failed job or a worker change wakes it early).
        self.interval_s = interval_s
        #: how long a failed job counts for ``job_failed`` and ``failed_jobs``.
        self.failed_window_s = failed_window_s
        self.tracker = RuleTracker()
        self.worker_loss = WorkerLossWatch(worker_window_s)
        #: open alert id per (rule, subject).
        self._open: dict[tuple[str, str], str] = {}
        #: evaluation passes since start.
        self.passes = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_coordinator(cls, c: Coordinator) -> AlertService:
        """The service wired to a coordinator's store, bus, runner and training queue."""
        cfg = c.config

        def queued_since() -> list[float]:
            waits = [q.queued_at for q in c.runner.queue.values()]
            for job in c.training.queue.values():
                waits.append(as_utc(job.queued_at or job.created_at).timestamp())
            return waits

        return cls(
            store=c.store,
            db=c.db,
            bus=c.bus,
            workers=lambda: c.runner.workers,
            queued_since=queued_since,
            rules=merge_rules(DEFAULT_RULES, cfg.alert_rules),
            interval_s=cfg.alert_interval_s,
            failed_window_s=cfg.alert_failed_window_s,
            worker_window_s=cfg.alert_worker_window_s,
        )

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Adopt the open alerts from the store, then evaluate in the background."""
        rows = await self._db(_open_alerts, self.store)
        for a in rows:
            key = (a.rule, a.subject or "")
            self._open[key] = a.id
        self.tracker.adopt(self._open)
        if self.interval_s > 0:
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        """Stop evaluating."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        def wake(event: Event) -> bool:
            return event.topic == "workers" or event.data.get("status") == "FAILED"

        with self.bus.subscribe(("jobs", "workers"), maxsize=8, accept=wake) as woken:
            while True:
                try:
                    await self.evaluate()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("alert evaluation failed")
                await woken.get(timeout=self.interval_s)
                while woken.pending:  # a burst of failures is one pass (queued: no wait)
                    await woken.get(timeout=1.0)

    # ------------------------------------------------------------ evaluation
    async def evaluate(self, now: float | None = None) -> list[dict[str, Any]]:
        """One pass: measure, decide, commit and publish; returns the alerts that changed."""
        now = time.time() if now is None else now
        samples, measured = await self.measure(now)
        changes = self.tracker.evaluate(self.rules, samples, now, measured=measured)
        self.passes += 1
        out = []
        for change in changes:
            try:
                done = await (
                    self._raise(change) if isinstance(change, Raised) else self._resolve(change)
                )
            except sa.exc.SQLAlchemyError:
                logger.exception("could not store an alert change; retrying on the next pass")
                self._forget(change)
                continue
            if done is not None:
                out.append(done)
        return out

    def _forget(self, change: Raised | Resolved) -> None:
        """Undo the tracker's step for a change the store refused, so the next pass redoes it."""
        if isinstance(change, Raised):
            self.tracker.firing.discard((change.rule.name, change.sample.subject))
        elif (change.rule_name, change.subject) in self._open:
            self.tracker.firing.add((change.rule_name, change.subject))

    async def measure(self, now: float) -> tuple[list[Sample], set[str]]:
        """Every figure the rules can watch, and which metrics were measured this pass."""
        workers = list(self._workers().values())
        samples = [self.worker_loss.observe((w.id for w in workers), now)]
        samples += memory_samples(
            (w.id, _number(w.metrics.get("memory")), w.memory_limit) for w in workers
        )
        samples.append(queue_wait_sample(self._queued_since(), now))
        measured = {"workers_lost", "worker_memory_fraction", "queue_wait_s"}
        since = datetime.fromtimestamp(now - self.failed_window_s, tz=timezone.utc)
        try:
            failed = await self._db(_failed_since, self.store, since)
        except sa.exc.SQLAlchemyError:
            logger.warning("alerts: could not read failed jobs; keeping their alerts as they are")
        else:
            samples += failure_samples(failed)
            measured |= {"job_failed", "failed_jobs"}
        return samples, measured

    async def _raise(self, change: Raised) -> dict[str, Any]:
        rule, sample = change.rule, change.sample
        now = utcnow()
        alert = Alert(
            id=new_id("alert"),
            rule=rule.name,
            severity=rule.severity,
            status="active",
            message=change.message,
            metric=rule.metric,
            value=sample.value,
            threshold=float(rule.threshold),
            subject=sample.subject,
            user_id=sample.user_id,
            details={**sample.details, "description": rule.description},
            started_at=now,
            updated_at=now,
        )
        await self._db(_insert, self.store, alert)
        self._open[(rule.name, sample.subject)] = alert.id
        logger.warning("alert %s raised: %s", rule.name, alert.message)
        return self._publish("raised", alert)

    async def _resolve(self, change: Resolved) -> dict[str, Any] | None:
        key = (change.rule_name, change.subject)
        alert_id = self._open.get(key)
        if alert_id is None:
            return None
        alert = await self._db(_mark_resolved, self.store, alert_id, change.value)
        del self._open[key]
        return None if alert is None else self._publish("resolved", alert)

    def _publish(self, event: str, alert: Alert) -> dict[str, Any]:
        view = alert_out(alert)
        self.bus.publish("alerts", {"event": event, **view})
        return view

    # ------------------------------------------------------------------- API
    async def list_alerts(
        self,
        principal: Principal,
        *,
        severities: list[str] | None,
        statuses: list[str] | None,
        rules: list[str] | None,
        since: datetime | None,
        until: datetime | None,
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the alerts the caller may see, newest first."""
        q = sa.select(Alert)
        owner = principal.owner_filter()
        if owner is not None:
            q = q.where(Alert.user_id == owner)
        if severities:
            q = q.where(Alert.severity.in_(severities))
        if statuses:
            q = q.where(Alert.status.in_(statuses))
        if rules:
            q = q.where(Alert.rule.in_(rules))
        if since is not None:
            q = q.where(Alert.started_at >= since)
        if until is not None:
            q = q.where(Alert.started_at <= until)
        rows, total = await self._db(
            self.store.page, q, [Alert.started_at.desc(), Alert.id.desc()], offset, limit
        )
        return [alert_out(a) for a in rows], total

    async def get(self, principal: Principal, alert_id: str) -> dict[str, Any]:
        """One alert; another user's (or a platform alert, for a user) is 'not found'."""
        return alert_out(await self._visible(principal, alert_id))

    async def acknowledge(
        self, principal: Principal, alert_id: str, comment: str | None
    ) -> dict[str, Any]:
        """Record that a person has seen the alert (409 if someone already did)."""
        await self._visible(principal, alert_id)
        alert = await self._db(_acknowledge, self.store, alert_id, principal.user_id, comment)
        return self._publish("acknowledged", alert)

    async def _visible(self, principal: Principal, alert_id: str) -> Alert:
        alert = await self._db(_get, self.store, alert_id)
        if alert is None or not (principal.is_admin or alert.user_id == principal.user_id):
            raise NotFound(f"no alert {alert_id}")
        return alert

    def rules_view(self) -> dict[str, Any]:
        """``GET /alerts/rules``: the rules in force and the evaluator's settings."""
        return {
            "items": [r.as_dict() for r in self.rules],
            "interval_s": self.interval_s,
            "failed_window_s": self.failed_window_s,
            "worker_window_s": self.worker_loss.window_s,
        }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


# --------------------------------------------------------------- store calls
def _open_alerts(store: Store) -> list[Alert]:
    with store.session() as s:
        return list(s.scalars(sa.select(Alert).where(Alert.status.in_(OPEN))))


def _insert(store: Store, alert: Alert) -> None:
    with store.session() as s:
        s.add(alert)


def _get(store: Store, alert_id: str) -> Alert | None:
    with store.session() as s:
        return s.get(Alert, alert_id)


def _mark_resolved(store: Store, alert_id: str, value: float | None) -> Alert | None:
    with store.session() as s:
        alert = s.get(Alert, alert_id, with_for_update=True)
        if alert is None or alert.status == "resolved":
            return None
        now = utcnow()
        alert.status, alert.resolved_at, alert.updated_at = "resolved", now, now
        alert.details = {**(alert.details or {}), "resolved_value": value}
        return alert


def _acknowledge(store: Store, alert_id: str, user_id: str, comment: str | None) -> Alert:
    with store.session() as s:
        alert = s.get(Alert, alert_id, with_for_update=True)
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        if alert.acknowledged_at is not None:
            raise Conflict(
                f"alert {alert_id} was already acknowledged by {alert.acknowledged_by}",
                details={"acknowledged_at": isoformat(alert.acknowledged_at)},
            )
        now = utcnow()
        if alert.status == "active":
            alert.status = "acknowledged"
        alert.acknowledged_at, alert.acknowledged_by = now, user_id
        alert.comment, alert.updated_at = comment, now
        return alert


def _failed_since(store: Store, since: datetime) -> list[FailedJob]:
    q = (
        sa.select(Job.id, Job.user_id, Job.name, Job.error, Job.ended_at)
        .where(Job.state == "FAILED", Job.ended_at >= since, Job.type.not_in(_QUIET_TYPES))
        .order_by(Job.ended_at.desc())
        .limit(MAX_FAILED)
    )
    with store.session() as s:
        return [
            FailedJob(job_id, user_id, name, error, as_utc(ended).timestamp() if ended else 0.0)
            for job_id, user_id, name, error, ended in s.execute(q).all()
        ]
