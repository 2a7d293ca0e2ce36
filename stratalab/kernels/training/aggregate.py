"""Pure aggregation maths for federated averaging, with no torch and no Dask.

Everything here works on *parameter lists*: a model's tensors as a list of
numpy arrays in a fixed order (see ``architectures.get_params``). Keeping the
maths in plain functions (the Flower ``aggregate.py`` pattern) lets the
strategies in ``strategy.py`` stay small and lets the numbers be checked by
hand in unit tests without a cluster.

Accumulation is done in float64 and the result is cast back to each layer's
own dtype, so averaging many float32 updates does not drift.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: A model's parameters: one numpy array per tensor, in a fixed order.
Params = list[np.ndarray]


def _check_compatible(reference: Sequence[np.ndarray], other: Sequence[np.ndarray]) -> None:
    """Raise ``ValueError`` unless ``other`` has the layer count and shapes of ``reference``."""
    if len(other) != len(reference):
        raise ValueError(
            f"parameter lists differ in length: {len(reference)} layers vs {len(other)}"
        )
    for index, (ref, arr) in enumerate(zip(reference, other, strict=True)):
        if np.shape(ref) != np.shape(arr):
            raise ValueError(f"layer {index} has shape {np.shape(arr)}, expected {np.shape(ref)}")


def _cast_like(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Cast a float64 accumulator back to the dtype of ``like``.

    Integer layers (for example a batch-norm step counter) are rounded to the
    nearest integer rather than truncated, so the average of 3 and 4 is 4, not 3.
    """
    dtype = np.asarray(like).dtype
    if np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_):
        return np.rint(values).astype(dtype)
    return values.astype(dtype, copy=False)


def weighted_average(updates: Sequence[tuple[Sequence[np.ndarray], float]]) -> Params:
    """Average parameter lists weighted by how many samples each was trained on.

    This is FedAvg's server step (McMahan et al., 2017): a worker that saw more
    data moves the global model proportionally more, which makes the result
    equal to what one worker holding all the shards would have produced for
    one linear step.

    Parameters
    ----------
    updates
        ``(params, num_samples)`` pairs, one per worker. All parameter lists
        must have the same number of layers and the same shapes. Weights must
        be non-negative and at least one must be positive.

    Returns
    -------
    list of numpy.ndarray
        The weighted mean of each layer, in each layer's original dtype.

    Raises
    ------
    ValueError
        If ``updates`` is empty, a weight is negative or not finite, all
        weights are zero, or the parameter lists are not compatible.
    """
    if not updates:
        raise ValueError("weighted_average needs at least one update")
    weights = [float(weight) for _, weight in updates]
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"sample weights must be finite and non-negative, got {weights}")
    total = math.fsum(weights)
    if total <= 0:
        raise ValueError("sample weights sum to zero: no update carries any samples")
    reference = updates[0][0]
    for params, _ in updates[1:]:
        _check_compatible(reference, params)

    averaged: Params = []
    for layer_index, ref_layer in enumerate(reference):
        accumulator = np.zeros(np.shape(ref_layer), dtype=np.float64)
        for (params, _), weight in zip(updates, weights, strict=True):
            if weight:
                accumulator += np.asarray(params[layer_index], dtype=np.float64) * (weight / total)
        averaged.append(_cast_like(accumulator, np.asarray(ref_layer)))
    return averaged


def staleness_weight(staleness: int, *, alpha: float = 0.5) -> float:
    """Down-weight an update by how many global versions old its starting point is.

    Uses the polynomial decay ``(1 + s) ** -alpha`` of FedAsync (Xie, Koyejo
    and Gupta, 2019). A fresh update (``s = 0``) gets weight 1; with the
    default ``alpha = 0.5`` an update one version old gets ``1/sqrt(2)`` (0.707)
    and one three versions old gets 0.5. The decay is gentler than an
    exponential one, so slow workers still contribute instead of being
    silently ignored, while very old updates cannot drag the model back.

    Parameters
    ----------
    staleness
        ``current_round - round_the_update_started_from``; 0 for a fresh update.
    alpha
        Decay exponent, ``>= 0``. ``0`` disables the decay (every update has
        weight 1); larger values punish staleness harder.

    Returns
    -------
    float
        A weight in ``(0, 1]``.

    Raises
    ------
    ValueError
        If ``staleness`` or ``alpha`` is negative.
    """
    if staleness < 0:
        raise ValueError(f"staleness must be >= 0, got {staleness}")
    if alpha < 0 or not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite and >= 0, got {alpha}")
    return float((1.0 + staleness) ** -alpha)


def merge_stale(
    global_params: Sequence[np.ndarray], update: Sequence[np.ndarray], weight: float
) -> Params:
    """Mix one update into the global model: ``global * (1 - w) + update * w``.

    This is the asynchronous FedAvg server step: instead of waiting for a
    full round, the server moves the global model part of the way towards
    each update as it arrives. ``w`` is usually a base mixing rate times
    :func:`staleness_weight`.

    Parameters
    ----------
    global_params
        The current global parameters.
    update
        A worker's parameters, same layers and shapes as ``global_params``.
    weight
        Mixing weight in ``[0, 1]``: 0 keeps the global model, 1 replaces it.

    Returns
    -------
    list of numpy.ndarray
        New parameter arrays (the inputs are not modified).

    Raises
    ------
    ValueError
        If ``weight`` is outside ``[0, 1]`` or the lists are not compatible.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"mixing weight must be in [0, 1], got {weight}")
    _check_compatible(global_params, update)
    merged: Params = []
    for old, new in zip(global_params, update, strict=True):
        old64 = np.asarray(old, dtype=np.float64)
        mixed = old64 * (1.0 - weight) + np.asarray(new, dtype=np.float64) * weight
        merged.append(_cast_like(mixed, np.asarray(old)))
    return merged


def weighted_metrics(
    reports: Sequence[tuple[Mapping[str, float], float]],
) -> dict[str, float]:
    """Average scalar metrics (loss, accuracy) across workers by sample count.

    A plain mean would let a worker with ten samples count as much as one
    with ten thousand; weighting by samples gives the metric over the union
    of the shards.

    Parameters
    ----------
    reports
        ``(metrics, num_samples)`` pairs. A metric missing from some reports
        is averaged over the reports that have it.

    Returns
    -------
    dict
        The weighted mean of every metric name seen. Empty when ``reports``
        is empty or all weights are zero.
    """
    sums: dict[str, float] = {}
    totals: dict[str, float] = {}
    for metrics, weight in reports:
        if weight <= 0:
            continue
        for name, value in metrics.items():
            if value is None or not math.isfinite(float(value)):
                continue
            sums[name] = sums.get(name, 0.0) + float(value) * weight
            totals[name] = totals.get(name, 0.0) + weight
    return {name: sums[name] / totals[name] for name in sums}
