"""The efficiency actions, one method per route.

Efficiency reads the same usage records as billing (items per CPU/GPU
second, energy per item, per kind and per worker pool) plus the training
metrics (time-to-accuracy curves, samples/s against workers). Whether
energy can be measured at all is asked of the workers themselves
(:func:`stratalab.kernels.power.probe` through ``client.run``), so an answer
says ``"power_source": "unavailable"`` and why, instead of a made-up figure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from distributed import Client

from stratalab.errors import BadRequest
from stratalab.ids import as_utc, isoformat
from stratalab.kernels import power
from stratalab.scheduler import efficiency as eff
from stratalab.scheduler.db import Job, JobEvent, TrainingMetric
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.states import ACTIVE
from stratalab.scheduler.store import Store
from stratalab.scheduler.usage_api import UsageApi

logger = logging.getLogger(__name__)

OwnedJob = Callable[[Principal, str], Awaitable[Job]]
ClientCall = Callable[[], Client | None]

#: chart types of ``/efficiency/chart/{type}``.
CHARTS = ("tta", "scaling", "power", "throughput")
#: seconds a power probe of the workers stays valid.
PROBE_TTL_S = 60.0
#: most global training points read per chart.
MAX_POINTS = 100_000
#: seconds of recent usage the active view turns into current rates.
RECENT_S = 60.0


def _global_points(store: Store, job_ids: list[str]) -> dict[str, list[eff.Point]]:
    """Per-round (worker is NULL) training points of some jobs, oldest first (bounded)."""
    out: dict[str, list[eff.Point]] = {j: [] for j in job_ids}
    if not job_ids:
        return out
    m = TrainingMetric
    query = (
        sa.select(m.job_id, m.ts, m.round, m.values)
        .where(m.job_id.in_(job_ids), m.worker.is_(None))
        .order_by(m.id)
        .limit(MAX_POINTS)
    )
    with store.session() as s:
        for job_id, ts, rnd, values in s.execute(query).all():
            out[job_id].append(eff.Point(float(ts), int(rnd), dict(values or {})))
    return out


def _training_began(store: Store, job_ids: list[str]) -> dict[str, float]:
    """When each job first entered TRAINING (the zero of its time-to-accuracy)."""
    if not job_ids:
        return {}
    e = JobEvent
    query = (
        sa.select(e.job_id, sa.func.min(e.ts))
        .where(e.job_id.in_(job_ids), e.to_state == "TRAINING")
        .group_by(e.job_id)
    )
    with store.session() as s:
        return {j: as_utc(ts).timestamp() for j, ts in s.execute(query).all() if ts is not None}


def _target(job: Job) -> float | None:
    value = ((job.spec or {}).get("training_config") or {}).get("target_accuracy")
    return float(value) if value is not None else None


class EfficiencyApi:
    """Efficiency overview, per-pool comparison, charts, active runs and one job."""

    def __init__(
        self,
        *,
        store: Store,
        db: Callable[..., Awaitable[Any]],
        usage: UsageApi,
        client: ClientCall,
        owned_job: OwnedJob,
    ) -> None:
        self.store = store
        self.db = db
        self.usage = usage
        self._client = client
        self._owned_job = owned_job
        self._probe: tuple[float, dict[str, Any]] | None = None

    # ----------------------------------------------------------------- power
    async def power(self) -> dict[str, Any]:
        """Which energy counters the workers have (probed, cached for a minute)."""
        now = time.monotonic()
        if self._probe is not None and now - self._probe[0] < PROBE_TTL_S:
            return self._probe[1]
        probes: dict[str, Any] = {}
        client = self._client()
        if client is not None:
            try:
                answers = await asyncio.wait_for(client.run(power.probe, on_error="return"), 10)
                probes = {w: a for w, a in answers.items() if isinstance(a, dict)}
            except (asyncio.TimeoutError, OSError) as exc:
                logger.warning("could not probe the workers' energy counters: %s", exc)
        status = eff.power_status(probes)
        if probes:
            self._probe = (now, status)
        return status

    # -------------------------------------------------------------- overview
    async def overview(self, principal: Principal, hours: int, pool: str | None) -> dict[str, Any]:
        """``GET /efficiency``: rates per kind of work over ``hours``."""
        since, until, window = await self.usage.window(hours)
        rows = await self.usage.rows(
            since=since, until=until, by=("kind",), user_id=principal.owner_filter(), pool=pool
        )
        totals = eff.efficiency(rows)
        status = await self.power()
        measured = totals["energy_j"] is not None
        return {
            "window": window,
            "pool": pool,
            "totals": totals,
            "by_kind": eff.grouped_efficiency(rows, "kind"),
            "power": (
                {"energy_j": totals["energy_j"], "joules_per_item": totals["joules_per_item"]}
                if measured
                else None
            ),
            **status,
        }

    async def comparison(self, principal: Principal, hours: int) -> dict[str, Any]:
        """``GET /efficiency/comparison``: the same figures per worker pool (gpu, cpu)."""
        since, until, window = await self.usage.window(hours)
        rows = await self.usage.rows(
            since=since, until=until, by=("pool", "kind"), user_id=principal.owner_filter()
        )
        pools: dict[str, Any] = {}
        for name, figures in eff.grouped_efficiency(rows, "pool").items():
            in_pool = [r for r in rows if str(r.pool or "unknown") == name]
            pools[name] = {**figures, "by_kind": eff.grouped_efficiency(in_pool, "kind")}
        return {"window": window, "pools": pools, **await self.power()}

    # ---------------------------------------------------------------- charts
    async def chart(
        self, principal: Principal, kind: str, *, hours: int, job_id: str | None, limit: int
    ) -> dict[str, Any]:
        """``GET /efficiency/chart/{type}``: chart-ready series."""
        if kind not in CHARTS:
            raise BadRequest(f"unknown chart {kind!r}", details={"allowed": list(CHARTS)})
        if kind in ("tta", "scaling"):
            jobs = await self._training_jobs(principal, job_id, limit)
            ids = [j.id for j in jobs]
            points = await self.db(_global_points, self.store, ids)
            if kind == "scaling":
                every = [p for j in ids for p in points[j]]
                return {"type": kind, "job_ids": ids, "points": eff.scaling(every)}
            began = await self.db(_training_began, self.store, ids)
            series = []
            for job in jobs:
                zero = began.get(job.id, as_utc(job.created_at).timestamp())
                curve = eff.tta(points[job.id], zero, _target(job))
                series.append({"job_id": job.id, "name": job.name, "status": job.state, **curve})
            return {"type": kind, "series": series}
        since, until, window = await self.usage.window(hours)
        by = ("hour",) if kind == "power" else ("hour", "kind")
        rows = await self.usage.rows(
            since=since, until=until, by=by, user_id=principal.owner_filter()
        )
        if kind == "power":
            return {"type": kind, "window": window, **eff.power_chart(rows, await self.power())}
        return {"type": kind, "window": window, "points": eff.throughput(rows)}

    async def _training_jobs(
        self, principal: Principal, job_id: str | None, limit: int
    ) -> list[Job]:
        if job_id is not None:
            job = await self._owned_job(principal, job_id)
            if job.type != "training":
                raise BadRequest(f"{job_id} is a {job.type} job, not a training job")
            return [job]
        jobs, _ = await self.db(
            self.store.list_jobs, user_id=principal.owner_filter(), types=["training"], limit=limit
        )
        return list(jobs)

    # ---------------------------------------------------------------- active
    async def active(self, principal: Principal, limit: int) -> dict[str, Any]:
        """``GET /efficiency/active``: running jobs with their current rates."""
        jobs, total = await self.db(
            self.store.list_jobs,
            user_id=principal.owner_filter(),
            states=[s.value for s in ACTIVE],
            limit=limit,
        )
        await self.usage.recorder.flush()
        now = time.time()
        training = [j.id for j in jobs if j.type == "training"]
        points = await self.db(_global_points, self.store, training)
        recent = await self.usage.rows(
            since=now - RECENT_S, until=now + 1, by=("job_id",), user_id=principal.owner_filter()
        )
        rates = {r.job_id: r for r in recent if r.job_id}
        items = []
        for job in jobs:
            last = points[job.id][-1] if points.get(job.id) else None
            row = rates.get(job.id)
            started = job.started_at or job.created_at
            items.append(
                {
                    "job_id": job.id,
                    "type": job.type,
                    "status": job.state,
                    "started_at": isoformat(started),
                    "elapsed_s": round(now - as_utc(started).timestamp(), 3),
                    "round": last.round if last else None,
                    "samples_per_s": last.values.get("samples_per_s") if last else None,
                    "val_accuracy": last.values.get("val_accuracy") if last else None,
                    "items_per_s": round(row.items / RECENT_S, 3) if row else None,
                    "cpu_ms_last_minute": round(row.cpu_ms, 3) if row else None,
                }
            )
        return {"items": items, "total": total, "window_s": RECENT_S}

    # ------------------------------------------------------------------- job
    async def job(self, principal: Principal, job_id: str) -> dict[str, Any]:
        """``GET /efficiency/job/{id}``: what one job used and how fast it went."""
        job = await self._owned_job(principal, job_id)
        created = as_utc(job.created_at).timestamp()
        ended = as_utc(job.ended_at).timestamp() if job.ended_at else None
        until = (ended or time.time()) + 600  # records of the last task land just after
        rows = await self.usage.rows(
            since=created - 60, until=until, by=("kind",), user_id=job.user_id, job_id=job.id
        )
        out: dict[str, Any] = {
            "job_id": job.id,
            "type": job.type,
            "status": job.state,
            "duration_s": round((ended or time.time()) - created, 3),
            **eff.efficiency(rows),
            "by_kind": eff.grouped_efficiency(rows, "kind"),
            **await self.power(),
        }
        if job.type == "training":
            points = (await self.db(_global_points, self.store, [job.id]))[job.id]
            began = (await self.db(_training_began, self.store, [job.id])).get(job.id, created)
            curve = eff.tta(points, began, _target(job))
            out.update(
                rounds=len(points),
                samples_per_s=eff.mean_rate(points),
                best_val_accuracy=curve["best_val_accuracy"],
                time_to_target_s=curve["time_to_target_s"],
                scaling=eff.scaling(points),
            )
        return out
