"""Tests of the reader registry, shard arithmetic and shared helpers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stratalab.errors import StrataLabError, ValidationFailed
from stratalab.kernels.data import (
    READERS,
    BadReaderOptions,
    BadShard,
    CsvReader,
    DatasetInfo,
    SourceUnreadable,
    UnknownFormat,
    array_digest,
    make_reader,
    shard_range,
)
from stratalab.kernels.data.base import redact


def test_every_format_is_registered() -> None:
    # Assert
    assert sorted(READERS) == ["builtin", "csv", "npz", "parquet", "stream", "webdataset"]


def test_make_reader_passes_options() -> None:
    # Execute
    reader = make_reader("csv", label_column="target", delimiter=";")

    # Assert
    assert isinstance(reader, CsvReader)
    assert reader.label_column == "target" and reader.delimiter == ";"


def test_make_reader_rejects_unknown_format_and_options() -> None:
    # Execute / Assert
    with pytest.raises(UnknownFormat, match="tfrecord") as unknown:
        make_reader("tfrecord")
    with pytest.raises(BadReaderOptions, match="csv"):
        make_reader("csv", x_key="x")
    assert unknown.value.details is not None and "csv" in unknown.value.details["allowed"]


@pytest.mark.parametrize(("num_rows", "num_shards"), [(10, 1), (10, 3), (10, 10), (1797, 7)])
def test_shard_ranges_are_contiguous_balanced_and_cover_every_row(
    num_rows: int, num_shards: int
) -> None:
    # Execute
    ranges = [shard_range(num_rows, i, num_shards) for i in range(num_shards)]

    # Assert
    assert ranges[0][0] == 0 and ranges[-1][1] == num_rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    sizes = [stop - start for start, stop in ranges]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    ("num_rows", "index", "num_shards"), [(10, 0, 0), (10, 0, 11), (10, 3, 3), (10, -1, 2)]
)
def test_shard_range_rejects_impossible_shards(num_rows: int, index: int, num_shards: int) -> None:
    # Execute / Assert
    with pytest.raises(BadShard):
        shard_range(num_rows, index, num_shards)


def test_errors_are_validation_errors_with_the_api_code() -> None:
    # Execute
    with pytest.raises(StrataLabError) as caught:
        make_reader("csv").inspect("memory://does/not/exist.csv")

    # Assert: the web layer maps these to 422 VALIDATION_ERROR
    assert isinstance(caught.value, SourceUnreadable)
    assert isinstance(caught.value, ValidationFailed)
    assert caught.value.code == "VALIDATION_ERROR" and caught.value.status == 422


def test_redact_drops_credentials_from_urls() -> None:
    # Execute / Assert
    assert redact("s3://key:secret@bucket/x.csv") == "s3://bucket/x.csv"
    assert redact("/data/x@home.csv") == "/data/x@home.csv"


def test_array_digest_identifies_content() -> None:
    # Prepare
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.array([0, 1])

    # Execute
    digest = array_digest(x, y)

    # Assert: same bytes -> same digest; any change in values, shape or dtype -> another
    assert digest.startswith("sha256:") and digest == array_digest(x.copy(), y.copy())
    assert digest != array_digest(x.reshape(3, 2), y)
    assert digest != array_digest(x.astype(np.float64), y)
    assert digest != array_digest(x + 1, y)


def test_dataset_info_to_dict_is_json_ready() -> None:
    # Prepare
    info = DatasetInfo(
        format="csv",
        num_rows=2,
        columns=("a", "label"),
        features=("a",),
        feature_shape=(1,),
        feature_dtype="float64",
        label_column="label",
        label_dtype="float64",
        num_classes=2,
    )

    # Execute
    data = info.to_dict()

    # Assert
    assert data["columns"] == ["a", "label"] and data["feature_shape"] == [1]
    assert data["classes"] is None
