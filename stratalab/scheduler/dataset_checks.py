"""What registering a dataset checks, before anything is stored.

The request's reader options are type-checked against the reader's own
signature, the whole source is read once by the format's reader, and the
row count is split into a validation tail and training shards. Everything
here is blocking (it reads the data) and knows nothing about the store or
the cluster, so the service runs it in a thread and tests can call it
directly.
"""

from __future__ import annotations

import inspect
import logging
import math
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from stratalab.errors import ValidationFailed
from stratalab.kernels.data import (
    READERS,
    BadReaderOptions,
    DatasetInfo,
    DatasetInvalid,
    FormatMismatch,
    make_reader,
)
from stratalab.kernels.data.base import redact
from stratalab.scheduler.artifacts import PendingArtifact
from stratalab.scheduler.dataset_schemas import DatasetCreate

logger = logging.getLogger(__name__)

#: Default shards per live worker, so work can move in small pieces.
SHARDS_PER_WORKER = 4


@dataclass(frozen=True)
class Checked:
    """What the checks of a registration request found."""

    info: DatasetInfo
    num_shards: int
    validation_rows: int

    @property
    def train_rows(self) -> int:
        """Rows cut into shards."""
        return self.info.num_rows - self.validation_rows


def resolve_source(
    req: DatasetCreate, upload: PendingArtifact | None, filename: str | None
) -> tuple[str, str]:
    """The source the reader gets, and the name messages use for it.

    An upload is read from its temp file, but messages name the client's
    file name, never the server's path.

    Raises
    ------
    ValidationFailed
        If both or neither of a source and a file are given, or a file is
        given for a format that takes none.
    """
    if upload is not None:
        if req.source is not None:
            raise ValidationFailed(
                "give either 'source' or an uploaded file, not both",
                details={"field": "source"},
            )
        if req.format in ("builtin", "stream"):
            raise ValidationFailed(
                f"format {req.format!r} takes no file; it is defined by source and options",
                details={"field": "format"},
            )
        upload.finish()
        return str(upload.path), filename or "the uploaded file"
    if req.source is not None:
        return req.source, redact(req.source)
    if req.format == "stream":
        return f"stream://{req.name or 'synthetic'}", "stream"
    raise ValidationFailed(
        "give 'source' (a URL, a path or a built-in name) or upload a file "
        "in the form field 'file'",
        details={"field": "source"},
    )


def check_dataset(req: DatasetCreate, source: str, shown: str, *, workers: int) -> Checked:
    """Build the reader, read the whole source, and work out the split (blocking).

    Parameters
    ----------
    req
        The request (format, options, shards, validation fraction).
    source
        What the reader reads (from :func:`resolve_source`).
    shown
        How messages name the source.
    workers
        Live workers, for the default number of shards.

    Raises
    ------
    ValidationFailed
        (422; :class:`~stratalab.kernels.data.DatasetInvalid` for the data)
        naming the option, the line, the column or the array at fault.
    """
    check_reader_options(req.format, req.options)
    reader = make_reader(req.format, **req.options)
    try:
        info = reader.inspect(source)
    except DatasetInvalid as exc:
        if shown != source:  # an upload: never show the server's temp path
            exc.message = exc.message.replace(source, shown)
            if exc.details and "source" in exc.details:
                exc.details["source"] = shown
            exc.args = (exc.message,)
        raise
    except (OSError, ValueError) as exc:
        # Parsers of untrusted bytes (pyarrow, numpy, tarfile) raise these
        # for damaged data the readers' own checks did not catch.
        logger.warning("reading %s as %s failed: %r", redact(source), req.format, exc)
        raise FormatMismatch(
            f"{shown} cannot be read as {req.format} data",
            details={"format": req.format},
        ) from None
    validation_rows = math.floor(info.num_rows * req.validation_fraction)
    train = info.num_rows - validation_rows
    if train < 1:
        raise ValidationFailed(
            f"{info.num_rows} rows leave no training rows after a validation fraction "
            f"of {req.validation_fraction}",
            details={"num_rows": info.num_rows, "validation_rows": validation_rows},
        )
    if req.num_shards is None:
        num_shards = min(train, SHARDS_PER_WORKER * max(1, workers))
    elif req.num_shards > train:
        raise ValidationFailed(
            f"cannot cut {train} training rows into {req.num_shards} shards",
            details={"train_rows": train, "num_shards": req.num_shards},
        )
    else:
        num_shards = req.num_shards
    return Checked(info=info, num_shards=num_shards, validation_rows=validation_rows)


@cache
def _options_model(format: str) -> type[BaseModel] | None:
    """A strict pydantic model of a reader's keyword arguments, from its signature."""
    reader = READERS.get(format)
    if reader is None:
        return None
    hints = typing.get_type_hints(reader.__init__)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(reader.__init__).parameters.items():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    config = ConfigDict(extra="forbid", strict=True)
    return create_model(f"{reader.__name__}Options", __config__=config, **fields)


def check_reader_options(format: str, options: dict[str, Any]) -> None:
    """Refuse reader options of the wrong type before a reader trips over them.

    The reader's constructor says which options exist; its annotations say
    their types (``num_rows: int``, ``features: Sequence[str] | None``), so a
    ``"10"`` for ``num_rows`` or a string for ``features`` is a 422 naming the
    option, not an error deep inside the reader.

    Raises
    ------
    BadReaderOptions
        Naming each option that is unknown or of the wrong type.
    """
    model = _options_model(format)
    if model is None:
        return  # the reader registry answers unknown formats
    try:
        model.model_validate(options)
    except ValidationError as exc:
        allowed = ", ".join(sorted(model.model_fields))
        errors = [
            {
                "option": ".".join(str(p) for p in e["loc"]),
                "message": (
                    f"not an option of this format (allowed: {allowed})"
                    if e["type"] == "extra_forbidden"
                    else e["msg"]
                ),
            }
            for e in exc.errors(include_url=False, include_input=False)
        ]
        named = "; ".join(f"{e['option']}: {e['message']}" for e in errors)
        raise BadReaderOptions(
            f"invalid options for dataset format {format!r}: {named}",
            details={"format": format, "errors": errors},
        ) from None


def default_name(source: str, format: str) -> str:
    """``/data/train.csv`` -> ``train``; ``digits`` -> ``digits``."""
    base = source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    stem = base.split(".", 1)[0] if not base.startswith(".") else base
    return (stem or format)[:128]
