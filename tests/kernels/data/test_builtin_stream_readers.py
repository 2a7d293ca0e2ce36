"""Tests of the bundled (scikit-learn) and synthetic ``stream`` readers."""

from __future__ import annotations

import numpy as np
import pytest

from stratalab.kernels.data import (
    BadReaderOptions,
    BuiltinReader,
    SourceUnreadable,
    StreamReader,
    array_digest,
)
from stratalab.kernels.data.synthetic import BLOCK_ROWS


@pytest.mark.parametrize(
    ("source", "rows", "shape", "classes"),
    [("digits", 1797, (64,), 10), ("builtin://iris", 150, (4,), 3)],
)
def test_builtin_datasets_load_offline(
    source: str, rows: int, shape: tuple[int, ...], classes: int
) -> None:
    # Execute
    info = BuiltinReader().inspect(source)
    x, y = BuiltinReader().read_shard(source, 0, 2)

    # Assert
    assert (info.num_rows, info.feature_shape, info.num_classes) == (rows, shape, classes)
    assert len(x) == rows // 2 and x.dtype == np.float32 and y.dtype == np.int64


def test_builtin_shuffle_seed_mixes_classes_into_every_shard() -> None:
    # Prepare: iris is stored sorted by class
    plain = BuiltinReader()
    shuffled = BuiltinReader(shuffle_seed=0)

    # Execute
    _, first_plain = plain.read_shard("iris", 0, 3)
    _, first_shuffled = shuffled.read_shard("iris", 0, 3)
    _, again = BuiltinReader(shuffle_seed=0).read_shard("iris", 0, 3)

    # Assert
    assert set(first_plain.tolist()) == {0}
    assert set(first_shuffled.tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(first_shuffled, again)


def test_unknown_builtin_dataset() -> None:
    # Execute / Assert
    with pytest.raises(SourceUnreadable, match="unknown built-in dataset 'mnist'"):
        BuiltinReader().inspect("mnist")


def test_stream_is_deterministic_and_shards_compose() -> None:
    # Prepare: rows that cross a generation block boundary
    reader = StreamReader(num_rows=BLOCK_ROWS + 1000, n_features=5, n_classes=3, seed=42)

    # Execute
    whole = reader.read_shard("stream://demo", 0, 1)
    parts = [reader.read_shard("stream://demo", i, 3) for i in range(3)]
    again = StreamReader(num_rows=BLOCK_ROWS + 1000, n_features=5, n_classes=3, seed=42)
    other_seed = StreamReader(num_rows=BLOCK_ROWS + 1000, n_features=5, n_classes=3, seed=43)

    # Assert
    np.testing.assert_array_equal(np.concatenate([x for x, _ in parts]), whole[0])
    np.testing.assert_array_equal(np.concatenate([y for _, y in parts]), whole[1])
    assert array_digest(*again.read_shard("s", 1, 3)) == array_digest(*parts[1])
    assert array_digest(*other_seed.read_shard("s", 1, 3)) != array_digest(*parts[1])
    assert set(np.unique(whole[1]).tolist()) == {0, 1, 2}
    assert whole[0].shape == (BLOCK_ROWS + 1000, 5)


def test_stream_is_learnable() -> None:
    # Prepare
    x, y = StreamReader(num_rows=2000, n_features=4, n_classes=2, seed=1).read_shard("s", 0, 1)

    # Execute: nearest class mean, a crude check that classes are separated
    means = np.stack([x[y == c].mean(axis=0) for c in (0, 1)])
    predicted = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)

    # Assert
    assert (predicted == y).mean() > 0.8


@pytest.mark.parametrize(
    "options",
    [{"num_rows": 0}, {"n_classes": 1}, {"n_features": 2.5}, {"class_sep": 0}, {"noise": -1}],
)
def test_stream_rejects_bad_options(options: dict) -> None:
    # Execute / Assert
    with pytest.raises(BadReaderOptions):
        StreamReader(**options)
