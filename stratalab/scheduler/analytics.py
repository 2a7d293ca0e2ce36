"""Latency and throughput figures from request records (pure functions).

Kept apart from the store and the web layer so the maths is tested on plain
lists: percentiles over successful requests, throughput per time bucket, and
the same figures per worker pool (GPU vs CPU workers) and per worker.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

#: percentiles reported for latency and compute time.
PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class Row:
    """The columns of one request record that analytics reads."""

    ts: float
    latency_ms: float
    compute_ms: float
    error_code: str | None
    items: int
    kind: str
    worker: str | None
    pool: str | None


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p95/p99, mean and max (all ``None`` for no values)."""
    if not values:
        return {**{f"p{p}": None for p in PERCENTILES}, "mean": None, "max": None}
    arr = np.asarray(values, dtype=float)
    pct = np.percentile(arr, PERCENTILES)
    out: dict[str, float | None] = {
        f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, pct, strict=True)
    }
    out["mean"] = round(float(arr.mean()), 3)
    out["max"] = round(float(arr.max()), 3)
    return out


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    """Counts, error codes and distributions of a set of records."""
    ok = [r for r in rows if r.error_code is None]
    errors: dict[str, int] = defaultdict(int)
    for r in rows:
        if r.error_code is not None:
            errors[r.error_code] += 1
    span = (max(r.ts for r in rows) - min(r.ts for r in rows)) if rows else 0.0
    return {
        "requests": len(rows),
        "succeeded": len(ok),
        "errors": sum(errors.values()),
        "error_codes": dict(errors),
        "items": sum(r.items for r in ok),
        "latency_ms": distribution([r.latency_ms for r in ok]),
        "compute_ms": distribution([r.compute_ms for r in ok]),
        "requests_per_second": round(len(rows) / span, 3) if span > 0 else None,
    }


def throughput(rows: Sequence[Row], bucket_s: float | None = None) -> dict[str, Any]:
    """Requests, items and errors per time bucket (about 60 buckets by default)."""
    if not rows:
        return {"bucket_size": bucket_s, "points": []}
    start = min(r.ts for r in rows)
    span = max(r.ts for r in rows) - start
    if bucket_s is None:
        bucket_s = max(1.0, math.ceil(span / 60.0))
    buckets: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        b = buckets[int((r.ts - start) // bucket_s)]
        b[0] += 1
        b[1] += r.items if r.error_code is None else 0
        b[2] += 1 if r.error_code is not None else 0
    points = [
        {
            "t": datetime.fromtimestamp(start + i * bucket_s, tz=timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "requests": c[0],
            "items": c[1],
            "errors": c[2],
            "requests_per_second": round(c[0] / bucket_s, 3),
        }
        for i, c in sorted(buckets.items())
    ]
    return {"bucket_size": bucket_s, "points": points}


def grouped(rows: Iterable[Row], key: str) -> list[dict[str, Any]]:
    """:func:`summarize` per value of ``key`` (``pool``, ``worker`` or ``kind``)."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[str(getattr(r, key) or "unknown")].append(r)
    out = []
    for name, members in sorted(groups.items()):
        summary = summarize(members)
        out.append({key: name, **summary})
    return out


def analytics(rows: Sequence[Row], bucket_s: float | None = None) -> dict[str, Any]:
    """Everything ``GET /projects/{id}/analytics`` reports."""
    return {
        **summarize(rows),
        "throughput": throughput(rows, bucket_s),
        "by_pool": grouped(rows, "pool"),
        "by_worker": grouped(rows, "worker"),
        "by_kind": grouped(rows, "kind"),
    }
