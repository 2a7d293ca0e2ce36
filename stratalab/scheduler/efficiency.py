"""Efficiency figures from usage rows and training metrics (pure functions).

Items per CPU-second and per GPU-second, joules per item where energy was
measured, time-to-accuracy curves, scaling with the number of workers, and
throughput per hour. Kept apart from SQL and HTTP so the maths is
unit-tested on plain values. A figure with nothing to divide by is ``None``,
never 0 or a guess.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stratalab.scheduler.usage_queries import UsageRow
from stratalab.scheduler.usage_report import hour_label

#: what a power answer says when no worker can measure energy.
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Point:
    """One global (per-round) training metrics point."""

    ts: float
    round: int
    values: Mapping[str, float]


def _ratio(num: float | None, den: float) -> float | None:
    if num is None or den <= 0:
        return None
    return round(num / den, 6)


def efficiency(rows: Iterable[UsageRow]) -> dict[str, Any]:
    """Totals of rows with items per CPU/GPU second and joules per item."""
    cpu = gpu = 0.0
    items = tasks = errors = measured = 0
    energy = 0.0
    for row in rows:
        cpu += row.cpu_ms
        gpu += row.gpu_ms
        items += row.items
        tasks += row.tasks
        errors += row.errors
        if row.energy_j is not None:
            energy += row.energy_j
            measured += row.energy_records
    energy_j = round(energy, 3) if measured else None
    return {
        "cpu_ms": round(cpu, 3),
        "gpu_ms": round(gpu, 3),
        "items": items,
        "tasks": tasks,
        "errors": errors,
        "error_rate": _ratio(float(errors), float(tasks)),
        "items_per_cpu_s": _ratio(float(items), cpu / 1000.0),
        "items_per_gpu_s": _ratio(float(items), gpu / 1000.0),
        "energy_j": energy_j,
        "joules_per_item": _ratio(energy_j, float(items)),
    }


def grouped_efficiency(rows: Iterable[UsageRow], key: str) -> dict[str, dict[str, Any]]:
    """:func:`efficiency` per value of ``key`` (``kind`` or ``pool``)."""
    groups: dict[str, list[UsageRow]] = defaultdict(list)
    for row in rows:
        groups[str(getattr(row, key) or "unknown")].append(row)
    return {name: efficiency(group) for name, group in sorted(groups.items())}


def power_status(probes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One ``power_source`` from each worker's :func:`stratalab.kernels.power.probe`.

    ``unavailable`` (with the workers' reasons) when no worker can read an
    energy counter; otherwise the sources found, joined with ``,``.
    """
    sources = sorted({str(p.get("source")) for p in probes.values()} - {UNAVAILABLE})
    reasons = sorted({str(p["reason"]) for p in probes.values() if p.get("reason")})
    if not probes:
        reasons = ["no worker answered the power probe"]
    return {
        "power_source": ",".join(sources) if sources else UNAVAILABLE,
        "power_reason": None if sources else "; ".join(reasons),
        "workers": {w: p.get("source") for w, p in sorted(probes.items())},
    }


def tta(points: Sequence[Point], began: float, target: float | None) -> dict[str, Any]:
    """A time-to-accuracy curve: validation accuracy against seconds since ``began``.

    ``time_to_target_s`` is the first point at or above ``target`` (None if
    never reached or no target). Points without ``val_accuracy`` are left out.
    """
    curve = [
        {
            "round": p.round,
            "elapsed_s": round(max(0.0, p.ts - began), 3),
            "val_accuracy": float(p.values["val_accuracy"]),
        }
        for p in sorted(points, key=lambda p: (p.ts, p.round))
        if "val_accuracy" in p.values
    ]
    reached = None
    if target is not None:
        reached = next((c["elapsed_s"] for c in curve if c["val_accuracy"] >= target), None)
    best = max((c["val_accuracy"] for c in curve), default=None)
    return {
        "target_accuracy": target,
        "time_to_target_s": reached,
        "best_val_accuracy": best,
        "points": curve,
    }


def scaling(points: Iterable[Point]) -> list[dict[str, Any]]:
    """Training throughput against the number of workers that reported in a round.

    Per worker count: the mean samples/s over those rounds, the same per
    worker, and the scaling efficiency, i.e. per-worker throughput relative
    to that of the smallest worker count seen (1.0 is linear scaling).
    """
    by_workers: dict[int, list[float]] = defaultdict(list)
    for p in points:
        workers, rate = p.values.get("workers"), p.values.get("samples_per_s")
        if workers is None or rate is None or workers < 1:
            continue
        by_workers[int(workers)].append(float(rate))
    out = []
    base: float | None = None
    for workers, rates in sorted(by_workers.items()):
        mean = sum(rates) / len(rates)
        per_worker = mean / workers
        if base is None:
            base = per_worker
        out.append(
            {
                "workers": workers,
                "rounds": len(rates),
                "samples_per_s": round(mean, 3),
                "per_worker_samples_per_s": round(per_worker, 3),
                "efficiency": _ratio(per_worker, base) if base else None,
            }
        )
    return out


def power_chart(rows: Sequence[UsageRow], status: Mapping[str, Any]) -> dict[str, Any]:
    """Energy per hour where records measured it, or ``available: false`` and why."""
    points = [
        {
            "hour": hour_label(row.hour),
            "energy_j": round(row.energy_j, 3),
            "records": row.energy_records,
            "joules_per_item": _ratio(row.energy_j, float(row.items)),
        }
        for row in sorted(rows, key=lambda r: r.hour or 0)
        if row.hour is not None and row.energy_j is not None
    ]
    if points:
        return {"available": True, "power_source": status["power_source"], "points": points}
    reason = status.get("power_reason") or "no work in this window measured energy"
    return {
        "available": False,
        "power_source": status["power_source"],
        "reason": reason,
        "points": [],
    }


def throughput(rows: Sequence[UsageRow]) -> list[dict[str, Any]]:
    """Items per hour and kind: per wall second of the hour and per compute second."""
    out = []
    for row in sorted(rows, key=lambda r: (r.hour or 0, r.kind or "")):
        if row.hour is None:
            continue
        out.append(
            {
                "hour": hour_label(row.hour),
                "kind": row.kind,
                "items": row.items,
                "tasks": row.tasks,
                "items_per_s": round(row.items / 3600.0, 6),
                "items_per_compute_s": _ratio(float(row.items), (row.cpu_ms + row.gpu_ms) / 1000),
            }
        )
    return out


def mean_rate(points: Iterable[Point], name: str = "samples_per_s") -> float | None:
    """The mean of one metric over points that carry it."""
    values = [float(p.values[name]) for p in points if name in p.values]
    return round(sum(values) / len(values), 3) if values else None
