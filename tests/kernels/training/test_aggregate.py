"""Hand-checked tests of the FedAvg maths in ``stratalab.kernels.training.aggregate``."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from stratalab.kernels.training.aggregate import (
    merge_stale,
    staleness_weight,
    weighted_average,
    weighted_metrics,
)


def test_weighted_average_matches_hand_computation() -> None:
    # Prepare: two workers, the second trained on three times as many samples.
    first = [np.array([[1.0, 2.0]]), np.array([3.0])]
    second = [np.array([[3.0, 4.0]]), np.array([5.0])]

    # Execute
    averaged = weighted_average([(first, 1), (second, 3)])

    # Assert: (1*1 + 3*3)/4 = 2.5, (1*2 + 3*4)/4 = 3.5, (1*3 + 3*5)/4 = 4.5
    np.testing.assert_allclose(averaged[0], [[2.5, 3.5]])
    np.testing.assert_allclose(averaged[1], [4.5])


def test_weighted_average_of_identical_updates_is_that_update() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3)]

    # Execute
    averaged = weighted_average([(params, 10), (params, 250), (params, 1)])

    # Assert
    for got, expected in zip(averaged, params, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_weighted_average_keeps_dtypes_and_rounds_integer_layers() -> None:
    # Prepare
    first = [np.array([1.0], dtype=np.float32), np.array([3], dtype=np.int64)]
    second = [np.array([2.0], dtype=np.float32), np.array([4], dtype=np.int64)]

    # Execute
    averaged = weighted_average([(first, 1), (second, 1)])

    # Assert: float32 stays float32; the integer mean 3.5 rounds to 4 (half to even)
    assert averaged[0].dtype == np.float32
    assert averaged[1].dtype == np.int64
    assert averaged[1][0] == 4


def test_weighted_average_ignores_zero_weight_updates() -> None:
    # Prepare
    kept = [np.array([2.0])]
    ignored = [np.array([1000.0])]

    # Execute
    averaged = weighted_average([(kept, 5), (ignored, 0)])

    # Assert
    np.testing.assert_allclose(averaged[0], [2.0])


def test_weighted_average_does_not_modify_its_inputs() -> None:
    # Prepare
    first = [np.array([1.0, 2.0])]
    second = [np.array([3.0, 4.0])]

    # Execute
    weighted_average([(first, 1), (second, 1)])

    # Assert
    np.testing.assert_array_equal(first[0], [1.0, 2.0])
    np.testing.assert_array_equal(second[0], [3.0, 4.0])


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ([], "at least one update"),
        ([([np.zeros(2)], -1)], "non-negative"),
        ([([np.zeros(2)], float("nan"))], "non-negative"),
        ([([np.zeros(2)], 0), ([np.ones(2)], 0)], "sum to zero"),
        ([([np.zeros(2)], 1), ([np.zeros(3)], 1)], "shape"),
        ([([np.zeros(2)], 1), ([np.zeros(2), np.zeros(1)], 1)], "length"),
    ],
)
def test_weighted_average_rejects_bad_input(updates: list, message: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=message):
        weighted_average(updates)


@pytest.mark.parametrize(
    ("staleness", "alpha", "expected"),
    [
        (0, 0.5, 1.0),
        (1, 0.5, 1 / math.sqrt(2)),
        (3, 0.5, 0.5),
        (4, 1.0, 0.2),
        (9, 0.0, 1.0),
    ],
)
def test_staleness_weight_is_polynomial_decay(
    staleness: int, alpha: float, expected: float
) -> None:
    # Execute
    weight = staleness_weight(staleness, alpha=alpha)

    # Assert: (1 + s) ** -alpha
    assert weight == pytest.approx(expected)


def test_staleness_weight_decreases_with_staleness() -> None:
    # Execute
    weights = [staleness_weight(s) for s in range(20)]

    # Assert
    assert all(a > b for a, b in itertools.pairwise(weights))
    assert all(0 < w <= 1 for w in weights)


@pytest.mark.parametrize(("staleness", "alpha"), [(-1, 0.5), (1, -0.1)])
def test_staleness_weight_rejects_negative_arguments(staleness: int, alpha: float) -> None:
    # Execute / Assert
    with pytest.raises(ValueError):
        staleness_weight(staleness, alpha=alpha)


def test_merge_stale_mixes_by_weight() -> None:
    # Prepare
    global_params = [np.array([0.0, 10.0], dtype=np.float32)]
    update = [np.array([10.0, 20.0], dtype=np.float32)]

    # Execute
    merged = merge_stale(global_params, update, 0.25)

    # Assert: 0*0.75 + 10*0.25 = 2.5 and 10*0.75 + 20*0.25 = 12.5
    np.testing.assert_allclose(merged[0], [2.5, 12.5])
    assert merged[0].dtype == np.float32
    np.testing.assert_array_equal(global_params[0], [0.0, 10.0])


def test_merge_stale_endpoints_keep_or_replace() -> None:
    # Prepare
    global_params = [np.array([1.0])]
    update = [np.array([5.0])]

    # Execute
    kept = merge_stale(global_params, update, 0.0)
    replaced = merge_stale(global_params, update, 1.0)

    # Assert
    np.testing.assert_array_equal(kept[0], [1.0])
    np.testing.assert_array_equal(replaced[0], [5.0])


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_merge_stale_rejects_weights_outside_unit_interval(weight: float) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="mixing weight"):
        merge_stale([np.zeros(1)], [np.zeros(1)], weight)


def test_weighted_metrics_weights_by_samples() -> None:
    # Prepare: loss 1.0 on 1 sample and 3.0 on 3 samples; accuracy only on the first
    reports = [({"loss": 1.0, "accuracy": 0.5}, 1.0), ({"loss": 3.0}, 3.0), ({"loss": 9.0}, 0.0)]

    # Execute
    metrics = weighted_metrics(reports)

    # Assert: (1*1 + 3*3) / 4 = 2.5; accuracy averaged where present
    assert metrics == {"loss": pytest.approx(2.5), "accuracy": pytest.approx(0.5)}
