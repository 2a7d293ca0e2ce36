"""The serving plugin on a real worker process, called over Dask's RPC.

Tests for stratalab/kernels/serving/plugin.py and client.py. Results are
compared with an ONNX Runtime session run in the test process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import pytest_asyncio
from distributed import Client
from distributed.core import ConnectionPool

from stratalab.errors import NoModel
from stratalab.kernels.models.errors import InvalidInput, UnknownAdapter
from stratalab.kernels.models.samples import SampleStore
from stratalab.kernels.models.tensors import encode_array
from stratalab.kernels.serving.client import call_worker
from stratalab.kernels.serving.plugin import ServingPlugin
from stratalab.kernels.serving.protocol import OP_LOAD, OP_MODELS, OP_UNLOAD

pytestmark = pytest.mark.asyncio


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    """Ground truth: a plain ONNX Runtime session in this process."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


@pytest.fixture(scope="module")
def plugin(client: Client, store: SampleStore) -> ServingPlugin:
    """Registered once per module; a generous wait so concurrent calls batch on a busy box."""
    serving = ServingPlugin(store.root, max_bytes=50_000_000, max_wait_ms=20, max_batch=64)
    client.register_plugin(serving)
    return serving


@pytest_asyncio.fixture
async def pool(plugin: ServingPlugin) -> AsyncIterator[ConnectionPool]:
    """The caller's side: a pool of comms to the worker, as the coordinator keeps one."""
    async with ConnectionPool(limit=32) as rpc:
        yield rpc


async def test_infer_over_rpc_matches_onnx_runtime(
    pool: ConnectionPool, worker_address: str, store: SampleStore
) -> None:
    # Prepare
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    # Execute
    reply = await call_worker(pool, worker_address, sha256=store.mlp, inputs={"x": x})
    # Assert
    np.testing.assert_array_equal(reply["outputs"]["y"], _ort(store.path(store.mlp), x))
    assert reply["device"] == "cpu"
    assert reply["worker"] == worker_address
    assert reply["batched"] >= 1
    assert reply["compute_ms"] >= 0


async def test_raw_message_shape_on_the_wire(
    pool: ConnectionPool, worker_address: str, store: SampleStore
) -> None:
    # Execute: the handler called exactly as Dask calls handlers, no helper
    x = np.ones((1, 4), dtype=np.float32)
    reply = await pool(worker_address).stratalab_infer(
        sha256=store.mlp, fmt="onnx", inputs=encode_array(x), model_id="model_test"
    )
    # Assert
    assert set(reply) >= {"outputs", "compute_ms", "device", "worker", "batched"}
    wire = reply["outputs"]["y"]
    assert wire["dtype"] == "float32"
    assert list(wire["shape"]) == [1, 3]  # msgpack arrays arrive as tuples
    assert isinstance(wire["data"], bytes)


async def test_json_lists_with_passthrough_postprocessing(
    pool: ConnectionPool, worker_address: str, store: SampleStore
) -> None:
    data = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    reply = await call_worker(
        pool,
        worker_address,
        sha256=store.mlp,
        inputs={"data": data, "shape": [2, 4]},
        postprocessing="passthrough",
    )
    expected = _ort(store.path(store.mlp), np.asarray(data, dtype=np.float32).reshape(2, 4))
    assert reply["outputs"]["shape"] == [2, 3]
    np.testing.assert_allclose(reply["outputs"]["data"], expected.reshape(-1), rtol=1e-6)


async def test_torchscript_on_the_worker_matches_onnx_runtime(
    pool: ConnectionPool, worker_address: str, store: SampleStore
) -> None:
    x = np.random.default_rng(2).normal(size=(4, 4))
    reply = await call_worker(
        pool, worker_address, sha256=store.torchscript, inputs={"input_0": x.tolist()}
    )
    expected = _ort(store.path(store.torch_onnx), x.astype(np.float32))
    np.testing.assert_allclose(reply["outputs"]["output_0"], expected, rtol=1e-5, atol=1e-6)


