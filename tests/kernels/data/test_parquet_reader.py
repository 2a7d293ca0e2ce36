"""Tests of the Parquet reader (needs pyarrow)."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest

from stratalab.kernels.data import (
    FormatMismatch,
    LabelColumnMissing,
    ParquetReader,
    SchemaMismatch,
)

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def parquet_bytes(table: object, *, row_group_size: int | None = None) -> bytes:
    """A table serialised as Parquet."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group_size)
    return buffer.getvalue()


def numeric_table(rows: int = 10) -> object:
    return pa.table(
        {
            "f1": np.arange(rows, dtype=np.float64),
            "f2": np.arange(rows, dtype=np.int32) * 10,
            "label": np.arange(rows, dtype=np.int64) % 4,
        }
    )


def test_inspect_reads_the_footer_and_labels(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/good.parquet", parquet_bytes(numeric_table()))

    # Execute
    info = ParquetReader().inspect(url)

    # Assert
    assert info.num_rows == 10 and info.features == ("f1", "f2")
    assert info.feature_shape == (2,) and info.num_classes == 4


def test_shards_across_row_groups(memdir: str, write_bytes: Callable) -> None:
    # Prepare: row groups of 3 rows, so shards cut through them
    url = write_bytes(
        f"{memdir}/groups.parquet", parquet_bytes(numeric_table(10), row_group_size=3)
    )
    reader = ParquetReader()

    # Execute
    shards = [reader.read_shard(url, i, 4) for i in range(4)]

    # Assert: [0,2) [2,5) [5,7) [7,10) in order
    np.testing.assert_array_equal(shards[1][0][:, 0], [2, 3, 4])
    np.testing.assert_array_equal(np.concatenate([x for x, _ in shards])[:, 1], np.arange(10) * 10)
    np.testing.assert_array_equal(np.concatenate([y for _, y in shards]), np.arange(10) % 4)


def test_list_column_features_and_string_labels(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    table = pa.table(
        {
            "embedding": [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]],
            "species": ["setosa", "virginica", "setosa"],
        }
    )
    url = write_bytes(f"{memdir}/emb.parquet", parquet_bytes(table))
    reader = ParquetReader(label_column="species")

    # Execute
    info = reader.inspect(url)
    x, y = reader.read_shard(url, 1, 2, info=info)

    # Assert
    assert info.feature_shape == (2,) and info.classes == ("setosa", "virginica")
    np.testing.assert_array_equal(x, [[2.0, 3.0], [4.0, 5.0]])
    np.testing.assert_array_equal(y, [1, 0])


def test_a_csv_called_parquet_is_rejected(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/fake.parquet", b"a,label\n1,0\n")

    # Execute / Assert
    with pytest.raises(FormatMismatch, match="is not a Parquet file"):
        ParquetReader().inspect(url)


def test_a_damaged_parquet_file_is_rejected(memdir: str, write_bytes: Callable) -> None:
    # Prepare: keep the PAR1 markers and the footer length, lose everything between
    data = parquet_bytes(numeric_table())
    url = write_bytes(f"{memdir}/damaged.parquet", data[:4] + b"\x00" * 20 + data[-8:])

    # Execute / Assert
    with pytest.raises(FormatMismatch, match="damaged Parquet"):
        ParquetReader().inspect(url)


def test_missing_label_column(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/good.parquet", parquet_bytes(numeric_table()))

    # Execute / Assert
    with pytest.raises(LabelColumnMissing, match="'target' not found"):
        ParquetReader(label_column="target").inspect(url)


def test_non_numeric_feature_column_is_named(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    table = pa.table({"name": ["a", "b"], "label": [0, 1]})
    url = write_bytes(f"{memdir}/text.parquet", parquet_bytes(table))

    # Execute / Assert
    with pytest.raises(SchemaMismatch, match="feature column 'name' has type string"):
        ParquetReader().inspect(url)
