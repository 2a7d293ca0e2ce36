"""The model registry over HTTP: upload, inspect, patch, delete, ownership."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.jupyter_ext.modelfiles import ModelFiles, array, ort_run, sha256, tensor


def artifact_files(api) -> list[Path]:
    root = api.coordinator.serving.artifacts.root
    return [p for p in root.rglob("*") if p.is_file()]


async def test_upload_onnx_reads_its_signature_and_stores_it_by_sha256(api, model_files):
    resp = await api.upload(
        model_files.onnx.read_bytes(), {"name": "mlp", "labels": ["a", "b", "c"]}
    )
    assert resp.status == 201, resp.text
    model = resp.json
    assert model["id"].startswith("model_")
    assert resp.headers["Location"].endswith(f"/models/{model['id']}")
    assert model["format"] == "onnx"
    assert model["checksum"] == f"sha256:{sha256(model_files.onnx)}"
    assert model["size"] == model_files.onnx.stat().st_size
    assert model["inputs"] == [{"name": "x", "shape": [None, 4], "dtype": "float32"}]
    assert model["outputs"][0]["shape"] == [None, 3]
    assert model["batch_dynamic"] is True
    assert model["labels"] == ["a", "b", "c"]
    assert [p.name for p in artifact_files(api)] == [sha256(model_files.onnx)]

    listed = await api("GET", "models")
    assert listed.json["total"] == 1
    assert listed.json["items"][0]["id"] == model["id"]
    one = await api("GET", f"models/{model['id']}")
    assert one.json["checksum"] == model["checksum"]


async def test_torchscript_is_detected_from_content_and_takes_declared_shapes(api, model_files):
    resp = await api.upload(
        model_files.torchscript.read_bytes(),
        {"input_shape": [None, 4], "output_shape": [None, 3]},
        filename="scripted.pt",
    )
    assert resp.status == 201, resp.text
    model = resp.json
    assert model["format"] == "torchscript"
    assert model["name"] == "scripted"  # defaults to the file name
    assert model["input_shape"] == [None, 4]


async def test_same_content_twice_is_stored_once_and_deleting_one_keeps_the_file(api, model_files):
    data = model_files.onnx.read_bytes()
    first = (await api.upload(data, {"name": "one"})).json
    second = (await api.upload(data, {"name": "two"})).json
    assert len(artifact_files(api)) == 1
    assert (await api("DELETE", f"models/{first['id']}")).status == 204
    assert len(artifact_files(api)) == 1  # the second model still uses it
    assert (await api("DELETE", f"models/{second['id']}")).status == 204
    assert artifact_files(api) == []


async def test_patch_schema_changes_only_given_fields_and_applies_to_inference(api, model_files):
    model = (await api.upload(model_files.onnx.read_bytes(), {"name": "mlp"})).json
    resp = await api(
        "PATCH",
        f"models/{model['id']}/schema",
        json_body={"labels": ["cat", "dog", "cow"], "postprocessing": "top_k_labels"},
    )
    assert resp.status == 200, resp.text
    assert resp.json["labels"] == ["cat", "dog", "cow"]
    assert resp.json["preprocessing"] is None
    x = np.array([[0.5, -1.0, 2.0, 0.1]], dtype=np.float32)
    out = await api(
        "POST",
        "inference",
        json_body={"model_id": model["id"], "input": tensor(x), "params": {"k": 2}},
    )
    assert out.status == 200, out.text
    prediction = out.json["result"]["predictions"][0]
    best = ["cat", "dog", "cow"][int(np.argmax(ort_run(model_files.onnx, x)[0]))]
    assert prediction[0]["label"] == best
    assert len(prediction) == 2


async def test_patch_with_an_invalid_json_schema_is_refused(api, model_files):
    model = (await api.upload(model_files.onnx.read_bytes())).json
    resp = await api(
        "PATCH", f"models/{model['id']}/schema", json_body={"input_schema": {"type": 12}}
    )
    assert resp.status == 422
    assert "JSON Schema" in resp.json["error"]["message"]
    empty = await api("PATCH", f"models/{model['id']}/schema", json_body={})
    assert empty.status == 422


async def test_deleted_model_is_gone_for_get_and_inference(api, model_files):
    model = (await api.upload(model_files.onnx.read_bytes())).json
    assert (await api("DELETE", f"models/{model['id']}")).status == 204
    assert (await api("GET", f"models/{model['id']}")).error_code() == "NO_MODEL"
    x = np.zeros((1, 4), dtype=np.float32)
    resp = await api("POST", "inference", json_body={"model_id": model["id"], "input": tensor(x)})
    assert resp.status == 404
    assert resp.error_code() == "NO_MODEL"
    again = await api("DELETE", f"models/{model['id']}")
    assert again.error_code() == "NO_MODEL"


async def test_another_tenants_model_is_not_found(api, model_files):
    alice = await api.create_key("alice")
    bob = await api.create_key("bob")
    model = (await api.upload(model_files.onnx.read_bytes(), key=alice)).json
    x = np.zeros((1, 4), dtype=np.float32)
    for method, path, body in (
        ("GET", f"models/{model['id']}", None),
        ("DELETE", f"models/{model['id']}", None),
        ("PATCH", f"models/{model['id']}/schema", {"labels": ["x"]}),
        ("POST", "inference", {"model_id": model["id"], "input": tensor(x)}),
        ("POST", "inference/batch", {"model_id": model["id"], "input": tensor(x)}),
    ):
        resp = await api(method, path, json_body=body, key=bob)
        assert resp.status == 404, (method, path, resp.text)
    assert (await api("GET", "models", key=bob)).json["total"] == 0
    assert (await api("GET", f"models/{model['id']}", key=alice)).status == 200


async def test_delete_answers_409_while_a_batch_uses_the_model(api, model_files):
    model = (await api.upload(model_files.onnx.read_bytes())).json
    x = np.random.default_rng(0).normal(size=(20_000, 4)).astype(np.float32)
    batch = await api(
        "POST",
        "inference/batch",
        json_body={"model_id": model["id"], "input": tensor(x), "shard_size": 100},
    )
    assert batch.status == 202, batch.text
    resp = await api("DELETE", f"models/{model['id']}")
    if resp.status == 409:  # the batch was still running: the model stays
        assert resp.error_code() == "CONFLICT"
        assert batch.json["job_id"] in resp.json["error"]["message"]
        assert (await api("GET", f"models/{model['id']}")).status == 200
    else:  # it had already finished; a delete is then allowed
        job = await api("GET", f"inference/{batch.json['job_id']}", params={"limit": 0})
        assert job.json["status"] == "completed"


@pytest.mark.parametrize("which", ["onnx", "torch_onnx", "torchscript"])
async def test_sync_inference_matches_the_reference_runtime(api, model_files: ModelFiles, which):
    path = getattr(model_files, which)
    fields = {"input_shape": [None, 4]} if which == "torchscript" else {}
    model = (await api.upload(path.read_bytes(), fields, filename=path.name)).json
    x = np.random.default_rng(7).normal(size=(5, 4)).astype(np.float32)
    resp = await api("POST", "inference", json_body={"model_id": model["id"], "input": tensor(x)})
    assert resp.status == 200, resp.text
    out = resp.json
    assert out["status"] == "completed"
    assert out["job_id"].startswith("infer_")
    assert out["device"] == "cpu"
    assert out["worker_id"].startswith("wrk_")
    assert out["latency_ms"] > 0
    if which == "torchscript":
        import torch

        module = torch.jit.load(str(path))
        expected = module(torch.from_numpy(x)).detach().numpy()
    else:
        expected = ort_run(path, x)
    np.testing.assert_allclose(array(out["result"]), expected, rtol=1e-5, atol=1e-6)
