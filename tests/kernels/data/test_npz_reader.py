"""Tests of the NPZ reader."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest

from stratalab.kernels.data import ArrayMissing, FormatMismatch, NpzReader, SchemaMismatch


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize("compressed", [False, True])
def test_inspect_and_shards(memdir: str, write_bytes: Callable, compressed: bool) -> None:
    # Prepare: 8x8 "images" stored with their shape
    images = np.arange(6 * 64, dtype=np.uint8).reshape(6, 8, 8)
    url = write_bytes(
        f"{memdir}/d.npz",
        npz_bytes(compressed, images=images, digits=np.array([0, 1, 2, 0, 1, 2])),
    )
    reader = NpzReader(x_key="images", y_key="digits")

    # Execute
    info = reader.inspect(url)
    x, y = reader.read_shard(url, 1, 2, info=info)

    # Assert
    assert info.num_rows == 6 and info.feature_shape == (8, 8) and info.num_classes == 3
    assert info.columns == ("digits", "images") and info.feature_dtype == "uint8"
    assert x.shape == (3, 8, 8) and x.dtype == np.float32
    np.testing.assert_array_equal(x, images[3:])
    np.testing.assert_array_equal(y, [0, 1, 2])


@pytest.mark.parametrize(
    ("x_key", "y_key", "message"),
    [
        ("features", "y", r"no array 'features' \(option x_key\); it holds: x, y"),
        ("x", "labels", r"no array 'labels' \(option y_key\); it holds: x, y"),
    ],
)
def test_missing_named_arrays_list_what_is_there(
    memdir: str, write_bytes: Callable, x_key: str, y_key: str, message: str
) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/d.npz", npz_bytes(x=np.zeros((2, 3)), y=np.zeros(2)))

    # Execute / Assert
    with pytest.raises(ArrayMissing, match=message):
        NpzReader(x_key=x_key, y_key=y_key).inspect(url)


def test_not_an_npz_archive(memdir: str, write_bytes: Callable) -> None:
    # Prepare: a bare .npy is not an archive of named arrays
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    url = write_bytes(f"{memdir}/d.npz", buffer.getvalue())

    # Execute / Assert
    with pytest.raises(FormatMismatch, match="not an NPZ archive"):
        NpzReader().inspect(url)


def test_label_count_must_match_rows(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/d.npz", npz_bytes(x=np.zeros((4, 3)), y=np.zeros(3)))

    # Execute / Assert
    with pytest.raises(SchemaMismatch, match=r"one label per row of 'x' \(4 rows\)"):
        NpzReader().inspect(url)


def test_pickled_object_arrays_are_refused(memdir: str, write_bytes: Callable) -> None:
    # Prepare: np.savez pickles object arrays; loading them could run code
    url = write_bytes(
        f"{memdir}/d.npz",
        npz_bytes(x=np.zeros((2, 1)), y=np.array([{"a": 1}, None], dtype=object)),
    )

    # Execute / Assert
    with pytest.raises(SchemaMismatch, match="Python objects"):
        NpzReader().inspect(url)
