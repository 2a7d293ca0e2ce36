"""Bad uploads and bad inputs get a clear error and leave nothing behind."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.conftest import multipart
from tests.jupyter_ext.modelfiles import tensor


def leftovers(api) -> list:
    root = api.coordinator.serving.artifacts.root
    return [p for p in root.rglob("*") if p.is_file()]


async def upload(api, path, fields=None) -> dict:
    resp = await api.upload(path.read_bytes(), fields or {}, filename=path.name)
    assert resp.status == 201, resp.text
    return resp.json


async def test_random_bytes_named_onnx_are_refused(api):
    data = np.random.default_rng(0).bytes(4096)
    resp = await api.upload(data, filename="model.onnx")
    assert resp.status == 422
    assert "onnx" in resp.json["error"]["message"].lower()
    assert leftovers(api) == []


async def test_truncated_onnx_is_refused(api, model_files):
    data = model_files.onnx.read_bytes()
    resp = await api.upload(data[: len(data) // 2])
    assert resp.status == 422
    assert leftovers(api) == []


async def test_torchscript_uploaded_as_onnx_is_refused(api, model_files):
    resp = await api.upload(model_files.torchscript.read_bytes(), {"format": "onnx"})
    assert resp.status == 422
    assert "does not match" in resp.json["error"]["message"]
    assert resp.json["error"]["details"] == {"declared": "onnx", "detected": "torchscript"}


async def test_invalid_json_schema_in_the_upload_is_refused(api, model_files):
    resp = await api.upload(model_files.onnx.read_bytes(), {"input_schema": {"type": "nope"}})
    assert resp.status == 422
    assert "JSON Schema" in resp.json["error"]["message"]
    bad_json = await api.upload(model_files.onnx.read_bytes(), {"labels": "[not json"})
    assert bad_json.status == 422
    assert leftovers(api) == []


@pytest.mark.parametrize("stratalab_config", [{"max_upload_mb": 1}])
async def test_upload_over_the_limit_is_413_and_leaves_no_file(api, stratalab_config):
    resp = await api.upload(b"\0" * (2 << 20))
    assert resp.status == 413
    assert resp.error_code() == "PAYLOAD_TOO_LARGE"
    assert leftovers(api) == []


async def test_upload_that_is_not_multipart_or_lacks_the_file(api, model_files):
    plain = await api("POST", "models", body=b"{}", headers={"Content-Type": "application/json"})
    assert plain.status == 400
    assert "multipart" in plain.json["error"]["message"]
    body, ctype = multipart({"name": "x"}, None)
    missing = await api("POST", "models", body=body, headers={"Content-Type": ctype})
    assert missing.status == 400
    assert "'model'" in missing.json["error"]["message"]
    unknown = await api.upload(model_files.onnx.read_bytes(), {"colour": "blue"})
    assert unknown.status == 422


async def test_upload_cut_off_mid_body_leaves_no_file(api, model_files, jp_http_port, jp_base_url):
    key = await api.create_key("uploader")
    body, ctype = multipart({}, model_files.onnx.read_bytes())
    _reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    head = (
        f"POST {jp_base_url}stratalab/api/v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {key}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[: len(body) // 2])
    await writer.drain()
    await asyncio.sleep(0.5)
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.5)
    assert leftovers(api) == []
    # the server carries on
    ok = await api.upload(model_files.onnx.read_bytes())
    assert ok.status == 201


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"data": [1.0, 2.0, 3.0], "shape": [1, 3]}, "[None, 4]"),
        ({"data": [[1, 2, 3, 4]], "shape": [1, 4, 1]}, "[None, 4]"),
        ({"data": ["a", "b", "c", "d"], "shape": [1, 4]}, "numbers"),
        ({"data": [1.0, 2.0, 3.0], "shape": [1, 4]}, "do not fit shape"),
    ],
    ids=["wrong-shape", "wrong-rank", "wrong-dtype", "wrong-length"],
)
async def test_wrong_input_is_422_naming_what_was_expected(api, model_files, payload, message):
    model = await upload(api, model_files.onnx)
    resp = await api("POST", "inference", json_body={"model_id": model["id"], "input": payload})
    assert resp.status == 422, resp.text
    assert message in resp.json["error"]["message"]
    assert "Traceback" not in resp.text


async def test_nan_is_refused_where_the_schema_forbids_it(api, model_files):
    model = await upload(api, model_files.onnx, {"input_schema": {"allow_nan": False}})
    resp = await api(
        "POST",
        "inference",
        body='{"model_id": "MID", "input": {"data": [1, NaN, 2, 3], "shape": [1, 4]}}'.replace(
            "MID", model["id"]
        ),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 422, resp.text
    assert "allow_nan is false" in resp.json["error"]["message"]
    assert resp.json["error"]["details"]["path"] == "$.data[1]"


async def test_schema_failure_names_the_failing_path(api, model_files):
    schema = {
        "type": "object",
        "properties": {"data": {"type": "array", "items": {"maximum": 10}}},
    }
    model = await upload(api, model_files.onnx, {"input_schema": schema})
    x = {"data": [1, 2, 30, 4], "shape": [1, 4]}
    resp = await api("POST", "inference", json_body={"model_id": model["id"], "input": x})
    assert resp.status == 422
    assert resp.json["error"]["details"]["path"] == "$.data[2]"


async def test_unknown_model_and_bad_bodies(api):
    x = tensor(np.zeros((1, 4), dtype=np.float32))
    resp = await api("POST", "inference", json_body={"model_id": "model_nope", "input": x})
    assert (resp.status, resp.error_code()) == (404, "NO_MODEL")
    missing = await api("POST", "inference", json_body={"model_id": "model_nope"})
    assert missing.status == 422
    both = await api(
        "POST", "inference/batch", json_body={"model_id": "m", "input": x, "inputs": [x]}
    )
    assert both.status == 422
    neg = await api("GET", "inference/batch_x", params={"limit": -1})
    assert neg.status == 400
