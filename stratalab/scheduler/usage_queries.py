"""Grouped, bounded reads of ``usage_records`` for usage, billing and efficiency.

Every read sums over a time window (``ts`` between two unix times, so the
``(user_id, ts)``, ``(project_id, ts)`` or ``ts`` index bounds the scan)
and groups in SQL, so a window of a million records returns a few hundred
rows at most. The pure shaping of those rows (costs, hourly buckets, the
internal per-user format) lives in :mod:`stratalab.scheduler.usage_report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stratalab.scheduler.db import UsageRecord
from stratalab.scheduler.store import Store

#: columns a query may group by.
GROUPS = ("user_id", "project_id", "job_id", "kind", "pool", "hour", "failed", "gpu")
#: most groups one read returns (a guard: real windows give far fewer).
MAX_GROUPS = 100_000


@dataclass(frozen=True)
class UsageRow:
    """Sums over one group of usage records (group columns not asked for are None)."""

    user_id: str | None = None
    project_id: str | None = None
    job_id: str | None = None
    kind: str | None = None
    pool: str | None = None
    #: unix hour (``ts // 3600``).
    hour: int | None = None
    #: whether the group's records are failures (``errors > 0``).
    failed: bool | None = None
    #: whether the group's records used a GPU (``gpu_ms > 0``).
    gpu: bool | None = None
    cpu_ms: float = 0.0
    gpu_ms: float = 0.0
    tasks: int = 0
    items: int = 0
    errors: int = 0
    #: joules summed over the records that measured energy (None if none did).
    energy_j: float | None = None
    #: records that measured energy, and records in all.
    energy_records: int = 0
    records: int = 0
    #: first and last record time in the group (unix seconds).
    first_ts: float | None = None
    last_ts: float | None = None


def _hour(dialect: str) -> Any:
    """``floor(ts / 3600)`` as an integer in this dialect (ts is never negative)."""
    r = UsageRecord
    if dialect == "sqlite":
        return sa.cast(r.ts / 3600, sa.Integer)  # SQLite's CAST truncates
    return sa.cast(sa.func.floor(r.ts / 3600), sa.BigInteger)  # PostgreSQL's CAST rounds


def _group_column(name: str, dialect: str) -> Any:
    r = UsageRecord
    if name == "hour":
        return _hour(dialect)
    if name == "failed":
        return sa.case((r.errors > 0, 1), else_=0)
    if name == "gpu":
        return sa.case((r.gpu_ms > 0, 1), else_=0)
    return getattr(r, name)


def grouped(
    store: Store,
    *,
    since: float,
    until: float,
    by: Sequence[str] = (),
    user_id: str | None = None,
    project_id: str | None = None,
    job_id: str | None = None,
    kinds: Sequence[str] = (),
    pool: str | None = None,
) -> list[UsageRow]:
    """Sums of the records with ``since <= ts < until`` matching the filters, per group.

    Parameters
    ----------
    store
        The database.
    since, until
        The window in unix seconds (always give one: it is what keeps the scan bounded).
    by
        Group columns, from :data:`GROUPS`; none gives one row (or none without records).
    user_id, project_id, job_id, kinds, pool
        Filters; ``job_id`` is only selective inside a user's or project's window.

    Returns
    -------
    list of UsageRow
        One row per group with activity, ordered by the group columns.
    """
    unknown = set(by) - set(GROUPS)
    if unknown:
        raise ValueError(f"cannot group usage by {sorted(unknown)}")
    r = UsageRecord
    keys = [_group_column(name, store.dialect).label(name) for name in by]
    sums = [
        sa.func.sum(r.cpu_ms).label("cpu_ms"),
        sa.func.sum(r.gpu_ms).label("gpu_ms"),
        sa.func.sum(r.tasks).label("tasks"),
        sa.func.sum(r.items).label("items"),
        sa.func.sum(r.errors).label("errors"),
        sa.func.sum(r.energy_j).label("energy_j"),
        sa.func.count(r.energy_j).label("energy_records"),
        sa.func.count().label("records"),
        sa.func.min(r.ts).label("first_ts"),
        sa.func.max(r.ts).label("last_ts"),
    ]
    conds: list[Any] = [r.ts >= since, r.ts < until]
    if user_id is not None:
        conds.append(r.user_id == user_id)
    if project_id is not None:
        conds.append(r.project_id == project_id)
    if job_id is not None:
        conds.append(r.job_id == job_id)
    if kinds:
        conds.append(r.kind.in_(list(kinds)))
    if pool is not None:
        conds.append(r.pool == pool)
    query = sa.select(*keys, *sums).where(*conds)
    if keys:
        query = query.group_by(*keys).order_by(*keys)
    with store.session() as s:
        result = s.execute(query.limit(MAX_GROUPS)).mappings().all()
    return [_row(m, by) for m in result if m["records"]]


def _row(m: Any, by: Sequence[str]) -> UsageRow:
    values: dict[str, Any] = {name: m[name] for name in by}
    for flag in ("failed", "gpu"):
        if flag in values:
            values[flag] = bool(values[flag])
    if "hour" in values:
        values["hour"] = int(values["hour"])
    energy_records = int(m["energy_records"] or 0)
    return UsageRow(
        **values,
        cpu_ms=float(m["cpu_ms"] or 0.0),
        gpu_ms=float(m["gpu_ms"] or 0.0),
        tasks=int(m["tasks"] or 0),
        items=int(m["items"] or 0),
        errors=int(m["errors"] or 0),
        energy_j=float(m["energy_j"]) if energy_records else None,
        energy_records=energy_records,
        records=int(m["records"] or 0),
        first_ts=float(m["first_ts"]) if m["first_ts"] is not None else None,
        last_ts=float(m["last_ts"]) if m["last_ts"] is not None else None,
    )
