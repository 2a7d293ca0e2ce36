"""Training through the REST API on real Dask workers: rounds, metrics, checkpoints, export."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import Api
from tests.jupyter_ext.modelfiles import array

pytestmark = pytest.mark.usefixtures("jp_server_config")

DONE = {"COMPLETED", "FAILED", "CANCELLED"}


async def register_digits(api: Api, **extra: Any) -> str:
    resp = await api(
        "POST",
        "datasets",
        json_body={"name": "digits", "format": "builtin", "source": "digits", **extra},
    )
    assert resp.status == 201, resp.text
    return str(resp.json["id"])


def training_body(dataset_id: str, **training: Any) -> dict[str, Any]:
    return {
        "type": "training",
        "name": "digits-mlp",
        "model": {"architecture": "mlp", "hidden": [32]},
        "data_config": {"dataset_id": dataset_id, "batch_size": 32},
        "training_config": {"epochs": 4, "learning_rate": 0.01, **training},
        "resource_config": {"min_devices": 1},
    }


async def test_full_sync_training_reaches_accuracy_and_exports_a_servable_model(api: Api) -> None:
    ds = await register_digits(api)
    resp = await api("POST", "jobs", json_body=training_body(ds, sync_mode="full_sync"))
    assert resp.status == 201, resp.text
    job_id = resp.json["job_id"]
    job = await api.wait_job(job_id, DONE, timeout=120)
    assert job["status"] == "COMPLETED", job
    states = [e["to_state"] for e in job["timeline"]]
    for state in (
        "SCHEDULING",
        "PREPARING",
        "TRAINING",
        "CHECKPOINTING",
        "EVALUATING",
        "EXPORTING",
    ):
        assert state in states, states
    progress = job["progress"]
    assert progress["current_round"] == 4
    assert progress["percent_complete"] == 100.0
    assert progress["best_loss"] <= progress["current_loss"] + 1e-9
    assert job["result"]["evaluation"]["accuracy"] > 0.85, job["result"]

    metrics = (await api("GET", f"jobs/{job_id}/metrics")).json
    val = metrics["metrics"]["val_accuracy"]
    assert [p["round"] for p in val] == [1, 2, 3, 4]
    assert val[-1]["value"] > val[0]["value"] - 0.05
    assert metrics["metrics"]["barrier_ms"][0]["value"] > 0
    assert metrics["workers"], "per-worker step metrics arrive through Dask events"
    assert (
        len(
            (await api("GET", f"jobs/{job_id}/metrics", params={"max_points": 2})).json["metrics"][
                "loss"
            ]
        )
        == 2
    )

    ckpts = (await api("GET", f"jobs/{job_id}/checkpoints")).json
    assert ckpts["total"] == 4
    assert all(c["checkpoint_throughput"] > 0 and len(c["sha256"]) == 64 for c in ckpts["items"])

    # the exported ONNX model serves at once and agrees with ONNX Runtime on the same file
    model_id = job["result"]["model_id"]
    model = (await api("GET", f"models/{model_id}")).json
    assert model["source_job_id"] == job_id
    x = np.random.default_rng(0).uniform(0, 16, size=(3, 64)).astype(np.float32)
    out = await api("POST", "inference", json_body={"model_id": model_id, "input": x.tolist()})
    assert out.status == 200, out.text
    path = api.coordinator.serving.artifacts.path(model["checksum"].removeprefix("sha256:"))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    got = array(out.json["result"])
    np.testing.assert_allclose(got, expected, atol=1e-4)
