"""The dataset-reader contract, its registry, and the helpers every reader shares.

A reader turns a *source* (an fsspec URL such as ``file:///data/x.csv``,
``memory://t/x.parquet`` or a plain local path; a name for built-in and
synthetic data) into two things:

* ``inspect(source) -> DatasetInfo``: validates the whole source once, at
  registration, and says how many rows, which features, which label;
* ``read_shard(source, shard_index, num_shards) -> (X, y)``: the rows of one
  shard, a deterministic contiguous range, so any worker can (re)load the
  shard it was given and get the same bytes (which makes shards
  content-addressable, architecture decision 5; see :func:`array_digest`).

Readers are registered by format name; :func:`make_reader` builds one from
the ``format`` and options a dataset record stores.
"""

from __future__ import annotations

import hashlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import IO, Any, ClassVar, TypeVar

import fsspec
import numpy as np

from stratalab.kernels.data.errors import (
    BadReaderOptions,
    BadShard,
    MalformedRecord,
    SchemaMismatch,
    SourceUnreadable,
    UnknownFormat,
)
from stratalab.kernels.registry import construct

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    """What ``inspect`` learned about a source; stored with the dataset record."""

    #: Reader format name (``csv``, ``parquet``, ...).
    format: str
    #: Number of samples.
    num_rows: int
    #: Every column (or array / member extension) the source holds.
    columns: tuple[str, ...]
    #: The columns used as features, in order.
    features: tuple[str, ...]
    #: Shape of one sample's features (``(n_features,)`` for tabular data).
    feature_shape: tuple[int, ...]
    #: numpy dtype name of the features as stored.
    feature_dtype: str
    #: Name of the label column (or array / member extension).
    label_column: str
    #: numpy dtype name of the labels as stored.
    label_dtype: str
    #: Number of classes (``max + 1`` for integer labels); ``None`` for non-integer numbers.
    num_classes: int | None
    #: Original label values, in class-index order, when labels were strings.
    classes: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (tuples become lists)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data


#: A shard: features and labels.
Arrays = tuple[np.ndarray, np.ndarray]

R = TypeVar("R", bound="type[DatasetReader]")

#: Reader classes by format name, filled by :func:`register_reader`.
READERS: dict[str, type[DatasetReader]] = {}


def register_reader(cls: R) -> R:
    """Class decorator: make a reader available to :func:`make_reader` by its ``format``."""
    READERS[cls.format] = cls
    return cls


def make_reader(format: str, **options: Any) -> DatasetReader:
    """Create the reader for ``format`` with the dataset's reader options.

    Raises
    ------
    UnknownFormat
        If no reader has that name.
    BadReaderOptions
        If the reader does not accept one of the options.
    """
    return construct(
        READERS,
        format,
        options,
        what="dataset format",
        field="format",
        unknown_error=UnknownFormat,
        options_error=BadReaderOptions,
    )


class DatasetReader(ABC):
    """Base class of the per-format readers.

    Subclasses implement :meth:`inspect` and :meth:`read_rows`; the base
    class turns a shard index into a row range and remembers what
    ``inspect`` found per source, so reading several shards with one reader
    validates the source once.
    """

    #: Format name the registry and the API use.
    format: ClassVar[str] = ""

    def __init__(self) -> None:
        #: ``inspect`` results by source, filled lazily by :meth:`read_shard`.
        self._infos: dict[str, DatasetInfo] = {}

    @abstractmethod
    def inspect(self, source: str) -> DatasetInfo:
        """Validate the whole source and describe it.

        Raises
        ------
        DatasetInvalid
            (a subclass of ``ValidationFailed``) naming what is wrong and where.
        """

    @abstractmethod
    def read_rows(self, source: str, start: int, stop: int, info: DatasetInfo) -> Arrays:
        """Read rows ``[start, stop)`` as float32 features and labels."""

    def read_shard(
        self,
        source: str,
        shard_index: int,
        num_shards: int,
        *,
        info: DatasetInfo | None = None,
    ) -> Arrays:
        """Read one shard: a deterministic, contiguous range of rows.

        Parameters
        ----------
        source
            The same source given to :meth:`inspect`.
        shard_index
            Which shard, ``0 <= shard_index < num_shards``.
        num_shards
            How many shards the dataset is cut into; at most ``num_rows``.
        info
            The source's :class:`DatasetInfo` if the caller already has it
            (the coordinator stores it at registration); saves a full pass.

        Returns
        -------
        tuple of numpy.ndarray
            ``X`` (float32, ``(rows, *feature_shape)``) and ``y`` (int64
            class indices, or float32 for non-integer labels).
        """
        if info is None:
            info = self._infos.get(source)
            if info is None:
                info = self.inspect(source)
                self._infos[source] = info
        start, stop = shard_range(info.num_rows, shard_index, num_shards)
        return self.read_rows(source, start, stop, info)


