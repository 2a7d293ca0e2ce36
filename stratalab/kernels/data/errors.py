"""Errors a dataset reader raises when a source cannot be used as asked.

All of them are :class:`stratalab.errors.ValidationFailed` (HTTP 422,
``VALIDATION_ERROR``): the user pointed at data that is missing, of the
wrong format, or malformed, and the message says what and where (the CSV
line, the tar member, the missing column) without leaking a traceback.
The subclasses let callers and tests tell the cases apart.
"""

from __future__ import annotations

from stratalab.errors import ValidationFailed


class DatasetInvalid(ValidationFailed):
    """Base class: a dataset source cannot be read as the given format."""


class UnknownFormat(DatasetInvalid):
    """No reader is registered for the requested format name."""


class SourceUnreadable(DatasetInvalid):
    """The fsspec URL does not exist, is not supported, or cannot be opened."""


class FormatMismatch(DatasetInvalid):
    """The bytes are not of the declared format (a "parquet" file that is not Parquet)."""


class MalformedRecord(DatasetInvalid):
    """A record is broken: a ragged CSV line, an unparsable label, an incomplete sample."""


class SchemaMismatch(DatasetInvalid):
    """Columns or arrays have the wrong type, shape or length."""


class LabelColumnMissing(DatasetInvalid):
    """The label column (or label member) named in the options is not in the data."""


class ArrayMissing(DatasetInvalid):
    """An NPZ archive lacks an array named by ``x_key`` or ``y_key``."""


class BadShard(DatasetInvalid):
    """The shard index or count is out of range for the dataset."""


class BadReaderOptions(DatasetInvalid):
    """The reader was created with options it does not accept."""