async def test_adapters_run_on_the_worker(
    pool: ConnectionPool, worker_address: str, store: SampleStore
) -> None:
    # Prepare
    rows = [{"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}, {"d": 1.0, "c": 0.0, "b": 1.0, "a": 0.0}]
    params: dict[str, Any] = {"columns": ["a", "b", "c", "d"], "labels": ["x", "y", "z"], "k": 2}
    # Execute
    reply = await call_worker(
        pool,
        worker_address,
        sha256=store.mlp,
        inputs=rows,
        preprocessing="tabular",
        postprocessing="top_k_labels",
        params=params,
    )
    # Assert
    logits = _ort(
        store.path(store.mlp), np.array([[0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]], dtype=np.float32)
    )
    predictions = reply["outputs"]["predictions"]
    assert [[p["index"] for p in row] for row in predictions] == [
        list(np.argsort(-row)[:2]) for row in logits
    ]
    assert predictions[0][0]["label"] in {"x", "y", "z"}


async def test_input_schema_is_checked_on_the_worker(
    pool: ConnectionPool, worker_address: str, store: SampleStore
) -> None:
    schema = {
        "type": "object",
        "properties": {"data": {"type": "array", "items": {"type": "number"}}},
        "allow_nan": False,
    }
    with pytest.raises(InvalidInput, match=r"\$\.data\[2\]"):
        await call_worker(
            pool,
            worker_address,
            sha256=store.mlp,
            inputs={"data": [0.1, 0.2, float("nan"), 0.4], "shape": [1, 4]},
            input_schema=schema,
        )


async def test_caller_errors_come_back_as_their_own_class(
    pool: ConnectionPool, worker_address: str, store: SampleStore
) -> None:
    with pytest.raises(InvalidInput, match=r"expected shape \[None, 4\] \(float32\), got \[2, 3\]"):
        await call_worker(pool, worker_address, sha256=store.mlp, inputs={"x": np.zeros((2, 3))})
    with pytest.raises(NoModel):
        await call_worker(pool, worker_address, sha256="0" * 64, inputs={"x": [[1, 2, 3, 4]]})
    with pytest.raises(UnknownAdapter):
        await call_worker(
            pool, worker_address, sha256=store.mlp, inputs=[[1]], preprocessing="audio"
        )
    with pytest.raises(InvalidInput, match="unknown request fields"):
        await call_worker(pool, worker_address, sha256=store.mlp, inputs=[[1]], colour="red")
    # and the raw reply is a plain error envelope, not a Dask "uncaught-error"
    raw = await pool(worker_address).stratalab_infer(sha256=store.mlp, inputs={"x": [[1.0]]})
    assert raw["error"]["code"] == "VALIDATION_ERROR"
    assert raw["error"]["type"] == "InvalidInput"


async def test_sixteen_concurrent_requests_are_micro_batched(
    pool: ConnectionPool, worker_address: str, store: SampleStore
) -> None:
    # Prepare
    rng = np.random.default_rng(3)
    requests = [rng.normal(size=(1, 4)).astype(np.float32) for _ in range(16)]
    await call_worker(pool, worker_address, op=OP_LOAD, sha256=store.mlp)
    # Execute
    replies = await asyncio.gather(
        *(call_worker(pool, worker_address, sha256=store.mlp, inputs={"x": x}) for x in requests)
    )
    # Assert: same numbers as unbatched ORT, and at least one shared forward pass
    for x, reply in zip(requests, replies, strict=True):
        np.testing.assert_allclose(
            reply["outputs"]["y"], _ort(store.path(store.mlp), x), rtol=1e-6, atol=1e-7
        )
    assert max(r["batched"] for r in replies) > 1


async def test_models_load_and_unload(
    pool: ConnectionPool, worker_address: str, store: SampleStore
) -> None:
    # Execute
    loaded = await call_worker(pool, worker_address, op=OP_LOAD, sha256=store.tokens)
    listing = await call_worker(pool, worker_address, op=OP_MODELS)
    dropped = await call_worker(pool, worker_address, op=OP_UNLOAD, sha256=store.tokens)
    after = await call_worker(pool, worker_address, op=OP_MODELS)
    # Assert
    assert loaded["sha256"] == store.tokens
    assert loaded["signature"]["inputs"][0]["name"] == "input_ids"
    assert store.tokens in {m["sha256"] for m in listing["models"]}
    assert listing["nbytes"] <= listing["max_bytes"]
    assert dropped["unloaded"] == 1
    assert store.tokens not in {m["sha256"] for m in after["models"]}


async def test_a_fixed_batch_model_is_served_unbatched(
    pool: ConnectionPool, worker_address: str, store: SampleStore
) -> None:
    xs = [np.full((1, 4), i, dtype=np.float32) for i in range(4)]
    replies = await asyncio.gather(
        *(
            call_worker(pool, worker_address, sha256=store.mlp_fixed_batch, inputs={"x": x})
            for x in xs
        )
    )
    assert all(r["batched"] == 1 for r in replies)
    for x, reply in zip(xs, replies, strict=True):
        np.testing.assert_allclose(
            reply["outputs"]["y"], _ort(store.path(store.mlp_fixed_batch), x), rtol=1e-6
        )
