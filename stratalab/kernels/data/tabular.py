"""CSV datasets, and the column selection CSV and Parquet share.

The CSV reader parses with the standard ``csv`` module (so a broken row is
reported by its line number) and converts whole chunks of rows to numbers
with numpy (so a large file is not parsed one float at a time). A header row
is required; the label is a named column, features are all other columns
unless listed.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator, Sequence
from typing import IO

import numpy as np

from stratalab.kernels.data.base import (
    Arrays,
    DatasetInfo,
    DatasetReader,
    encode_labels,
    open_source,
    redact,
    register_reader,
)
from stratalab.kernels.data.errors import (
    FormatMismatch,
    LabelColumnMissing,
    MalformedRecord,
    SchemaMismatch,
)

logger = logging.getLogger(__name__)

#: Rows converted to numbers at once.
CHUNK_ROWS = 8192


def select_columns(
    columns: Sequence[str], label_column: str, features: Sequence[str] | None, *, where: str
) -> tuple[str, ...]:
    """Check the label column exists and return the feature columns, in order.

    Raises
    ------
    LabelColumnMissing
        If ``label_column`` is not among ``columns``.
    SchemaMismatch
        If a listed feature is missing, columns repeat, or nothing is left
        to use as a feature.
    """
    if len(set(columns)) != len(columns):
        repeated = sorted({c for c in columns if list(columns).count(c) > 1})
        raise SchemaMismatch(
            f"{where}: column names repeat: {', '.join(repeated)}",
            details={"repeated": repeated},
        )
    if label_column not in columns:
        raise LabelColumnMissing(
            f"{where}: label column {label_column!r} not found; columns are: " + ", ".join(columns),
            details={"label_column": label_column, "columns": list(columns)},
        )
    if features is None:
        chosen = tuple(c for c in columns if c != label_column)
    else:
        missing = [c for c in features if c not in columns]
        if missing:
            raise SchemaMismatch(
                f"{where}: feature columns not found: {', '.join(missing)}",
                details={"missing": missing},
            )
        chosen = tuple(features)
    if not chosen:
        raise SchemaMismatch(f"{where}: no feature columns besides the label")
    return chosen


@register_reader
class CsvReader(DatasetReader):
    """Comma-separated text with a header row.

    Parameters
    ----------
    label_column
        Column holding the class label.
    features
        Feature columns, in order; default every column except the label.
    classes
        Label values in class-index order, for string labels (``inspect``
        returns them in ``DatasetInfo.classes``). Without it, a shard whose
        labels are not integers costs one extra pass to find every class.
    delimiter
        Field separator.
    encoding
        Text encoding of the file.
    """

    format = "csv"

    def __init__(
        self,
        *,
        label_column: str = "label",
        features: Sequence[str] | None = None,
        classes: Sequence[str] | None = None,
        delimiter: str = ",",
        encoding: str = "utf-8",
    ) -> None:
        super().__init__()
        self.label_column = label_column
        self.features = list(features) if features is not None else None
        self.classes = tuple(classes) if classes is not None else None
        self.delimiter = delimiter
        self.encoding = encoding

    def _records(
        self, handle: IO[bytes], where: str
    ) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
        """Header and an iterator of ``(line_number, fields)`` with ragged rows rejected."""
        text = io.TextIOWrapper(handle, encoding=self.encoding, newline="")
        reader = csv.reader(text, delimiter=self.delimiter, strict=True)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError):
            raise FormatMismatch(f"{where} is not readable as {self.encoding} CSV") from None
        if header is None:
            raise MalformedRecord(f"{where} is empty: a header row is required")
        width = len(header)

        def records() -> Iterator[tuple[int, list[str]]]:
            while True:
                try:
                    record = next(reader, None)
                except csv.Error:
                    raise MalformedRecord(
                        f"{where}, line {reader.line_num}: malformed CSV (bad quoting)",
                        details={"line": reader.line_num},
                    ) from None
                except UnicodeDecodeError:
                    raise FormatMismatch(
                        f"{where}, after line {reader.line_num}: not {self.encoding} text",
                        details={"line": reader.line_num},
                    ) from None
                if record is None:
                    return
                if not record:
                    continue  # blank line
                if len(record) != width:
                    raise MalformedRecord(
                        f"{where}, line {reader.line_num}: expected {width} fields "
                        f"as in the header, found {len(record)}",
                        details={"line": reader.line_num, "expected": width, "found": len(record)},
                    )
                yield reader.line_num, record

        return [name.strip() for name in header], records()

    def _convert(
        self,
        lines: list[int],
        rows: list[list[str]],
        header: Sequence[str],
        feature_idx: list[int],
        where: str,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Parse a chunk's feature fields as float64; name the first bad cell or label."""
        table = np.array(rows, dtype=str)
        label_idx = header.index(self.label_column)
        labels = np.char.strip(table[:, label_idx])
        empty = np.flatnonzero(labels == "")
        if empty.size:
            line = lines[int(empty[0])]
            raise MalformedRecord(
                f"{where}, line {line}: the label column {self.label_column!r} is empty",
                details={"line": line, "column": self.label_column},
            )
        try:
            return table[:, feature_idx].astype(np.float64), labels
        except ValueError:
            for line, row in zip(lines, rows, strict=True):
                for index in feature_idx:
                    try:
                        float(row[index])
                    except ValueError:
                        raise SchemaMismatch(
                            f"{where}, line {line}, column {header[index]!r}: "
                            f"{row[index]!r} is not a number",
                            details={"line": line, "column": header[index]},
                        ) from None
            raise

    def _scan(
        self, source: str, start: int, stop: int | None, *, keep_features: bool = True
    ) -> tuple[list[str], tuple[str, ...], list[np.ndarray], list[np.ndarray], int]:
        """Read rows ``[start, stop)``; validate every row read up to ``stop``.

        With ``keep_features=False`` features are parsed (validated) but not
        kept, so inspecting a large file needs memory for the labels only.
        """
        where = redact(source)
        features: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        with open_source(source) as handle:
            header, records = self._records(handle, where)
            chosen = select_columns(header, self.label_column, self.features, where=where)
            feature_idx = [header.index(c) for c in chosen]
            lines: list[int] = []
            rows: list[list[str]] = []
            count = 0
            for line, record in records:
                if stop is not None and count >= stop:
                    break
                if count >= start:
                    lines.append(line)
                    rows.append(record)
                    if len(rows) >= CHUNK_ROWS:
                        x, y = self._convert(lines, rows, header, feature_idx, where)
                        features.extend([x] if keep_features else [])
                        labels.append(y)
                        lines, rows = [], []
                count += 1
            if rows:
                x, y = self._convert(lines, rows, header, feature_idx, where)
                features.extend([x] if keep_features else [])
                labels.append(y)
        return header, chosen, features, labels, count

    def inspect(self, source: str) -> DatasetInfo:
        """Parse every row: field counts, numeric features, labels; count rows."""
        where = redact(source)
        header, chosen, _, labels, count = self._scan(source, 0, None, keep_features=False)
        if count == 0:
            raise MalformedRecord(f"{where} has a header but no data rows")
        raw = _label_values(labels, as_text=self.classes is not None)
        _, classes, num_classes = encode_labels(raw, self.classes, where=where)
        return DatasetInfo(
            format=self.format,
            num_rows=count,
            columns=tuple(header),
            features=chosen,
            feature_shape=(len(chosen),),
            feature_dtype="float64",
            label_column=self.label_column,
            label_dtype=str(raw.dtype),
            num_classes=num_classes,
            classes=classes,
        )

    def read_rows(self, source: str, start: int, stop: int, info: DatasetInfo) -> Arrays:
        """Parse only the shard's rows (the rows before it are split but not converted)."""
        where = redact(source)
        _, _, features, labels, _ = self._scan(source, start, stop)
        x = np.concatenate(features).astype(np.float32)
        classes = self.classes or info.classes
        raw = _label_values(labels, as_text=classes is not None)
        if classes is None and raw.dtype.kind not in "biuf":
            # String labels but no class list: only the whole file gives a
            # mapping every shard agrees on.
            classes = self.inspect(source).classes
        y, _, _ = encode_labels(raw if classes is None else raw.astype(str), classes, where=where)
        return x, y


def _label_values(chunks: list[np.ndarray], *, as_text: bool) -> np.ndarray:
    """Label strings as numbers when every one parses as a number, else as strings."""
    text = np.concatenate(chunks) if chunks else np.array([], dtype=str)
    if as_text:
        return text
    try:
        return text.astype(np.float64)
    except ValueError:
        return text
