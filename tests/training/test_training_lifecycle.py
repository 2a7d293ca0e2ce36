"""Pause, resume, preemption, reservations, retries and evaluations of training jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Api
from tests.training.conftest import (
    DONE,
    register_digits,
    rounds_of,
    submit,
    training_body,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("jp_server_config")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the store paths these tests use also run on PostgreSQL elsewhere."""
    return f"sqlite:///{tmp_path / 'stratalab.db'}"


def in_round(n: int):
    return lambda job: (job.get("progress") or {}).get("current_round", 0) >= n


async def test_pause_checkpoints_and_resume_continues_from_it(api: Api) -> None:
    ds = await register_digits(api)
    job_id = await submit(api, training_body(ds, epochs=12))
    await wait_for(api, job_id, in_round(1))
    resp = await api("POST", f"jobs/{job_id}/pause", json_body={"save_checkpoint": True})
    assert resp.status == 202, resp.text
    paused = await api.wait_job(job_id, {"PAUSED"})
    paused_round = paused["progress"]["current_round"]
    ckpts = (await api("GET", f"jobs/{job_id}/checkpoints")).json["items"]
    assert ckpts[0]["reason"] == "pause" and ckpts[0]["round"] == paused_round

    # resuming something that is not paused is refused; pausing a paused job too
    assert (await api("POST", f"jobs/{job_id}/pause")).error_code() == "CANNOT_PAUSE"
    resp = await api("POST", f"jobs/{job_id}/resume", json_body={"checkpoint_id": ""})
    assert resp.status == 200, resp.text
    done = await api.wait_job(job_id, DONE, timeout=120)
    assert done["status"] == "COMPLETED", done
    rounds = rounds_of((await api("GET", f"jobs/{job_id}/metrics")).json)
    assert rounds == sorted(set(rounds)), "no round ran twice: resume started after the checkpoint"
    assert rounds[-1] == done["progress"]["current_round"]
    logs = (
        await api(
            "GET",
            f"jobs/{job_id}/logs",
            params={"follow": "false"},
            headers={"Accept": "application/json"},
        )
    ).json
    assert any(f"(round {paused_round})" in line["message"] for line in logs["items"])


async def test_an_urgent_job_preempts_a_lower_one_which_comes_back_by_itself(api: Api) -> None:
    ds = await register_digits(api)
    low = await submit(api, training_body(ds, epochs=8, priority=2, resources={"min_devices": 2}))
    await wait_for(api, low, in_round(1))
    urgent = await submit(
        api, training_body(ds, epochs=2, priority=9, resources={"min_devices": 1})
    )
    done = await api.wait_job(urgent, DONE, timeout=120)
    assert done["status"] == "COMPLETED", done
    low_done = await api.wait_job(low, DONE, timeout=180)
    assert low_done["status"] == "COMPLETED", low_done
    states = [e["to_state"] for e in low_done["timeline"]]
    assert "PREEMPTED" in states, states
    preempted_at = states.index("PREEMPTED")
    assert states[preempted_at - 1] == "CHECKPOINTING" and states[preempted_at + 1] == "QUEUED"
    rounds = rounds_of((await api("GET", f"jobs/{low}/metrics")).json)
    assert rounds == sorted(set(rounds))
    reasons = [c["reason"] for c in (await api("GET", f"jobs/{low}/checkpoints")).json["items"]]
    assert "preempt" in reasons


async def test_reservations_hold_workers_until_released(api: Api) -> None:
    ds = await register_digits(api)
    resp = await api("POST", "reservations", json_body={"node_count": 1, "expires_in_s": 600})
    assert resp.status == 201, resp.text
    res = resp.json
    assert res["status"] == "active" and len(res["workers"]) == 1
    too_many = await api("POST", "reservations", json_body={"node_count": 5})
    assert too_many.status == 409 and "cannot reserve 5" in too_many.json["error"]["message"]

    job_id = await submit(api, training_body(ds, epochs=2, resources={"min_devices": 2}))
    waiting = await wait_for(api, job_id, lambda j: bool(j.get("why_pending")))
    assert waiting["status"] == "QUEUED" and "needs 2 worker(s)" in waiting["why_pending"]
    assert (await api("DELETE", f"reservations/{res['id']}")).status == 204
    done = await api.wait_job(job_id, DONE, timeout=120)
    assert done["status"] == "COMPLETED"
    assert len(done["progress"]["assigned_devices"]) == 2
    listed = (await api("GET", "reservations")).json["items"]
    assert listed[0]["status"] == "cancelled"

    # an unclaimed reservation expires by itself
    brief = {"node_count": 1, "expires_in_s": 0.5}
    short = (await api("POST", "reservations", json_body=brief)).json
    await _wait_reservation(api, short["id"], "expired")

    # a job can claim a reservation and runs on its worker
    res = (await api("POST", "reservations", json_body={"node_count": 1})).json
    claimed = await submit(
        api, training_body(ds, epochs=1, resources={"reservation_id": res["id"], "max_devices": 1})
    )
    done = await api.wait_job(claimed, DONE, timeout=120)
    assert done["status"] == "COMPLETED" and done["worker"] == res["workers"][0]


