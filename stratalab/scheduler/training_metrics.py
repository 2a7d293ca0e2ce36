"""Training metrics: step points from workers, round points from the loop, and reads.

Workers publish step metrics on the Dask ``METRICS`` topic (architecture
decision 12); the round loop adds one global point per round (aggregated
loss and accuracy, validation figures, samples/s, barrier latency). Points go
to subscribers at once (the ``metrics`` bus topic feeds the SSE stream) and
to the store in one transaction every half second.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from stratalab.scheduler.db import TrainingMetric
from stratalab.scheduler.events import EventBus
from stratalab.scheduler.records import RecordSink
from stratalab.scheduler.store import Store

logger = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]

#: Step-event fields that are numbers worth keeping.
STEP_FIELDS = ("loss", "accuracy", "samples_per_s")


class MetricsSink:
    """Publishes metrics points live and writes them in batches (a :class:`RecordSink`)."""

    def __init__(self, store: Store, bus: EventBus, db: DbCall, flush_s: float = 0.5) -> None:
        self.bus = bus
        self.rows = RecordSink(store, db, flush_interval_s=flush_s, table=TrainingMetric)
        #: the attempt whose step events are current, per job (older ones are dropped).
        self.attempts: dict[str, int] = {}

    def add(
        self, job_id: str, round: int, step: int, values: dict[str, float], worker: str | None
    ) -> None:
        """Queue one point and publish it."""
        clean = {k: float(v) for k, v in values.items() if _finite(v)}
        point = {
            "job_id": job_id,
            "ts": time.time(),
            "round": round,
            "step": step,
            "worker": worker,
            "values": clean,
        }
        self.rows.add(**point)
        self.bus.publish("metrics", point)

    def on_worker_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """A step event from a worker's training task (Dask ``subscribe_topic`` handler)."""
        _, msg = event
        job_id = str(msg.get("job_id"))
        if self.attempts.get(job_id) != msg.get("attempt"):
            return  # a task of an earlier attempt, or of a job this server does not run
        values = {k: msg[k] for k in STEP_FIELDS if k in msg}
        self.add(
            job_id, int(msg.get("round", 0)), int(msg.get("step", 0)), values, msg.get("worker")
        )

    async def flush(self) -> None:
        """Write what is buffered."""
        await self.rows.flush()

    async def run(self, closing: Callable[[], bool]) -> None:
        """Flush every interval until closing."""
        await self.rows.run(closing)


def read_points(
    store: Store, job_id: str, after_id: int = 0, limit: int = 100_000
) -> list[TrainingMetric]:
    """A job's stored points, oldest first (bounded)."""
    with store.session() as s:
        return list(
            s.scalars(
                sa.select(TrainingMetric)
                .where(TrainingMetric.job_id == job_id, TrainingMetric.id > after_id)
                .order_by(TrainingMetric.id)
                .limit(limit)
            )
        )


def downsample(series: list[dict[str, Any]], max_points: int) -> list[dict[str, Any]]:
    """At most ``max_points`` of a series, evenly spaced, always keeping the last."""
    if max_points <= 0 or len(series) <= max_points:
        return series
    if max_points == 1:
        return [series[-1]]
    stride = (len(series) - 1) / (max_points - 1)
    return [series[round(i * stride)] for i in range(max_points)]


def metrics_view(job_id: str, points: list[TrainingMetric], max_points: int) -> dict[str, Any]:
    """``GET /jobs/{id}/metrics``: global series per metric and per-worker step series."""
    series: dict[str, list[dict[str, Any]]] = {}
    workers: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for p in points:
        target = series if p.worker is None else workers.setdefault(p.worker, {})
        for name, value in (p.values or {}).items():
            target.setdefault(name, []).append(
                {"step": p.step, "round": p.round, "value": value, "ts": round(p.ts, 3)}
            )
    return {
        "job_id": job_id,
        "metrics": {k: downsample(v, max_points) for k, v in series.items()},
        "workers": {
            w: {k: downsample(v, max_points) for k, v in m.items()} for w, m in workers.items()
        },
        "last_id": points[-1].id if points else 0,
    }


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
