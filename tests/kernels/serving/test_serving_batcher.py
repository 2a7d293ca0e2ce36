"""Micro-batching in one process: tests for stratalab/kernels/serving/batcher.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from stratalab.kernels.models.errors import InvalidInput
from stratalab.kernels.models.runtime import load_model
from stratalab.kernels.models.samples import SampleStore
from stratalab.kernels.serving.batcher import MicroBatcher

Arrays = dict[str, np.ndarray]

pytestmark = pytest.mark.asyncio


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1)
    yield pool
    pool.shutdown(wait=True)


class Recorder:
    """A real numpy 'model' that records the batch sizes it was called with."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, inputs: Arrays) -> Arrays:
        x = inputs["x"]
        self.calls.append(int(x.shape[0]))
        if (x < 0).any():
            raise InvalidInput("negative values are not allowed")
        return {"y": x * 2.0, "rows": np.arange(x.shape[0])}


async def test_sixteen_concurrent_requests_match_unbatched_results(
    store: SampleStore, executor: ThreadPoolExecutor
) -> None:
    # Prepare
    model = load_model(store.path(store.mlp), "onnx")
    batcher = MicroBatcher(model.run, executor, max_batch=64, max_wait_ms=5)
    rng = np.random.default_rng(0)
    requests = [rng.normal(size=(1 + i % 3, 4)).astype(np.float32) for i in range(16)]
    # Execute
    results = await asyncio.gather(*(batcher.submit({"x": x}, rows=x.shape[0]) for x in requests))
    # Assert
    for x, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(
            result.outputs["y"], model.run({"x": x})["y"], rtol=1e-6, atol=1e-7
        )
    assert max(r.batched for r in results) > 1
    assert batcher.runs < 16
    assert batcher.requests == 16
    await batcher.close()


async def test_batches_respect_max_batch_rows(executor: ThreadPoolExecutor) -> None:
    run = Recorder()
    batcher = MicroBatcher(run, executor, max_batch=8, max_wait_ms=5)
    xs = [np.full((3, 2), i, dtype=np.float32) for i in range(10)]
    results = await asyncio.gather(*(batcher.submit({"x": x}, rows=3) for x in xs))
    assert max(run.calls) <= 8
    assert sum(run.calls) == 30
    for x, result in zip(xs, results, strict=True):
        np.testing.assert_array_equal(result.outputs["y"], x * 2.0)
        assert result.outputs["rows"].shape == (3,)


async def test_incompatible_shapes_are_not_merged(executor: ThreadPoolExecutor) -> None:
    run = Recorder()
    batcher = MicroBatcher(run, executor, max_wait_ms=5)
    narrow = [np.ones((1, 2), dtype=np.float32) for _ in range(3)]
    wide = [np.ones((1, 5), dtype=np.float32) for _ in range(3)]
    results = await asyncio.gather(
        *(batcher.submit({"x": x}, rows=1) for pair in zip(narrow, wide, strict=True) for x in pair)
    )
    assert sorted(run.calls) == [3, 3]
    assert [r.outputs["y"].shape[1] for r in results] == [2, 5, 2, 5, 2, 5]


async def test_requests_without_batch_dimension_run_alone(executor: ThreadPoolExecutor) -> None:
    run = Recorder()
    batcher = MicroBatcher(run, executor, max_wait_ms=5)
    results = await asyncio.gather(
        *(batcher.submit({"x": np.ones((1, 2))}, rows=None) for _ in range(4))
    )
    assert run.calls == [1, 1, 1, 1]
    assert all(r.batched == 1 for r in results)


async def test_one_bad_request_fails_alone(executor: ThreadPoolExecutor) -> None:
    # Prepare
    run = Recorder()
    batcher = MicroBatcher(run, executor, max_wait_ms=5)
    xs = [np.ones((1, 2)), -np.ones((1, 2)), np.ones((1, 2))]
    # Execute
    results = await asyncio.gather(
        *(batcher.submit({"x": x}, rows=1) for x in xs), return_exceptions=True
    )
    # Assert
    assert isinstance(results[1], InvalidInput)
    assert not isinstance(results[0], BaseException)
    assert not isinstance(results[2], BaseException)
    np.testing.assert_array_equal(results[0].outputs["y"], [[2.0, 2.0]])


async def test_outputs_without_batch_axis_fall_back_to_single_runs(
    executor: ThreadPoolExecutor,
) -> None:
    def total(inputs: Arrays) -> Arrays:
        return {"sum": np.asarray(inputs["x"].sum())}

    batcher = MicroBatcher(total, executor, max_wait_ms=5)
    results = await asyncio.gather(
        *(batcher.submit({"x": np.full((1, 2), float(i))}, rows=1) for i in range(3))
    )
    assert [float(r.outputs["sum"]) for r in results] == [0.0, 2.0, 4.0]
    assert all(r.batched == 1 for r in results)


async def test_zero_wait_takes_only_what_is_already_queued(executor: ThreadPoolExecutor) -> None:
    run = Recorder()
    batcher = MicroBatcher(run, executor, max_wait_ms=0)
    results = await asyncio.gather(
        *(batcher.submit({"x": np.ones((1, 2))}, rows=1) for _ in range(5))
    )
    assert sum(run.calls) == 5
    assert max(r.batched for r in results) > 1  # queued together before the consumer ran


async def test_close_serves_the_queue_then_runs_alone(executor: ThreadPoolExecutor) -> None:
    run = Recorder()
    batcher = MicroBatcher(run, executor, max_wait_ms=50)
    pending = [
        asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2))}, rows=1)) for _ in range(3)
    ]
    await asyncio.sleep(0)
    await batcher.close()
    results = await asyncio.gather(*pending)
    assert len(results) == 3
    late = await batcher.submit({"x": np.ones((1, 2))}, rows=1)
    assert late.batched == 1
