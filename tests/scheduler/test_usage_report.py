"""Usage arithmetic on plain rows: cost, hourly buckets, per-user and internal formats."""

from __future__ import annotations

import pytest

from stratalab.scheduler.usage_queries import UsageRow
from stratalab.scheduler.usage_report import (
    Prices,
    figures,
    hour_label,
    hourly,
    parse_hour,
    per_user,
    summary,
    uuid_usage,
)

PRICES = Prices(cpu_hour=2.0, gpu_hour=10.0, inference_1k_items=0.5, currency="EUR")
HOUR = parse_hour("2026-03-15T21")


def test_cost_is_hours_times_price_and_items_only_for_served_work():
    # Prepare: one CPU hour and half a GPU hour, with 4000 items
    cpu_ms, gpu_ms = 3_600_000.0, 1_800_000.0

    # Execute
    training = PRICES.cost("training", cpu_ms, gpu_ms, 4000)
    inference = PRICES.cost("inference", cpu_ms, gpu_ms, 4000)

    # Assert
    assert training == pytest.approx(2.0 + 5.0)
    assert inference == pytest.approx(2.0 + 5.0 + 2.0)


def test_figures_sum_rows_and_keep_energy_null_unless_measured():
    rows = [
        UsageRow(kind="task", cpu_ms=1000.0, tasks=1, records=1),
        UsageRow(kind="training", cpu_ms=500.0, gpu_ms=250.0, items=64, tasks=2, records=2),
    ]

    out = figures(rows, PRICES)

    assert out["cpu_ms"] == 1500.0 and out["gpu_ms"] == 250.0
    assert out["tasks"] == 3 and out["items"] == 64 and out["errors"] == 0
    assert out["energy_j"] is None
    assert out["cost"] == pytest.approx(1500 / 3.6e6 * 2.0 + 250 / 3.6e6 * 10.0)
    measured = figures([*rows, UsageRow(kind="task", energy_j=12.5, energy_records=1)], PRICES)
    assert measured["energy_j"] == 12.5


def test_summary_splits_by_kind():
    rows = [
        UsageRow(kind="task", cpu_ms=10.0, tasks=1),
        UsageRow(kind="inference", cpu_ms=5.0, items=2000, tasks=2),
    ]

    out = summary(rows, PRICES)

    assert set(out["by_kind"]) == {"task", "inference"}
    assert out["by_kind"]["inference"]["cost"] == pytest.approx(5 / 3.6e6 * 2.0 + 1.0)
    assert out["totals"]["cost"] == pytest.approx(
        out["by_kind"]["task"]["cost"] + out["by_kind"]["inference"]["cost"]
    )


def test_hourly_lists_only_hours_with_activity_oldest_first():
    rows = [
        UsageRow(hour=HOUR + 2, kind="task", cpu_ms=3.0, tasks=1),
        UsageRow(hour=HOUR, kind="task", cpu_ms=1.0, tasks=1),
        UsageRow(hour=HOUR, kind="training", cpu_ms=2.0, tasks=1),
    ]

    out = hourly(rows, PRICES)

    assert [h["hour"] for h in out] == ["2026-03-15T21", "2026-03-15T23"]
    assert out[0]["start"] == "2026-03-15T21:00:00Z"
    assert out[0]["totals"]["cpu_ms"] == 3.0
    assert set(out[0]["by_kind"]) == {"task", "training"}


def test_per_user_orders_by_cost():
    rows = [
        UsageRow(user_id="ann", kind="task", cpu_ms=1.0, tasks=1),
        UsageRow(user_id="bob", kind="task", cpu_ms=9.0, tasks=1),
    ]

    out = per_user(rows, PRICES)

    assert [u["user_id"] for u in out] == ["bob", "ann"]


def test_uuid_usage_splits_cpu_and_gpu_tasks_and_successes_from_failures():
    rows = [
        UsageRow(user_id="u1", hour=HOUR, failed=False, gpu=False, cpu_ms=10.4, tasks=3),
        UsageRow(user_id="u1", hour=HOUR, failed=False, gpu=True, gpu_ms=72917.2, tasks=2),
        UsageRow(user_id="u1", hour=HOUR, failed=True, gpu=False, cpu_ms=5.0, tasks=1, errors=1),
        UsageRow(user_id="u0", hour=HOUR + 1, failed=False, gpu=False, cpu_ms=1.0, tasks=1),
    ]

    ok = uuid_usage(rows, failed=False)
    bad = uuid_usage(rows, failed=True)

    assert ok == [
        {
            "uuid": "u1",
            "hour": "2026-03-15T21",
            "cpu_ms": 10,
            "gpu_ms": 72917,
            "cpu_tasks": 3,
            "gpu_tasks": 2,
        },
        {
            "uuid": "u0",
            "hour": "2026-03-15T22",
            "cpu_ms": 1,
            "gpu_ms": 0,
            "cpu_tasks": 1,
            "gpu_tasks": 0,
        },
    ]
    assert bad == [
        {
            "uuid": "u1",
            "hour": "2026-03-15T21",
            "cpu_ms": 5,
            "gpu_ms": 0,
            "cpu_tasks": 1,
            "gpu_tasks": 0,
        }
    ]


@pytest.mark.parametrize("text", ["2026-03-15", "2026-03-15T21:00", "yesterday", "2026-02-30T01"])
def test_parse_hour_refuses_anything_but_an_hour(text):
    with pytest.raises(ValueError, match="YYYY-MM-DDTHH"):
        parse_hour(text)


def test_hour_label_round_trips():
    assert hour_label(parse_hour("2026-12-31T23")) == "2026-12-31T23"