async def test_retry_with_more_workers_and_evaluate_the_result(api: Api) -> None:
    ds = await register_digits(api)
    job_id = await submit(api, training_body(ds, epochs=20, resources={"max_devices": 1}))
    await wait_for(api, job_id, in_round(1))
    assert (await api("POST", f"jobs/{job_id}/retry")).status == 409  # still running
    assert (await api("POST", f"jobs/{job_id}/cancel")).json["status"] == "CANCELLED"
    resp = await api(
        "POST",
        f"jobs/{job_id}/retry",
        json_body={"new_resource_config": {"min_devices": 2}, "modify_resources": True},
    )
    assert resp.status == 201, resp.text
    child = resp.json["job_id"]
    done = await api.wait_job(child, DONE, timeout=120)
    assert done["status"] == "COMPLETED" and done["parent_job_id"] == job_id
    assert len(done["progress"]["assigned_devices"]) == 2

    resp = await api(
        "POST",
        "evaluations",
        json_body={
            "job_id": child,
            "benchmarks": [
                {"name": "held-out", "dataset": ds, "num_samples": 100},
                {"name": "train", "dataset": ds, "parameters": {"split": "train"}},
            ],
        },
    )
    assert resp.status == 201, resp.text
    ev_id = resp.json["id"]
    ev = await _wait_evaluation(api, ev_id)
    assert ev["status"] == "COMPLETED", ev
    held_out, train = ev["results"]
    assert held_out["num_samples"] == 100 and held_out["accuracy"] > 0.8
    assert train["num_samples"] > 1000 and set(train["per_class"]) == {str(i) for i in range(10)}
    assert all(
        0 <= c["precision"] <= 1 and 0 <= c["recall"] <= 1 for c in train["per_class"].values()
    )
    assert held_out["latency_ms"] > 0
    listed = (await api("GET", "evaluations", params={"job_id": child})).json
    assert listed["total"] == 1 and listed["items"][0]["id"] == ev_id

    # a named checkpoint can be evaluated too (the first round's, weaker than the last)
    first = (await api("GET", "checkpoints", params={"job_id": child, "page_size": 100})).json
    oldest = first["items"][-1]
    assert oldest["round"] == 1 and oldest["job_id"] == child
    resp = await api(
        "POST",
        "evaluations",
        json_body={"checkpoint_id": oldest["id"], "benchmarks": [{"name": "r1", "dataset": ds}]},
    )
    assert resp.status == 201, resp.text
    early = await _wait_evaluation(api, resp.json["id"])
    assert early["status"] == "COMPLETED" and early["job_id"] == child
    assert 0 < early["results"][0]["accuracy"] <= 1


async def _wait_reservation(api: Api, res_id: str, status: str) -> None:
    import asyncio

    for _ in range(100):
        items = (await api("GET", "reservations")).json["items"]
        if any(r["id"] == res_id and r["status"] == status for r in items):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"reservation {res_id} never became {status}: {items}")


async def _wait_evaluation(api: Api, ev_id: str) -> dict:
    import asyncio

    for _ in range(300):
        ev = (await api("GET", f"evaluations/{ev_id}")).json
        if ev["status"] in ("COMPLETED", "FAILED"):
            return ev
        await asyncio.sleep(0.1)
    raise AssertionError(ev)


@pytest.mark.parametrize("mode", ["semi_sync", "async"])
async def test_semi_sync_and_async_modes_train_to_accuracy(api: Api, mode: str) -> None:
    ds = await register_digits(api)
    job_id = await submit(api, training_body(ds, epochs=5, sync_mode=mode, deadline_s=5.0))
    done = await api.wait_job(job_id, DONE, timeout=120)
    assert done["status"] == "COMPLETED", done
    assert done["result"]["evaluation"]["accuracy"] > 0.8
    metrics = (await api("GET", f"jobs/{job_id}/metrics")).json["metrics"]
    assert "max_staleness" in metrics or mode == "semi_sync"


async def test_dcp_training_route_with_a_stream_and_the_metrics_stream(api: Api) -> None:
    body = {
        "data_config": {
            "type": "stream",
            "total_samples": 2000,
            "batch_size": 64,
            "n_features": 8,
            "n_classes": 3,
        },
        "training_config": {
            "epochs": 2,
            "learning_rate": 0.01,
            "optimizer": "adam",
            "target_accuracy": 0.5,
        },
        "resource_config": {"min_devices": 1, "max_devices": 2},
    }
    resp = await api("POST", "training", json_body=body)
    assert resp.status == 202, resp.text
    assert resp.json["status"] == "QUEUED" and 1 <= resp.json["estimated_devices"] <= 2
    job_id = resp.json["job_id"]
    done = await api.wait_job(job_id, DONE, timeout=120)
    assert done["status"] == "COMPLETED", done
    # early stop: the target was reached before the second epoch ended
    assert done["progress"]["current_round"] == 1
    assert (await api("GET", f"training/{job_id}")).json["id"] == job_id
    stream = await api("GET", f"jobs/{job_id}/metrics/stream", params={"interval": "0.2"})
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert "event: metrics" in stream.text and "event: end" in stream.text
