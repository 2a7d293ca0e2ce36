"""Sync, async and batch inference over HTTP, compared with ONNX Runtime's own output."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.jupyter_ext.modelfiles import array, ort_run, tensor


async def upload(api, path, fields=None, key=None) -> dict:
    resp = await api.upload(path.read_bytes(), fields or {}, filename=path.name, key=key)
    assert resp.status == 201, resp.text
    return resp.json


async def wait_inference(api, job_id, *, key=None, params=None, timeout=90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = await api("GET", f"inference/{job_id}", key=key, params=params)
        assert resp.status == 200, resp.text
        if resp.json["status"] in ("completed", "failed", "cancelled"):
            return resp.json
        await asyncio.sleep(0.1)
    raise AssertionError(f"{job_id} did not end: {resp.json}")


@pytest.mark.parametrize(
    "how",
    [
        {"params": {"async": "true"}},
        {"headers": {"X-Async": "true"}},
        {"body": {"async": True}},
    ],
    ids=["query", "header", "body"],
)
async def test_async_request_answers_202_and_its_result_matches_ort(api, model_files, how):
    model = await upload(api, model_files.onnx)
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    body = {"model_id": model["id"], "input": tensor(x), **how.get("body", {})}
    resp = await api(
        "POST", "inference", json_body=body, params=how.get("params"), headers=how.get("headers")
    )
    assert resp.status == 202, resp.text
    accepted = resp.json
    assert accepted["status"] == "queued"
    assert accepted["poll_url"] == f"/stratalab/api/v1/inference/{accepted['job_id']}"
    done = await wait_inference(api, accepted["job_id"])
    assert done["status"] == "completed", done
    np.testing.assert_allclose(array(done["result"]), ort_run(model_files.onnx, x), rtol=1e-5)
    job = (await api("GET", f"jobs/{accepted['job_id']}")).json
    assert [e["to_state"] for e in job["timeline"]] == [
        "PENDING",
        "QUEUED",
        "SCHEDULING",
        "PREPARING",
        "RUNNING",
        "COMPLETED",
    ]


async def test_timeout_answers_504_with_the_envelope(api, model_files):
    model = await upload(api, model_files.onnx)
    x = np.zeros((1, 4), dtype=np.float32)
    resp = await api(
        "POST",
        "inference",
        json_body={"model_id": model["id"], "input": tensor(x), "options": {"timeout": 0.001}},
    )
    assert resp.status == 504, resp.text
    assert resp.json["error"]["trace_id"]
    assert "within" in resp.json["error"]["message"]


async def test_no_workers_able_to_serve_is_no_devices(api, model_files):
    model = await upload(api, model_files.onnx)
    workers = (await api("GET", "workers")).json["items"]
    for w in workers:
        assert (await api("POST", f"workers/{w['id']}/drain", json_body={})).status == 200
    x = np.zeros((1, 4), dtype=np.float32)
    resp = await api("POST", "inference", json_body={"model_id": model["id"], "input": tensor(x)})
    assert resp.status == 503
    assert resp.error_code() == "NO_DEVICES"
    # an async request waits for a worker instead of failing
    queued = await api(
        "POST", "inference", json_body={"model_id": model["id"], "input": tensor(x), "async": True}
    )
    assert queued.status == 202
    await asyncio.sleep(1.0)
    assert (await api("GET", f"inference/{queued.json['job_id']}")).json["status"] == "queued"
    for w in workers:
        await api("POST", f"workers/{w['id']}/enable")
    done = await wait_inference(api, queued.json["job_id"])
    assert done["status"] == "completed"


async def test_adapters_apply_on_sync_async_and_batch_alike(api, model_files):
    model = await upload(
        api,
        model_files.onnx,
        {
            "preprocessing": "tabular",
            "postprocessing": "top_k_labels",
            "labels": ["a", "b", "c"],
        },
    )
    rows = [{"f0": 1.0, "f1": 2.0, "f2": -1.0, "f3": 0.5}, {"f0": 0, "f1": 0, "f2": 1, "f3": 2}]
    x = np.array([[r[f"f{i}"] for i in range(4)] for r in rows], dtype=np.float32)
    best = [["a", "b", "c"][int(i)] for i in np.argmax(ort_run(model_files.onnx, x), axis=1)]

    sync = await api("POST", "inference", json_body={"model_id": model["id"], "input": rows})
    assert sync.status == 200, sync.text
    assert [p[0]["label"] for p in sync.json["result"]["predictions"]] == best

    queued = await api(
        "POST", "inference", json_body={"model_id": model["id"], "input": rows, "async": True}
    )
    done = await wait_inference(api, queued.json["job_id"])
    assert [p[0]["label"] for p in done["result"]["predictions"]] == best

    batch = await api(
        "POST", "inference/batch", json_body={"model_id": model["id"], "inputs": [rows, rows[:1]]}
    )
    assert batch.status == 202, batch.text
    result = await wait_inference(api, batch.json["job_id"])
    items = result["results"]["items"]
    assert [p[0]["label"] for p in items[0]["predictions"]] == best
    assert items[1]["predictions"][0][0]["label"] == best[0]


async def test_batch_of_one_tensor_matches_ort_with_progress_and_pages(api, model_files):
    model = await upload(api, model_files.onnx)
    x = np.random.default_rng(3).normal(size=(1000, 4)).astype(np.float32)
    resp = await api(
        "POST",
        "inference/batch",
        json_body={"model_id": model["id"], "input": tensor(x), "shard_size": 64},
    )
    assert resp.status == 202, resp.text
    accepted = resp.json
    assert accepted["job_id"].startswith("batch_")
    assert accepted["total_tasks"] == 1000
    assert accepted["total_shards"] == 16
    assert accepted["project_id"].startswith("proj_")  # created for it
    done = await wait_inference(api, accepted["job_id"], params={"offset": 990, "limit": 20})
    assert done["status"] == "completed", done
    progress = done["progress"]
    assert (progress["completed_tasks"], progress["failed_tasks"]) == (1000, 0)
    assert progress["percent"] == 100.0
    assert done["results"]["offset"] == 990
    items = done["results"]["items"]
    assert len(items) == 10  # the page ends with the batch
    expected = ort_run(model_files.onnx, x)
    for i, item in enumerate(items):
        np.testing.assert_allclose(array(item), expected[990 + i : 991 + i], rtol=1e-5)
    workers = {r["worker"] for r in await shard_rows(api, accepted["job_id"])}
    assert len(workers) == 2  # spread over every worker of the cluster


async def shard_rows(api, job_id) -> list[dict]:
    from stratalab.scheduler.db import BatchShard

    def read():
        with api.coordinator.store.session() as s:
            rows = s.query(BatchShard).filter(BatchShard.job_id == job_id).all()
            return [{"worker": r.worker, "state": r.state} for r in rows]

    return await asyncio.to_thread(read)


async def test_batch_items_fail_alone_with_their_index(api, model_files):
    model = await upload(api, model_files.onnx)
    good = np.ones((1, 4), dtype=np.float32)
    inputs = [tensor(good), {"data": [1, 2, 3], "shape": [1, 3]}, tensor(good * 2)]
    resp = await api(
        "POST", "inference/batch", json_body={"model_id": model["id"], "inputs": inputs}
    )
    assert resp.status == 202, resp.text
    done = await wait_inference(api, resp.json["job_id"])
    assert done["status"] == "completed"
    assert done["progress"]["completed_tasks"] == 2
    assert done["progress"]["failed_tasks"] == 1
    assert [e["index"] for e in done["errors"]] == [1]
    assert done["results"]["items"][1] is None
    np.testing.assert_allclose(
        array(done["results"]["items"][2]), ort_run(model_files.onnx, good * 2), rtol=1e-5
    )


async def test_cancel_a_batch_keeps_finished_shards(api, model_files):
    model = await upload(api, model_files.onnx)
    x = np.random.default_rng(4).normal(size=(50_000, 4)).astype(np.float32)
    resp = await api(
        "POST",
        "inference/batch",
        json_body={"model_id": model["id"], "input": tensor(x), "shard_size": 500},
    )
    job_id = resp.json["job_id"]
    cancelled = await api("DELETE", f"inference/{job_id}")
    if cancelled.status == 409:  # it finished first: nothing to cancel
        assert cancelled.error_code() == "CANNOT_CANCEL"
        return
    assert cancelled.status == 200, cancelled.text
    assert cancelled.json["status"] == "cancelled"
    again = await api("DELETE", f"inference/{job_id}")
    assert again.error_code() == "CANNOT_CANCEL"


async def test_unknown_inference_job_and_another_users_job_are_not_found(api, model_files):
    assert (await api("GET", "inference/infer_nope")).status == 404
    model = await upload(api, model_files.onnx)
    x = np.zeros((1, 4), dtype=np.float32)
    queued = await api(
        "POST", "inference", json_body={"model_id": model["id"], "input": tensor(x), "async": True}
    )
    bob = await api.create_key("bob")
    assert (await api("GET", f"inference/{queued.json['job_id']}", key=bob)).status == 404
    assert (await api("DELETE", f"inference/{queued.json['job_id']}", key=bob)).status == 404


async def test_base64_tensors_match_ort_and_bad_base64_is_422(api, model_files):
    from stratalab.kernels.models.tensors import b64_tensor

    model = await upload(api, model_files.onnx)
    x = np.random.default_rng(9).normal(size=(6, 4)).astype(np.float32)
    resp = await api(
        "POST", "inference", json_body={"model_id": model["id"], "input": b64_tensor(x)}
    )
    assert resp.status == 200, resp.text
    np.testing.assert_allclose(array(resp.json["result"]), ort_run(model_files.onnx, x), rtol=1e-5)
    bad = {"b64": "not base64!!", "dtype": "float32", "shape": [1, 4]}
    resp = await api("POST", "inference", json_body={"model_id": model["id"], "input": bad})
    assert resp.status == 422
    assert "base64" in resp.json["error"]["message"]
    short = {**b64_tensor(x), "shape": [7, 4]}
    resp = await api("POST", "inference", json_body={"model_id": model["id"], "input": short})
    assert resp.status == 422
    assert "do not fill shape" in resp.json["error"]["message"]
