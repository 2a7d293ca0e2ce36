"""Dataset readers that run on Dask workers: one class per format, one registry.

Formats: ``csv``, ``parquet``, ``npz``, ``webdataset``, ``builtin``
(scikit-learn's bundled ``digits`` and ``iris``) and ``stream`` (synthetic,
seeded). Create one with :func:`make_reader` from the dataset's format and
options, validate with ``inspect`` and load shards with ``read_shard``.
Importing this package registers every reader.
"""

from __future__ import annotations

from stratalab.kernels.data.base import (
    READERS,
    Arrays,
    DatasetInfo,
    DatasetReader,
    array_digest,
    make_reader,
    register_reader,
    shard_range,
)
from stratalab.kernels.data.builtin import BuiltinReader
from stratalab.kernels.data.errors import (
    ArrayMissing,
    BadReaderOptions,
    BadShard,
    DatasetInvalid,
    FormatMismatch,
    LabelColumnMissing,
    MalformedRecord,
    SchemaMismatch,
    SourceUnreadable,
    UnknownFormat,
)
from stratalab.kernels.data.npz import NpzReader
from stratalab.kernels.data.parquet import ParquetReader
from stratalab.kernels.data.synthetic import StreamReader
from stratalab.kernels.data.tabular import CsvReader
from stratalab.kernels.data.webdataset import WebDatasetReader

__all__ = [
    "READERS",
    "ArrayMissing",
    "Arrays",
    "BadReaderOptions",
    "BadShard",
    "BuiltinReader",
    "CsvReader",
    "DatasetInfo",
    "DatasetInvalid",
    "DatasetReader",
    "FormatMismatch",
    "LabelColumnMissing",
    "MalformedRecord",
    "NpzReader",
    "ParquetReader",
    "SchemaMismatch",
    "SourceUnreadable",
    "StreamReader",
    "UnknownFormat",
    "WebDatasetReader",
    "array_digest",
    "make_reader",
    "register_reader",
    "shard_range",
]
