"""OpenAPI operations of the benchmark routes (merged into ``openapi.OPERATIONS``)."""

from __future__ import annotations

from pydantic import BaseModel

from stratalab.scheduler import benchmark_schemas as b
from stratalab.scheduler import schemas as s

#: (method, path, summary, request model, response model, success status, public)
BENCHMARK_OPERATIONS: list[
    tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None, int, bool]
] = [
    (
        "post",
        "/benchmarks",
        "Start a benchmark: mode inference, training, gpu-training, or a perf step load",
        b.BenchmarkCreate,
        b.BenchmarkOut,
        202,
        False,
    ),
    (
        "get",
        "/benchmarks",
        "Benchmark runs, newest first",
        None,
        s.Page[b.BenchmarkOut],
        200,
        False,
    ),
    (
        "get",
        "/benchmarks/{benchmark_id}",
        "A run: status, progress, summary, per-step results",
        None,
        b.BenchmarkOut,
        200,
        False,
    ),
]
