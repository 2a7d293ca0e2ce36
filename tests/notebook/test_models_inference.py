"""``c.models``, ``c.inference`` and ``c.projects`` against a real server and a real ONNX model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stratalab.kernels.models.samples import make_mlp_onnx, mlp_weights
from stratalab.notebook import ApiError, AsyncClient, Client, to_numpy


def mlp(x: np.ndarray) -> np.ndarray:
    """What the sample model computes, in numpy."""
    w = mlp_weights()
    hidden = np.maximum(x @ w["w1"].T + w["b1"], 0)
    return hidden @ w["w2"].T + w["b2"]


@pytest.fixture(scope="module")
def model_id(client: Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sample MLP, uploaded once for the module."""
    path = make_mlp_onnx(tmp_path_factory.mktemp("model") / "mlp.onnx")
    return client.models.upload(path, "nb-mlp", description="notebook tests")["id"]


def test_upload_get_list_and_update_schema(client: Client, model_id: str, tmp_path: Path):
    model = client.models.get(model_id)
    frame = client.models.list(name="nb-mlp")
    patched = client.models.update_schema(model_id, labels=["a", "b", "c"])

    assert model["format"] == "onnx" and model["checksum"].startswith("sha256:")
    assert model["inputs"] == [{"name": "x", "shape": [None, 4], "dtype": "float32"}]
    assert list(frame["id"]) == [model_id]
    assert patched["labels"] == ["a", "b", "c"]

    doomed = client.models.upload(make_mlp_onnx(tmp_path / "other.onnx").read_bytes(), "doomed")
    client.models.delete(doomed["id"])
    with pytest.raises(ApiError) as info:
        client.models.get(doomed["id"])
    assert info.value.code == "NO_MODEL" and info.value.status == 404


def test_sync_inference_takes_and_returns_numpy(client: Client, model_id: str):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)

    answer = client.inference.run(model_id, x)

    assert answer["status"] == "completed" and answer["worker_id"]
    assert np.allclose(to_numpy(answer["result"]), mlp(x), atol=1e-5)


def test_async_request_and_batch_with_progress(client: Client, model_id: str):
    rng = np.random.default_rng(1)
    one, many = rng.random((1, 4), dtype=np.float32), rng.random((40, 4), dtype=np.float32)

    accepted = client.inference.submit(model_id, one)
    answer = client.inference.wait(accepted["job_id"], timeout=60)
    batch = client.inference.batch(model_id, many, name="nb-batch", shard_size=10)
    done = client.inference.wait(batch["job_id"], timeout=120, progress=True)
    page = client.inference.get(batch["job_id"], offset=5, limit=2)

    assert accepted["status"] == "queued" and answer["status"] == "completed"
    assert np.allclose(to_numpy(answer["result"]), mlp(one), atol=1e-5)
    assert batch["total_tasks"] == 40 and batch["total_shards"] == 4
    assert done["status"] == "completed" and done["progress"]["completed_tasks"] == 40
    rows = np.concatenate([to_numpy(item) for item in page["results"]["items"]])
    assert np.allclose(rows, mlp(many[5:7]), atol=1e-5)


def test_projects_collect_analytics(client: Client, model_id: str):
    project = client.projects.create("nb-project", "realtime", model_id=model_id)
    for _ in range(3):
        client.inference.run(model_id, np.ones((1, 4), np.float32), project_id=project["id"])

    stats = client.projects.analytics(project["id"])
    listed = client.projects.list(status="active")
    completed = client.projects.complete(project["id"])

    assert stats["requests"] == 3 and stats["errors"] == 0
    assert stats["latency_ms"]["p50"] > 0
    assert project["id"] in set(listed["id"])
    assert completed["status"] == "completed" and completed["completed_tasks"] == 3
    assert client.projects.get(project["id"])["status"] == "completed"


async def test_async_client_runs_inference(server, model_id: str):
    x = np.ones((3, 4), np.float32)
    async with AsyncClient(server.url, api_key=server.info["admin_key"]) as c:
        answer = await c.inference.run(model_id, x)
        model = await c.models.get(model_id)

    assert np.allclose(to_numpy(answer["result"]), mlp(x), atol=1e-5)
    assert model["id"] == model_id
