"""The plugin under memory pressure and failure: tests for serving/plugin.py and client.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import pytest_asyncio
from distributed import Client
from distributed.core import ConnectionPool

from stratalab.errors import ServiceUnavailable
from stratalab.kernels.models.samples import SampleStore
from stratalab.kernels.serving.client import call_worker
from stratalab.kernels.serving.plugin import ServingPlugin
from stratalab.kernels.serving.protocol import OP_MODELS

pytestmark = pytest.mark.asyncio


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


@pytest.fixture(scope="module")
def small_cache_plugin(client: Client, store: SampleStore) -> ServingPlugin:
    """A cache that holds one sample model at a time."""
    serving = ServingPlugin(store.root, max_bytes=store.path(store.mlp).stat().st_size + 1)
    client.register_plugin(serving)
    return serving


@pytest_asyncio.fixture
async def pool(small_cache_plugin: ServingPlugin) -> AsyncIterator[ConnectionPool]:
    async with ConnectionPool(limit=8) as rpc:
        yield rpc


async def test_models_are_evicted_and_reloaded_transparently(
    pool: ConnectionPool, worker_address: str, store: SampleStore
) -> None:
    # Prepare
    x = np.ones((2, 4), dtype=np.float32)
    # Execute: alternate between two models that do not fit together
    replies = []
    for sha in (store.mlp, store.torch_onnx, store.mlp):
        replies.append(await call_worker(pool, worker_address, sha256=sha, inputs={"x": x}))
    listing = await call_worker(pool, worker_address, op=OP_MODELS)
    # Assert: every call answered correctly, each one after a (re)load
    assert [r["cache_hit"] for r in replies] == [False, False, False]
    assert [m["sha256"] for m in listing["models"]] == [store.mlp]
    np.testing.assert_array_equal(replies[2]["outputs"]["y"], _ort(store.path(store.mlp), x))
    np.testing.assert_allclose(
        replies[1]["outputs"]["y"], _ort(store.path(store.torch_onnx), x), rtol=1e-6
    )


async def test_unreachable_worker_is_service_unavailable() -> None:
    async with ConnectionPool(limit=2, timeout=0.5) as rpc:
        with pytest.raises(ServiceUnavailable):
            await call_worker(rpc, "tcp://127.0.0.1:9", sha256="0" * 64, inputs=[[1.0]])
