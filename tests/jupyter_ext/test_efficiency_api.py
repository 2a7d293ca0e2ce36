"""Efficiency over the real server: a real training job's rates, TTA and scaling charts,
power marked unavailable where the machine cannot measure it, and live runs."""

from __future__ import annotations

from typing import Any

from stratalab.kernels.power import probe
from stratalab.testing import assert_error
from tests.training.conftest import register_digits, submit

DONE = {"COMPLETED", "FAILED", "CANCELLED"}


async def _train(api: Any, key: str) -> dict[str, Any]:
    dataset = await register_digits(api, key)
    job_id = await submit(
        api,
        {
            "type": "training",
            "name": "t",
            "model": {"architecture": "mlp", "hidden": [16]},
            "data_config": {"dataset_id": dataset},
            "training_config": {"epochs": 2, "learning_rate": 0.01},
        },
        key,
    )
    job = await api.wait_job(job_id, DONE, key=key, timeout=90)
    assert job["status"] == "COMPLETED", job
    return job


async def test_efficiency_of_a_training_job(api):
    # Prepare
    key = await api.create_key("ann")
    job = await _train(api, key)
    machine = probe()["source"]
    metrics = (await api("GET", f"jobs/{job['id']}/metrics", key=key)).json["metrics"]

    # Execute
    overview = await api("GET", "efficiency", key=key)
    comparison = await api("GET", "efficiency/comparison", key=key)
    tta = await api("GET", "efficiency/chart/tta", key=key)
    scaling = await api("GET", "efficiency/chart/scaling", key=key)
    power = await api("GET", "efficiency/chart/power", key=key)
    throughput = await api("GET", "efficiency/chart/throughput", key=key)
    one = await api("GET", f"efficiency/job/{job['id']}", key=key)

    # Assert: rates from measured work, power never invented
    assert overview.status == 200, overview.text
    training = overview.json["by_kind"]["training"]
    assert training["cpu_ms"] > 0 and training["items"] > 0
    assert training["items_per_cpu_s"] > 0
    assert training["items_per_gpu_s"] is None  # no GPU time on a CPU machine's workers
    if machine == "unavailable":
        assert overview.json["power"] is None
        assert overview.json["power_source"] == "unavailable"
        assert overview.json["power_reason"]
        assert training["energy_j"] is None and training["joules_per_item"] is None
        assert power.json["available"] is False and power.json["reason"]
        assert one.json["energy_j"] is None
    assert set(overview.json["workers"].values()) == {machine}
    assert comparison.status == 200, comparison.text
    assert comparison.json["pools"]["cpu"]["by_kind"]["training"]["items"] == training["items"]
    (series,) = [s for s in tta.json["series"] if s["job_id"] == job["id"]]
    assert [p["round"] for p in series["points"]] == [p["round"] for p in metrics["val_accuracy"]]
    assert [p["val_accuracy"] for p in series["points"]] == [
        p["value"] for p in metrics["val_accuracy"]
    ]
    # the chart's x axis follows the rounds in order (a shape check, not a speed one)
    x_axis = [p["elapsed_s"] for p in series["points"]]
    assert x_axis == sorted(x_axis)
    rounds = sum(p["rounds"] for p in scaling.json["points"])
    assert rounds == len(metrics["samples_per_s"])
    assert all(p["workers"] >= 1 and p["samples_per_s"] > 0 for p in scaling.json["points"])
    assert {p["kind"] for p in throughput.json["points"]} >= {"training", "evaluation"}
    assert one.status == 200, one.text
    assert one.json["cpu_ms"] > 0 and one.json["items"] == overview.json["totals"]["items"]
    assert one.json["rounds"] == len(metrics["samples_per_s"])
    assert one.json["samples_per_s"] > 0
    assert one.json["best_val_accuracy"] == max(p["value"] for p in metrics["val_accuracy"])


async def test_active_runs_and_ownership(api):
    # Prepare: a running task of ann's
    ann, bob = await api.create_key("ann"), await api.create_key("bob")
    script = "import time\nprint('up', flush=True)\ntime.sleep(120)\n"
    resp = await api("POST", "jobs", json_body={"name": "sleeper", "script": script}, key=ann)
    job_id = resp.json["job_id"]
    await api.wait_job(job_id, {"RUNNING"}, key=ann)

    # Execute
    active = await api("GET", "efficiency/active", key=ann)
    others = await api("GET", "efficiency/active", key=bob)
    foreign = await api("GET", f"efficiency/job/{job_id}", key=bob)
    chart = await api("GET", "efficiency/chart/tta", key=ann, params={"job_id": job_id})
    await api("POST", f"jobs/{job_id}/cancel", key=ann)

    # Assert
    assert active.status == 200, active.text
    (run,) = [r for r in active.json["items"] if r["job_id"] == job_id]
    assert run["status"] == "RUNNING" and run["type"] == "task" and run["elapsed_s"] >= 0
    assert all(r["job_id"] != job_id for r in others.json["items"])
    assert_error(foreign, 404, "NOT_FOUND")
    assert_error(chart, 400, "BAD_REQUEST")  # a task job has no accuracy curve
