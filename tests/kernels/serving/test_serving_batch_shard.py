"""Batch inference shards: tests for stratalab/kernels/serving/batch.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from distributed import Client

from stratalab.errors import ValidationFailed
from stratalab.kernels.models.samples import SampleStore
from stratalab.kernels.models.tensors import encode_array
from stratalab.kernels.serving.batch import run_batch_shard
from stratalab.kernels.serving.plugin import ServingPlugin


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


def _items(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(1 + i % 2, 4)).astype(np.float32) for i in range(n)]


def test_shard_outputs_match_onnx_runtime_item_by_item(store: SampleStore) -> None:
    # Prepare: raw {data, shape} items, as POST /inference/batch receives them
    xs = _items(7)
    spec: dict[str, Any] = {
        "sha256": store.mlp,
        "store_root": str(store.root),
        "inputs": [{"data": x.reshape(-1).tolist(), "shape": list(x.shape)} for x in xs],
        "chunk_rows": 3,
        "offset": 100,
    }
    # Execute
    result = run_batch_shard(spec)
    # Assert
    assert (result["count"], result["succeeded"], result["failed"]) == (7, 7, 0)
    assert result["offset"] == 100
    assert result["device"] == "cpu"
    for x, out in zip(xs, result["outputs"], strict=True):
        assert out["shape"] == [x.shape[0], 3]
        np.testing.assert_allclose(
            np.asarray(out["data"]).reshape(out["shape"]),
            _ort(store.path(store.mlp), x),
            rtol=1e-6,
            atol=1e-7,
        )


def test_a_bad_item_fails_alone_with_its_index(store: SampleStore) -> None:
    xs = _items(3)
    inputs: list[Any] = [
        encode_array(xs[0]),
        {"data": [1, 2, 3], "shape": [1, 3]},
        encode_array(xs[2]),
    ]
    result = run_batch_shard(
        {"sha256": store.mlp, "path": str(store.path(store.mlp)), "inputs": inputs, "offset": 10}
    )
    assert (result["succeeded"], result["failed"]) == (2, 1)
    assert result["outputs"][1] is None
    [error] = result["errors"]
    assert error["index"] == 11
    assert error["code"] == "VALIDATION_ERROR"
    assert "expected shape [None, 4]" in error["message"]


def test_numpy_output_format_and_fixed_batch_model(store: SampleStore) -> None:
    xs = [np.full((1, 4), i, dtype=np.float32) for i in range(3)]
    result = run_batch_shard(
        {
            "sha256": store.mlp_fixed_batch,
            "store_root": str(store.root),
            "inputs": [encode_array(x) for x in xs],
            "output_format": "numpy",
        }
    )
    for x, out in zip(xs, result["outputs"], strict=True):
        np.testing.assert_allclose(out["y"], _ort(store.path(store.mlp_fixed_batch), x), rtol=1e-6)


def test_multi_input_items_are_maps_by_input_name(store: SampleStore) -> None:
    item = {"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 0]]}
    result = run_batch_shard(
        {"sha256": store.tokens, "store_root": str(store.root), "inputs": [item, item]}
    )
    assert result["succeeded"] == 2
    assert result["outputs"][0] == result["outputs"][1]


def test_shard_needs_a_location(store: SampleStore) -> None:
    with pytest.raises(ValidationFailed, match="'path' or 'store_root'"):
        run_batch_shard({"sha256": store.mlp, "inputs": []})


def test_shard_as_a_dask_task_reuses_the_serving_cache(client: Client, store: SampleStore) -> None:
    # Prepare
    client.register_plugin(ServingPlugin(store.root, max_bytes=50_000_000))
    xs = _items(4, seed=5)
    spec = {"sha256": store.torch_onnx, "inputs": [encode_array(x) for x in xs]}
    # Execute
    first = client.submit(run_batch_shard, spec, pure=False).result(timeout=60)
    second = client.submit(run_batch_shard, spec, pure=False).result(timeout=60)
    # Assert
    assert first["succeeded"] == second["succeeded"] == 4
    assert second["cache_hit"] is True
    for x, out in zip(xs, second["outputs"], strict=True):
        np.testing.assert_allclose(
            np.asarray(out["data"]).reshape(out["shape"]),
            _ort(store.path(store.torch_onnx), x),
            rtol=1e-6,
        )
