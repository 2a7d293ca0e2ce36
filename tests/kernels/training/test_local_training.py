"""Tests of ``train_local`` and ``evaluate`` on scikit-learn's bundled digits (no download)."""

from __future__ import annotations

import numpy as np
import pytest

from stratalab.errors import ValidationFailed
from stratalab.kernels.data import make_reader
from stratalab.kernels.training import FullSyncFedAvg, Update, weighted_average
from stratalab.kernels.training.local import evaluate, per_class_metrics, train_local

MLP = {"architecture": "mlp", "in_features": 64, "hidden": [64], "num_classes": 10}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits through the builtin reader: the first 80% for training, the rest held out."""
    reader = make_reader("builtin")
    x, y = reader.read_shard("digits", 0, 1)
    cut = int(len(x) * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def test_two_fedavg_rounds_over_two_shards_learn_digits(digits: tuple) -> None:
    # Prepare: two shards, synchronous FedAvg, the same loop a coordinator runs
    x_train, y_train, x_val, y_val = digits
    half = len(x_train) // 2
    shards = {"w0": (x_train[:half], y_train[:half]), "w1": (x_train[half:], y_train[half:])}
    strategy = FullSyncFedAvg(
        local_config={"epochs": 5, "batch_size": 32, "lr": 0.01, "optimizer": "sgd"}, seed=3
    )
    strategy.initialize(train_local(None, MLP, shards["w0"], local_steps=1, seed=0)["params"])

    # Execute
    for rnd in (1, 2):
        updates = [
            Update.from_result(
                task,
                train_local(
                    strategy.parameters, MLP, shards[task.worker], seed=task.seed, **task.config
                ),
            )
            for task in strategy.configure_round(rnd, list(shards))
        ]
        strategy.aggregate(rnd, updates, [])
    report = evaluate(strategy.parameters, MLP, x_val, y_val)

    # Assert
    assert report["accuracy"] > 0.85
    assert report["num_samples"] == len(y_val)
    assert set(report["per_class"]) == {str(c) for c in range(10)}


def test_fedavg_of_identical_updates_equals_each_update(digits: tuple) -> None:
    # Prepare
    x_train, y_train, _, _ = digits
    result = train_local(None, MLP, (x_train[:200], y_train[:200]), epochs=1, seed=1)

    # Execute
    averaged = weighted_average([(result["params"], 200), (result["params"], 50)])

    # Assert
    assert len(averaged) == len(result["params"])
    for got, expected in zip(averaged, result["params"], strict=True):
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_train_local_reports_what_fedavg_needs(digits: tuple) -> None:
    # Prepare
    x_train, y_train, _, _ = digits
    calls: list[tuple[int, dict[str, float]]] = []

    # Execute
    result = train_local(
        None,
        MLP,
        (x_train[:100], y_train[:100]),
        local_steps=7,
        batch_size=16,
        optimizer="adam",
        lr=1e-3,
        on_step=lambda step, m: calls.append((step, m)),
        report_every=3,
    )

    # Assert: exactly local_steps steps, even though 7 * 16 > 100 rows (it cycles)
    assert result["steps"] == 7
    assert result["num_samples"] == 100
    assert result["samples_per_s"] > 0
    assert 0.0 <= result["accuracy"] <= 1.0 and result["loss"] > 0
    assert [step for step, _ in calls] == [3, 6, 7]
    assert set(calls[-1][1]) == {"loss", "accuracy"}


def test_train_local_is_deterministic_by_seed(digits: tuple) -> None:
    # Prepare
    x_train, y_train, _, _ = digits
    shard = (x_train[:120], y_train[:120])

    # Execute
    first = train_local(None, MLP, shard, epochs=2, seed=11)
    second = train_local(None, MLP, shard, epochs=2, seed=11)
    other = train_local(None, MLP, shard, epochs=2, seed=12)

    # Assert
    for a, b in zip(first["params"], second["params"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first["params"][0], other["params"][0])


def test_train_local_starts_from_the_given_parameters(digits: tuple) -> None:
    # Prepare: a zero learning-rate-like check is impossible, so compare one step's drift
    x_train, y_train, _, _ = digits
    start = train_local(None, MLP, (x_train[:50], y_train[:50]), local_steps=1, seed=0)["params"]

    # Execute
    moved = train_local(start, MLP, (x_train[:50], y_train[:50]), local_steps=1, lr=1e-6, seed=5)

    # Assert: a tiny step from `start` stays next to `start`, whatever the seed
    for before, after in zip(start, moved["params"], strict=True):
        np.testing.assert_allclose(before, after, atol=1e-3)


def test_small_cnn_trains_on_digit_images(digits: tuple) -> None:
    # Prepare: the flat 64-pixel rows are reshaped to 1x8x8 by the model spec
    x_train, y_train, x_val, y_val = digits
    spec = {"architecture": "small_cnn", "in_channels": 1, "num_classes": 10, "image_size": 8}

    # Execute
    result = train_local(None, spec, (x_train[:256], y_train[:256]), local_steps=5, seed=0)
    report = evaluate(result["params"], spec, x_val[:64], y_val[:64])

    # Assert
    assert result["steps"] == 5
    assert 0.0 <= report["accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
        ({"batch_size": 0}, "must be positive"),
        ({"lr": -1.0}, "lr"),
    ],
)
def test_train_local_rejects_bad_options(digits: tuple, options: dict, message: str) -> None:
    # Prepare
    x_train, y_train, _, _ = digits

    # Execute / Assert
    with pytest.raises(ValidationFailed, match=message):
        train_local(None, MLP, (x_train[:10], y_train[:10]), **options)


def test_train_local_rejects_data_that_does_not_fit_the_model() -> None:
    # Prepare
    x = np.zeros((4, 64), dtype=np.float32)

    # Execute / Assert
    with pytest.raises(ValidationFailed, match="10 classes"):
        train_local(None, MLP, (x, np.array([0, 1, 2, 10])))
    with pytest.raises(ValidationFailed, match="64 values"):
        train_local(None, MLP, (np.zeros((4, 63)), np.zeros(4, dtype=np.int64)))
    with pytest.raises(ValidationFailed, match="one entry per row"):
        train_local(None, MLP, (x, np.zeros(3, dtype=np.int64)))
    with pytest.raises(ValidationFailed, match="empty shard"):
        train_local(None, MLP, (x[:0], np.zeros(0, dtype=np.int64)))
    with pytest.raises(ValidationFailed, match="integers"):
        train_local(None, MLP, (x, np.array([0.5, 1, 2, 3])))


def test_per_class_metrics_match_hand_computation() -> None:
    # Prepare: class 0 predicted 3 times (2 right), class 1 twice (1 right), class 2 never
    truth = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 1, 0, 1, 5])

    # Execute
    report = per_class_metrics(truth, predicted)

    # Assert
    assert report["0"] == {"precision": 2 / 3, "recall": 1.0, "support": 2.0}
    assert report["1"] == {"precision": 0.5, "recall": 0.5, "support": 2.0}
    assert report["2"] == {"precision": 0.0, "recall": 0.0, "support": 2.0}
    assert report["5"] == {"precision": 0.0, "recall": 0.0, "support": 0.0}


def test_evaluate_with_known_weights() -> None:
    # Prepare: a linear model whose logits are the first three inputs, so the
    # prediction is the index of the largest of them.
    spec = {"architecture": "mlp", "in_features": 3, "hidden": [], "num_classes": 3}
    params = [np.eye(3, dtype=np.float32), np.zeros(3, dtype=np.float32)]
    x = np.array([[5, 0, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5]], dtype=np.float32)
    y = np.array([0, 1, 2, 2])

    # Execute
    report = evaluate(params, spec, x, y)

    # Assert: predictions 0, 1, 1, 2 -> 3 of 4 right
    assert report["accuracy"] == pytest.approx(0.75)
    assert report["per_class"]["1"]["precision"] == pytest.approx(0.5)
    assert report["per_class"]["2"]["recall"] == pytest.approx(0.5)
    # cross-entropy of the right answer with logits (5, 0, 0): log(1 + 2e-5)
    right = np.log(1 + 2 * np.exp(-5.0))
    wrong = 5.0 + np.log(1 + 2 * np.exp(-5.0))
    assert report["loss"] == pytest.approx((3 * right + wrong) / 4, rel=1e-5)