def shard_range(num_rows: int, shard_index: int, num_shards: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a shard: contiguous, near-equal, covering every row once.

    Shard ``i`` gets ``[i*n // k, (i+1)*n // k)``, so sizes differ by at most one
    row and the cut depends only on ``(n, k)``.

    Raises
    ------
    BadShard
        If ``num_shards < 1``, more shards than rows, or the index is out of range.
    """
    if num_shards < 1 or num_shards > num_rows:
        raise BadShard(
            f"cannot cut {num_rows} rows into {num_shards} shards",
            details={"num_rows": num_rows, "num_shards": num_shards},
        )
    if not 0 <= shard_index < num_shards:
        raise BadShard(
            f"shard index {shard_index} is out of range for {num_shards} shards",
            details={"shard_index": shard_index, "num_shards": num_shards},
        )
    return shard_index * num_rows // num_shards, (shard_index + 1) * num_rows // num_shards


def redact(source: str) -> str:
    """Drop ``user:password@`` from a URL before it goes into a message or a log."""
    return re.sub(r"(^[a-zA-Z][\w+.-]*://)[^/@]*@", r"\1", source)


@contextmanager
def open_source(source: str) -> Iterator[IO[bytes]]:
    """Open an fsspec URL or local path for binary reading, with clear errors.

    Raises
    ------
    SourceUnreadable
        If the path does not exist, is a directory, is not allowed, uses an
        unknown protocol, or cannot be opened for another I/O reason.
    """
    shown = redact(source)
    try:
        handle = fsspec.open(source, "rb").open()
    except FileNotFoundError:
        raise SourceUnreadable(
            f"dataset source {shown!r} does not exist", details={"source": shown}
        ) from None
    except IsADirectoryError:
        raise SourceUnreadable(
            f"dataset source {shown!r} is a directory, not a file", details={"source": shown}
        ) from None
    except PermissionError:
        raise SourceUnreadable(
            f"no permission to read dataset source {shown!r}", details={"source": shown}
        ) from None
    except (ValueError, ImportError) as exc:
        logger.debug("cannot open %s: %r", shown, exc)
        raise SourceUnreadable(
            f"dataset source {shown!r} is not a supported URL", details={"source": shown}
        ) from None
    except OSError as exc:
        logger.info("cannot open %s: %r", shown, exc)
        raise SourceUnreadable(
            f"dataset source {shown!r} cannot be read", details={"source": shown}
        ) from None
    try:
        yield handle
    finally:
        handle.close()


def encode_labels(
    values: np.ndarray, classes: Sequence[str] | None, *, where: str
) -> tuple[np.ndarray, tuple[str, ...] | None, int | None]:
    """Turn raw label values into class indices the same way on every shard.

    Integer labels (or floats that are whole numbers) are used as they are;
    non-integer numbers stay float32 (regression, ``num_classes`` is None);
    anything else is a string label, mapped to its index in ``classes``
    (sorted unique values when ``classes`` is None, which is only consistent
    across shards when computed over the whole dataset).

    Returns
    -------
    tuple
        ``(y, classes or None, num_classes or None)``.

    Raises
    ------
    MalformedRecord
        If a label is negative, or not among the given ``classes``.
    """
    raw = np.asarray(values)
    if classes is None and raw.dtype.kind in "biuf":
        if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
            raise MalformedRecord(f"{where}: a label is missing or not finite")
        if raw.dtype.kind in "biu" or np.all(np.mod(raw, 1) == 0):
            labels = raw.astype(np.int64)
            if labels.size and labels.min() < 0:
                raise MalformedRecord(
                    f"{where}: class labels must be >= 0, found {int(labels.min())}"
                )
            return labels, None, (int(labels.max()) + 1 if labels.size else 0)
        return raw.astype(np.float32), None, None
    text = raw.astype(str)
    known = tuple(classes) if classes is not None else tuple(sorted(set(text.tolist())))
    lookup = {name: index for index, name in enumerate(known)}
    try:
        labels = np.fromiter((lookup[v] for v in text), dtype=np.int64, count=len(text))
    except KeyError as exc:
        raise MalformedRecord(
            f"{where}: label {exc.args[0]!r} is not one of the dataset's classes",
            details={"label": exc.args[0]},
        ) from None
    return labels, known, len(known)


def as_features(values: np.ndarray, *, where: str) -> np.ndarray:
    """Cast numeric features to float32, rejecting non-numeric dtypes."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise SchemaMismatch(
            f"{where}: features must be numeric, found dtype {array.dtype}",
            details={"dtype": str(array.dtype)},
        )
    return array.astype(np.float32, copy=False)


def array_digest(*arrays: np.ndarray) -> str:
    """``sha256:`` digest of arrays' dtypes, shapes and bytes.

    Shards are deterministic, so this digest identifies a shard's content:
    the coordinator can record it and a worker can verify what it loaded.
    """
    digest = hashlib.sha256()
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype.str}{contiguous.shape};".encode())
        digest.update(contiguous.tobytes())
    return "sha256:" + digest.hexdigest()
