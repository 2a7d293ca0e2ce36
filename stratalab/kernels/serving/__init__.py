"""Serving models from Dask workers: cache, micro-batching, RPC handlers, batch shards.

``plugin.ServingPlugin`` runs on the workers; ``client.call_worker`` is what the
coordinator awaits to reach it; ``batch.run_batch_shard`` is the task behind
``POST /inference/batch``. See architecture decision 11 and
``benchmarks/bench_serving_paths.py`` for why sync inference is not a task.
"""

from __future__ import annotations
