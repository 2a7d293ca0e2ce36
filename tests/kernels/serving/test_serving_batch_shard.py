"""Batch inference shards: tests for stratalab/kernels/serving/batch.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from distributed import Client

from stratalab.errors import ValidationFailed
from stratalab.kernels.models.samples import SampleStore
from stratalab.kernels.models.tensors import encode_array
from stratalab.kernels.serving.batch import run_batch_shard, split_items
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


def _npy(path: Path, x: np.ndarray) -> Path:
    np.save(path, x, allow_pickle=False)
    return path


def test_array_shard_writes_npz_matching_ort_and_returns_a_summary(
    store: SampleStore, tmp_path: Path
) -> None:
    # Prepare: 1,000 rows, items of 2 rows each, in an .npy file
    x = np.random.default_rng(11).normal(size=(1000, 4)).astype(np.float32)
    spec = {
        "sha256": store.mlp,
        "store_root": str(store.root),
        "input_path": str(_npy(tmp_path / "in.npy", x)),
        "rows_per_item": 2,
        "chunk_rows": 300,
        "offset": 40,
        "output_path": str(tmp_path / "out.npz"),
    }
    # Execute
    result = run_batch_shard(spec)
    # Assert
    assert "outputs" not in result
    assert (result["count"], result["succeeded"], result["failed"]) == (500, 500, 0)
    with np.load(tmp_path / "out.npz") as data:
        assert bool(data["__valid__"].all())
        np.testing.assert_allclose(data["y"], _ort(store.path(store.mlp), x), rtol=1e-5)
    items = split_items({"y": _ort(store.path(store.mlp), x)}, np.ones(500, bool), 2)
    assert items[0]["shape"] == [2, 3]


def test_array_shard_refuses_rows_that_do_not_split_into_items(
    store: SampleStore, tmp_path: Path
) -> None:
    x = np.zeros((5, 4), dtype=np.float32)
    spec = {
        "sha256": store.mlp,
        "store_root": str(store.root),
        "input_path": str(_npy(tmp_path / "in.npy", x)),
        "rows_per_item": 2,
    }
    with pytest.raises(ValidationFailed, match="do not split"):
        run_batch_shard(spec)


def test_items_shard_applies_adapters_like_the_sync_path(
    store: SampleStore, tmp_path: Path
) -> None:
    # Prepare: tabular rows in, top-k labels out, from a .json items file
    rows = [[1.0, 2.0, -1.0, 0.5], [0.0, 0.0, 1.0, 2.0]]
    items = [[{"a": r[0], "b": r[1], "c": r[2], "d": r[3]}] for r in rows]
    (tmp_path / "in.json").write_text(json.dumps(items))
    spec = {
        "sha256": store.mlp,
        "store_root": str(store.root),
        "input_path": str(tmp_path / "in.json"),
        "preprocessing": "tabular",
        "postprocessing": "top_k_labels",
        "params": {"labels": ["x", "y", "z"], "k": 1},
        "output_path": str(tmp_path / "out.json"),
    }
    # Execute
    result = run_batch_shard(spec)
    # Assert
    assert result["succeeded"] == 2
    written = json.loads((tmp_path / "out.json").read_text())
    scores = _ort(store.path(store.mlp), np.asarray(rows, dtype=np.float32))
    for item, best in zip(written, np.argmax(scores, axis=1), strict=True):
        assert item["predictions"][0][0]["label"] == ["x", "y", "z"][int(best)]


def test_array_shard_postprocesses_whole_chunks_into_one_result_per_item(
    store: SampleStore, tmp_path: Path
) -> None:
    x = np.random.default_rng(12).normal(size=(10, 4)).astype(np.float32)
    spec = {
        "sha256": store.mlp,
        "store_root": str(store.root),
        "input_path": str(_npy(tmp_path / "in.npy", x)),
        "postprocessing": "top_k_labels",
        "params": {"k": 1},
        "chunk_rows": 4,
        "output_path": str(tmp_path / "out.npz"),
    }
    result = run_batch_shard(spec)
    assert result["succeeded"] == 10
    written = json.loads((tmp_path / "out.json").read_text())  # adapters' output is JSON
    best = np.argmax(_ort(store.path(store.mlp), x), axis=1)
    assert [int(i["predictions"][0][0]["label"]) for i in written] == [int(b) for b in best]
