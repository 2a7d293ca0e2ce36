"""Efficiency maths on plain values: rates, power status, TTA, scaling, charts."""

from __future__ import annotations

import pytest

from stratalab.scheduler.efficiency import (
    Point,
    efficiency,
    grouped_efficiency,
    mean_rate,
    power_chart,
    power_status,
    scaling,
    throughput,
    tta,
)
from stratalab.scheduler.usage_queries import UsageRow
from stratalab.scheduler.usage_report import parse_hour

HOUR = parse_hour("2026-03-15T21")


def test_rates_divide_items_by_compute_seconds_and_are_null_without_them():
    rows = [UsageRow(kind="training", cpu_ms=2000.0, items=500, tasks=2, errors=1)]

    out = efficiency(rows)

    assert out["items_per_cpu_s"] == 250.0
    assert out["items_per_gpu_s"] is None
    assert out["error_rate"] == 0.5
    assert out["energy_j"] is None and out["joules_per_item"] is None


def test_joules_per_item_only_where_energy_was_measured():
    rows = [UsageRow(kind="training", cpu_ms=1.0, items=100, energy_j=50.0, energy_records=1)]

    assert efficiency(rows)["joules_per_item"] == 0.5


def test_grouped_efficiency_by_pool():
    rows = [
        UsageRow(pool="gpu", gpu_ms=1000.0, items=1000),
        UsageRow(pool="cpu", cpu_ms=1000.0, items=100),
    ]

    out = grouped_efficiency(rows, "pool")

    assert out["gpu"]["items_per_gpu_s"] == 1000.0
    assert out["cpu"]["items_per_cpu_s"] == 100.0


def test_power_status_unavailable_names_the_reasons():
    probes = {
        "tcp://a": {"source": "unavailable", "reason": "no RAPL"},
        "tcp://b": {"source": "unavailable", "reason": "no RAPL"},
    }

    out = power_status(probes)

    assert out["power_source"] == "unavailable"
    assert out["power_reason"] == "no RAPL"
    assert out["workers"] == {"tcp://a": "unavailable", "tcp://b": "unavailable"}
    assert power_status({})["power_source"] == "unavailable"
    mixed = power_status({"a": {"source": "rapl", "reason": None}, **probes})
    assert mixed["power_source"] == "rapl" and mixed["power_reason"] is None


def test_tta_measures_from_the_start_and_finds_the_target():
    points = [
        Point(ts=110.0, round=1, values={"val_accuracy": 0.5, "loss": 1.0}),
        Point(ts=130.0, round=2, values={"val_accuracy": 0.92}),
        Point(ts=120.0, round=3, values={"loss": 0.3}),  # no validation: left out
        Point(ts=150.0, round=4, values={"val_accuracy": 0.95}),
    ]

    out = tta(points, began=100.0, target=0.9)

    assert [p["elapsed_s"] for p in out["points"]] == [10.0, 30.0, 50.0]
    assert out["time_to_target_s"] == 30.0
    assert out["best_val_accuracy"] == 0.95
    assert tta(points, began=100.0, target=0.99)["time_to_target_s"] is None


def test_scaling_relative_to_the_smallest_worker_count():
    points = [
        Point(0, 1, {"workers": 1.0, "samples_per_s": 100.0}),
        Point(0, 2, {"workers": 2.0, "samples_per_s": 150.0}),
        Point(0, 3, {"workers": 2.0, "samples_per_s": 170.0}),
        Point(0, 4, {"loss": 1.0}),
    ]

    out = scaling(points)

    assert [p["workers"] for p in out] == [1, 2]
    assert out[1]["samples_per_s"] == 160.0
    assert out[1]["per_worker_samples_per_s"] == 80.0
    assert out[1]["efficiency"] == pytest.approx(0.8)
    assert mean_rate(points) == 140.0


def test_power_chart_unavailable_without_measured_energy():
    status = {"power_source": "unavailable", "power_reason": "no RAPL; no NVML"}

    out = power_chart([UsageRow(hour=HOUR, cpu_ms=5.0, items=3)], status)

    assert out == {
        "available": False,
        "power_source": "unavailable",
        "reason": "no RAPL; no NVML",
        "points": [],
    }
    measured = power_chart(
        [UsageRow(hour=HOUR, items=4, energy_j=8.0, energy_records=2)], {"power_source": "rapl"}
    )
    assert measured["available"] is True
    assert measured["points"] == [
        {"hour": "2026-03-15T21", "energy_j": 8.0, "records": 2, "joules_per_item": 2.0}
    ]


def test_throughput_per_hour_and_kind():
    rows = [UsageRow(hour=HOUR, kind="batch", items=7200, cpu_ms=1000.0, gpu_ms=1000.0, tasks=3)]

    (point,) = throughput(rows)

    assert point["hour"] == "2026-03-15T21"
    assert point["items_per_s"] == 2.0
    assert point["items_per_compute_s"] == 3600.0
