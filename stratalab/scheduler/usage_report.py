"""The shapes of the usage answers, from grouped usage rows (pure functions).

Kept apart from SQL and HTTP so the arithmetic (cost from the price table,
hour buckets, the per-user internal format) is unit-tested on plain rows.

Cost of a group of records::

    cpu_ms / 3.6e6 * price_cpu_hour + gpu_ms / 3.6e6 * price_gpu_hour
      + items / 1000 * price_inference_1k_items     (inference and batch only)

Hours are UTC and written ``YYYY-MM-DDTHH`` (the DCP seed's format).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from stratalab.scheduler.usage_queries import UsageRow

MS_PER_HOUR = 3_600_000.0
#: kinds whose items are priced per thousand (served requests).
ITEM_PRICED = frozenset({"inference", "batch"})
_HOUR = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})$")


@dataclass(frozen=True)
class Prices:
    """The configured price table."""

    cpu_hour: float
    gpu_hour: float
    inference_1k_items: float
    currency: str = "USD"

    def cost(self, kind: str | None, cpu_ms: float, gpu_ms: float, items: int) -> float:
        """What one group of records costs (items priced for inference and batch only)."""
        cost = cpu_ms / MS_PER_HOUR * self.cpu_hour + gpu_ms / MS_PER_HOUR * self.gpu_hour
        if kind in ITEM_PRICED:
            cost += items / 1000.0 * self.inference_1k_items
        return cost

    def view(self) -> dict[str, Any]:
        """The price table as the usage answers show it."""
        return {
            "currency": self.currency,
            "cpu_hour": self.cpu_hour,
            "gpu_hour": self.gpu_hour,
            "inference_per_1k_items": self.inference_1k_items,
        }


def hour_label(hour: int) -> str:
    """``YYYY-MM-DDTHH`` (UTC) of a unix hour."""
    return datetime.fromtimestamp(hour * 3600, timezone.utc).strftime("%Y-%m-%dT%H")


def parse_hour(text: str) -> int:
    """The unix hour of ``YYYY-MM-DDTHH`` (UTC); ValueError if it is not one."""
    match = _HOUR.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an hour in the form YYYY-MM-DDTHH (UTC)")
    year, month, day, hour = (int(g) for g in match.groups())
    try:
        moment = datetime(year, month, day, hour, tzinfo=timezone.utc)
    except ValueError:
        raise ValueError(f"{text!r} is not a real hour (YYYY-MM-DDTHH, UTC)") from None
    return int(moment.timestamp()) // 3600


def figures(rows: Iterable[UsageRow], prices: Prices) -> dict[str, Any]:
    """Totals of rows: milliseconds, hours, counts, energy (None if unmeasured) and cost."""
    cpu = gpu = cost = energy = 0.0
    tasks = items = errors = measured = 0
    for row in rows:
        cpu += row.cpu_ms
        gpu += row.gpu_ms
        tasks += row.tasks
        items += row.items
        errors += row.errors
        cost += prices.cost(row.kind, row.cpu_ms, row.gpu_ms, row.items)
        if row.energy_j is not None:
            energy += row.energy_j
            measured += row.energy_records
    return {
        "cpu_ms": round(cpu, 3),
        "gpu_ms": round(gpu, 3),
        "cpu_hours": round(cpu / MS_PER_HOUR, 9),
        "gpu_hours": round(gpu / MS_PER_HOUR, 9),
        "tasks": tasks,
        "items": items,
        "errors": errors,
        "energy_j": round(energy, 3) if measured else None,
        "cost": round(cost, 9),
    }


def by_kind(rows: Iterable[UsageRow], prices: Prices) -> dict[str, dict[str, Any]]:
    """:func:`figures` per kind of work (only kinds with records)."""
    groups: dict[str, list[UsageRow]] = defaultdict(list)
    for row in rows:
        groups[row.kind or "unknown"].append(row)
    return {kind: figures(group, prices) for kind, group in sorted(groups.items())}


def summary(rows: Sequence[UsageRow], prices: Prices) -> dict[str, Any]:
    """``totals`` and ``by_kind`` of rows grouped at least by kind."""
    return {"totals": figures(rows, prices), "by_kind": by_kind(rows, prices)}


def hourly(rows: Sequence[UsageRow], prices: Prices) -> list[dict[str, Any]]:
    """One entry per hour with activity, oldest first (rows grouped by hour and kind)."""
    hours: dict[int, list[UsageRow]] = defaultdict(list)
    for row in rows:
        if row.hour is not None:
            hours[row.hour].append(row)
    return [
        {
            "hour": hour_label(hour),
            "start": datetime.fromtimestamp(hour * 3600, timezone.utc)
            .isoformat()
            .replace("+00:00", "Z"),
            **summary(group, prices),
        }
        for hour, group in sorted(hours.items())
    ]


def per_user(rows: Sequence[UsageRow], prices: Prices) -> list[dict[str, Any]]:
    """:func:`summary` per user, most expensive first (rows grouped by user and kind)."""
    users: dict[str, list[UsageRow]] = defaultdict(list)
    for row in rows:
        users[row.user_id or ""].append(row)
    out = [{"user_id": user, **summary(group, prices)} for user, group in users.items()]
    return sorted(out, key=lambda u: (-u["totals"]["cost"], u["user_id"]))


def uuid_usage(rows: Sequence[UsageRow], *, failed: bool) -> list[dict[str, Any]]:
    """The internal per-user, per-hour format of successes (or of failures).

    Rows come grouped by user, hour, ``failed`` and ``gpu``. A task that used
    a GPU (``gpu_ms > 0``) counts under ``gpu_tasks``, any other under
    ``cpu_tasks``; milliseconds are whole numbers as in the DCP seed. Only
    user-hours with activity appear, ordered by hour, then user.
    """
    cells: dict[tuple[int, str], dict[str, Any]] = {}
    for row in rows:
        if row.failed is not failed or row.hour is None:
            continue
        key = (row.hour, row.user_id or "")
        cell = cells.setdefault(
            key,
            {
                "uuid": key[1],
                "hour": hour_label(key[0]),
                "cpu_ms": 0.0,
                "gpu_ms": 0.0,
                "cpu_tasks": 0,
                "gpu_tasks": 0,
            },
        )
        cell["cpu_ms"] += row.cpu_ms
        cell["gpu_ms"] += row.gpu_ms
        cell["gpu_tasks" if row.gpu else "cpu_tasks"] += row.tasks
    out = []
    for _, cell in sorted(cells.items()):
        cell["cpu_ms"] = round(cell["cpu_ms"])
        cell["gpu_ms"] = round(cell["gpu_ms"])
        out.append(cell)
    return out
