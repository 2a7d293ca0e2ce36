"""Tests of the CSV reader, including every malformed-input case it must name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from stratalab.kernels.data import (
    CsvReader,
    DatasetInfo,
    FormatMismatch,
    LabelColumnMissing,
    MalformedRecord,
    SchemaMismatch,
    SourceUnreadable,
)

GOOD = "f1,f2,label\n" + "".join(f"{i},{i * 10},{i % 3}\n" for i in range(10))


def test_inspect_describes_a_good_file(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/good.csv", GOOD.encode())

    # Execute
    info = CsvReader().inspect(url)

    # Assert
    assert info.num_rows == 10
    assert info.columns == ("f1", "f2", "label") and info.features == ("f1", "f2")
    assert info.feature_shape == (2,) and info.label_column == "label"
    assert info.num_classes == 3 and info.classes is None


def test_shards_are_contiguous_deterministic_and_complete(
    memdir: str, write_bytes: Callable
) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/good.csv", GOOD.encode())
    reader = CsvReader()

    # Execute
    shards = [reader.read_shard(url, i, 3) for i in range(3)]
    again = CsvReader().read_shard(url, 1, 3)

    # Assert: rows 0-2, 3-5, 6-9 in file order; the same bytes on a second read
    np.testing.assert_array_equal(shards[0][0][:, 0], [0, 1, 2])
    np.testing.assert_array_equal(shards[2][0][:, 0], [6, 7, 8, 9])
    np.testing.assert_array_equal(np.concatenate([y for _, y in shards]), np.arange(10) % 3)
    assert shards[0][0].dtype == np.float32 and shards[0][1].dtype == np.int64
    np.testing.assert_array_equal(again[0], shards[1][0])


def test_local_paths_and_file_urls_work(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "good.csv"
    path.write_text(GOOD)

    # Execute
    by_path = CsvReader().inspect(str(path))
    by_url = CsvReader().read_shard(path.as_uri(), 0, 1)

    # Assert
    assert by_path.num_rows == 10
    assert by_url[0].shape == (10, 2)


def test_string_labels_map_to_the_same_classes_on_every_shard(
    memdir: str, write_bytes: Callable
) -> None:
    # Prepare: the second shard holds only "dog" rows
    url = write_bytes(f"{memdir}/pets.csv", b"w,species\n1,cat\n2,dog\n3,dog\n4,dog\n")
    reader = CsvReader(label_column="species")

    # Execute
    info = reader.inspect(url)
    _, second = reader.read_shard(url, 1, 2, info=info)
    _, fresh_reader = CsvReader(label_column="species").read_shard(url, 1, 2)

    # Assert
    assert info.classes == ("cat", "dog") and info.num_classes == 2
    np.testing.assert_array_equal(second, [1, 1])
    np.testing.assert_array_equal(fresh_reader, [1, 1])


def test_blank_lines_are_skipped(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/blank.csv", b"a,label\n1,0\n\n2,1\n")

    # Execute / Assert
    assert CsvReader().inspect(url).num_rows == 2


def test_ragged_row_is_named_by_line(memdir: str, write_bytes: Callable) -> None:
    # Prepare: line 4 has an extra field
    url = write_bytes(f"{memdir}/ragged.csv", b"a,b,label\n1,2,0\n3,4,1\n5,6,7,0\n")

    # Execute
    with pytest.raises(MalformedRecord, match="line 4") as caught:
        CsvReader().inspect(url)

    # Assert
    assert caught.value.details == {"line": 4, "expected": 3, "found": 4}


def test_short_row_is_named_by_line_even_when_reading_a_shard(
    memdir: str, write_bytes: Callable
) -> None:
    # Prepare: line 3 lacks a field; the caller passes a stored DatasetInfo, so
    # read_shard does not inspect the file first.
    url = write_bytes(f"{memdir}/short.csv", b"a,b,label\n1,2,0\n3,1\n5,6,0\n")
    info = DatasetInfo(
        format="csv",
        num_rows=3,
        columns=("a", "b", "label"),
        features=("a", "b"),
        feature_shape=(2,),
        feature_dtype="float64",
        label_column="label",
        label_dtype="float64",
        num_classes=1,
    )

    # Execute / Assert
    with pytest.raises(MalformedRecord, match=r"line 3: expected 3 fields .* found 2"):
        CsvReader().read_shard(url, 0, 1, info=info)


def test_non_numeric_feature_is_named_by_line_and_column(
    memdir: str, write_bytes: Callable
) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/text.csv", b"a,b,label\n1,2,0\n3,oops,1\n")

    # Execute / Assert
    with pytest.raises(SchemaMismatch, match=r"line 3, column 'b': 'oops' is not a number"):
        CsvReader().inspect(url)


def test_empty_label_is_rejected(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/nolabel.csv", b"a,label\n1,0\n2,\n")

    # Execute / Assert
    with pytest.raises(MalformedRecord, match="line 3: the label column 'label' is empty"):
        CsvReader().inspect(url)


def test_missing_label_column_lists_the_columns(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/good.csv", GOOD.encode())

    # Execute / Assert
    with pytest.raises(LabelColumnMissing, match="'target' not found; columns are: f1, f2, label"):
        CsvReader(label_column="target").inspect(url)


def test_missing_feature_column_is_named(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/good.csv", GOOD.encode())

    # Execute / Assert
    with pytest.raises(SchemaMismatch, match="feature columns not found: f3"):
        CsvReader(features=["f1", "f3"]).inspect(url)


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"", MalformedRecord, "empty"),
        (b"a,label\n", MalformedRecord, "no data rows"),
        (b"a,a,label\n1,2,0\n", SchemaMismatch, "repeat: a"),
        (b"a,label\n1,0\n\xff\xfe,1\n", FormatMismatch, "utf-8"),
        (b'a,label\n1,0\n"2"x,1\n', MalformedRecord, "line 3: malformed CSV"),
    ],
)
def test_broken_files_are_rejected(
    memdir: str, write_bytes: Callable, content: bytes, error: type, message: str
) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/broken.csv", content)

    # Execute / Assert
    with pytest.raises(error, match=message):
        CsvReader().inspect(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://no/such/file.csv", "does not exist"),
        ("nosuchproto://bucket/file.csv", "not a supported URL"),
    ],
)
def test_unreadable_urls(url: str, message: str) -> None:
    # Execute / Assert
    with pytest.raises(SourceUnreadable, match=message):
        CsvReader().inspect(url)


def test_a_directory_is_not_a_dataset_file(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(SourceUnreadable):
        CsvReader().inspect(str(tmp_path))
