"""Distributed-training building blocks that run on Dask workers and in the coordinator.

Importing this package is torch-free: the aggregation maths and the
strategies need only numpy, so the coordinator can aggregate without loading
torch. The torch parts are imported explicitly:
``stratalab.kernels.training.local`` (``train_local``, ``evaluate``) and
``stratalab.kernels.training.architectures`` (``build_model``, ``get_params``).
"""

from __future__ import annotations

from stratalab.kernels.training.aggregate import (
    Params,
    merge_stale,
    staleness_weight,
    weighted_average,
    weighted_metrics,
)
from stratalab.kernels.training.fedavg import (
    STRATEGIES,
    AsyncFedAvg,
    FullSyncFedAvg,
    SemiSyncFedAvg,
    make_strategy,
)
from stratalab.kernels.training.strategy import (
    AggregationStrategy,
    Assignment,
    Failure,
    Update,
    task_seed,
)

__all__ = [
    "STRATEGIES",
    "AggregationStrategy",
    "Assignment",
    "AsyncFedAvg",
    "Failure",
    "FullSyncFedAvg",
    "Params",
    "SemiSyncFedAvg",
    "Update",
    "make_strategy",
    "merge_stale",
    "staleness_weight",
    "task_seed",
    "weighted_average",
    "weighted_metrics",
]
