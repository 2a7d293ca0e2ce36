"""Parquet datasets, read with pyarrow one row group at a time.

``inspect`` reads the footer (row count, schema) and the label column only;
``read_shard`` reads just the row groups that overlap the shard. Features
are numeric scalar columns, or a single list column holding each sample's
feature vector (the usual way to store embeddings or flattened images).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from stratalab.errors import ServiceUnavailable
from stratalab.kernels.data.base import (
    Arrays,
    DatasetInfo,
    DatasetReader,
    as_features,
    encode_labels,
    open_source,
    redact,
    register_reader,
)
from stratalab.kernels.data.errors import FormatMismatch, MalformedRecord, SchemaMismatch
from stratalab.kernels.data.tabular import select_columns

logger = logging.getLogger(__name__)

#: Every Parquet file starts and ends with these bytes.
MAGIC = b"PAR1"


def _pyarrow() -> tuple[Any, Any]:
    """Import pyarrow lazily so workers without Parquet data need not install it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ServiceUnavailable("reading Parquet needs pyarrow on the Dask workers") from None
    return pa, pq


def _check_magic(handle: IO[bytes], where: str) -> None:
    """Reject files that do not start and end with ``PAR1`` before pyarrow sees them."""
    head = handle.read(4)
    try:
        handle.seek(-4, 2)
        tail = handle.read(4)
    except OSError:
        tail = b""
    handle.seek(0)
    if head != MAGIC or tail != MAGIC:
        raise FormatMismatch(
            f"{where} is not a Parquet file (the PAR1 marker is missing)",
            details={"format": "parquet"},
        )


@register_reader
class ParquetReader(DatasetReader):
    """A single Parquet file.

    Parameters
    ----------
    label_column
        Column holding the class label.
    features
        Feature columns, in order; default every column except the label.
    classes
        Label values in class-index order, for string labels; by default
        they are read from the label column, which is cheap in Parquet.
    """

    format = "parquet"

    def __init__(
        self,
        *,
        label_column: str = "label",
        features: Sequence[str] | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.label_column = label_column
        self.features = list(features) if features is not None else None
        self.classes = tuple(classes) if classes is not None else None

    def _open(self, handle: IO[bytes], where: str) -> Any:
        """A ``ParquetFile`` for an open handle, with format errors made readable."""
        pa, pq = _pyarrow()
        _check_magic(handle, where)
        try:
            return pq.ParquetFile(handle)
        except (pa.ArrowException, OSError) as exc:
            logger.debug("bad parquet %s: %r", where, exc)
            raise FormatMismatch(f"{where} is a damaged Parquet file") from None

    def _feature_columns(self, schema: Any, where: str) -> tuple[tuple[str, ...], bool]:
        """The feature columns and whether they are one list column; check their types."""
        pa, _ = _pyarrow()
        chosen = select_columns(schema.names, self.label_column, self.features, where=where)
        kinds = []
        for name in chosen:
            field_type = schema.field(name).type
            if pa.types.is_list(field_type) or pa.types.is_fixed_size_list(field_type):
                field_type = field_type.value_type
                kinds.append("list")
            else:
                kinds.append("scalar")
            if not (
                pa.types.is_integer(field_type)
                or pa.types.is_floating(field_type)
                or pa.types.is_boolean(field_type)
            ):
                raise SchemaMismatch(
                    f"{where}: feature column {name!r} has type {schema.field(name).type}, "
                    "not a number",
                    details={"column": name, "type": str(schema.field(name).type)},
                )
        if "list" in kinds and len(chosen) > 1:
            raise SchemaMismatch(
                f"{where}: a list-valued feature column must be the only feature column",
                details={"features": list(chosen)},
            )
        return chosen, kinds == ["list"]

    def _to_arrays(
        self, table: Any, chosen: Sequence[str], is_list: bool, where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Convert a pyarrow table slice to a feature matrix and raw label values."""
        for name in (*chosen, self.label_column):
            if table.column(name).null_count:
                raise MalformedRecord(
                    f"{where}: column {name!r} has missing values", details={"column": name}
                )
        if is_list:
            column = table.column(chosen[0]).combine_chunks()
            lengths = np.asarray(column.value_lengths())
            if lengths.size and (lengths != lengths[0]).any():
                raise SchemaMismatch(
                    f"{where}: feature vectors in {chosen[0]!r} differ in length",
                    details={"column": chosen[0]},
                )
            width = int(lengths[0]) if lengths.size else 0
            values = np.asarray(column.flatten().to_numpy(zero_copy_only=False))
            x = values.reshape(len(column), width)
        else:
            x = np.column_stack(
                [table.column(name).to_numpy(zero_copy_only=False) for name in chosen]
            )
        raw = np.asarray(table.column(self.label_column).to_numpy(zero_copy_only=False))
        return as_features(x, where=where), raw

    def inspect(self, source: str) -> DatasetInfo:
        """Read the footer and the label column; check feature types and labels."""
        where = redact(source)
        with open_source(source) as handle:
            parquet = self._open(handle, where)
            schema = parquet.schema_arrow
            chosen, is_list = self._feature_columns(schema, where)
            num_rows = int(parquet.metadata.num_rows)
            if num_rows == 0:
                raise MalformedRecord(f"{where} has no rows")
            first = parquet.read_row_group(0, columns=[*chosen, self.label_column])
            sample, _ = self._to_arrays(first.slice(0, 1), chosen, is_list, where)
            labels = parquet.read(columns=[self.label_column])
        if labels.column(self.label_column).null_count:
            raise MalformedRecord(
                f"{where}: label column {self.label_column!r} has missing values",
                details={"column": self.label_column},
            )
        raw = np.asarray(labels.column(self.label_column).to_numpy(zero_copy_only=False))
        _, classes, num_classes = encode_labels(raw, self.classes, where=where)
        return DatasetInfo(
            format=self.format,
            num_rows=num_rows,
            columns=tuple(schema.names),
            features=chosen,
            feature_shape=tuple(sample.shape[1:]),
            feature_dtype=str(schema.field(chosen[0]).type),
            label_column=self.label_column,
            label_dtype=str(schema.field(self.label_column).type),
            num_classes=num_classes,
            classes=classes,
        )

    def read_rows(self, source: str, start: int, stop: int, info: DatasetInfo) -> Arrays:
        """Read only the row groups overlapping ``[start, stop)`` and slice them."""
        where = redact(source)
        with open_source(source) as handle:
            parquet = self._open(handle, where)
            chosen, is_list = self._feature_columns(parquet.schema_arrow, where)
            groups: list[int] = []
            first_row = None
            offset = 0
            for index in range(parquet.metadata.num_row_groups):
                size = parquet.metadata.row_group(index).num_rows
                if offset < stop and offset + size > start:
                    groups.append(index)
                    first_row = offset if first_row is None else first_row
                offset += size
            table = parquet.read_row_groups(groups, columns=[*chosen, self.label_column])
        table = table.slice(start - (first_row or 0), stop - start)
        x, raw = self._to_arrays(table, chosen, is_list, where)
        classes = self.classes or info.classes
        if classes is None and raw.dtype.kind not in "biuf":
            classes = self.inspect(source).classes  # string labels need the whole column
        if classes is not None:
            raw = raw.astype(str)
        y, _, _ = encode_labels(raw, classes, where=where)
        return x, y
