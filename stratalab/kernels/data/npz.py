"""NPZ datasets: a numpy ``.npz`` archive holding a feature array and a label array.

``inspect`` reads only the feature array's header (shape and dtype) and the
label array, so a large feature array is not decompressed to validate it.
Pickled (object) arrays are refused: a dataset file must not be able to run
code on a worker.
"""

from __future__ import annotations

import logging
import zipfile
from typing import IO

import numpy as np

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
from stratalab.kernels.data.errors import ArrayMissing, FormatMismatch, SchemaMismatch

logger = logging.getLogger(__name__)

#: Local-file-header and empty-archive signatures of a zip file.
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _archive(handle: IO[bytes], where: str) -> zipfile.ZipFile:
    """Open the archive, rejecting anything that is not a zip file."""
    head = handle.read(4)
    handle.seek(0)
    if head not in ZIP_MAGICS:
        raise FormatMismatch(f"{where} is not an NPZ archive (not a zip file)")
    try:
        return zipfile.ZipFile(handle)
    except zipfile.BadZipFile:
        raise FormatMismatch(f"{where} is a damaged NPZ archive") from None


def _member(archive: zipfile.ZipFile, key: str, option: str, where: str) -> str:
    """Name of the ``.npy`` member for array ``key``; list the arrays if it is absent."""
    names = archive.namelist()
    member = f"{key}.npy"
    if member not in names:
        available = sorted(n[: -len(".npy")] for n in names if n.endswith(".npy"))
        raise ArrayMissing(
            f"{where} has no array {key!r} (option {option}); it holds: "
            + (", ".join(available) or "nothing"),
            details={option: key, "arrays": available},
        )
    return member


def _header(archive: zipfile.ZipFile, member: str, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a member from its ``.npy`` header, without reading the data."""
    with archive.open(member) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        except ValueError:
            raise FormatMismatch(f"{where}: member {member!r} is not a .npy array") from None
    return tuple(shape), np.dtype(dtype)


def _load(archive: zipfile.ZipFile, member: str, where: str) -> np.ndarray:
    """Load one array with pickles disallowed."""
    with archive.open(member) as stream:
        try:
            return np.asarray(np.lib.format.read_array(stream, allow_pickle=False))
        except ValueError:
            raise SchemaMismatch(
                f"{where}: array {member!r} holds Python objects, which are not allowed",
                details={"member": member},
            ) from None


@register_reader
class NpzReader(DatasetReader):
    """A ``.npz`` archive with one array of samples and one of labels.

    Parameters
    ----------
    x_key
        Name of the feature array (first axis = samples).
    y_key
        Name of the 1-d label array.
    """

    format = "npz"

    def __init__(self, *, x_key: str = "x", y_key: str = "y") -> None:
        super().__init__()
        self.x_key = x_key
        self.y_key = y_key

    def inspect(self, source: str) -> DatasetInfo:
        """Check both arrays exist, agree in length and are numeric; read the labels."""
        where = redact(source)
        with open_source(source) as handle, _archive(handle, where) as archive:
            x_member = _member(archive, self.x_key, "x_key", where)
            y_member = _member(archive, self.y_key, "y_key", where)
            x_shape, x_dtype = _header(archive, x_member, where)
            labels = _load(archive, y_member, where)
            columns = tuple(
                sorted(n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy"))
            )
        if x_dtype.kind not in "biuf" or len(x_shape) < 1:
            raise SchemaMismatch(
                f"{where}: array {self.x_key!r} must be numeric with a sample axis, "
                f"found dtype {x_dtype} and shape {x_shape}",
                details={"dtype": str(x_dtype), "shape": list(x_shape)},
            )
        if labels.ndim != 1 or len(labels) != x_shape[0]:
            raise SchemaMismatch(
                f"{where}: {self.y_key!r} must be 1-d with one label per row of "
                f"{self.x_key!r} ({x_shape[0]} rows), found shape {labels.shape}",
                details={"x_shape": list(x_shape), "y_shape": list(labels.shape)},
            )
        if x_shape[0] == 0:
            raise SchemaMismatch(f"{where}: the arrays have no rows")
        _, classes, num_classes = encode_labels(labels, None, where=where)
        feature_shape = x_shape[1:] or (1,)
        return DatasetInfo(
            format=self.format,
            num_rows=x_shape[0],
            columns=columns,
            features=(self.x_key,),
            feature_shape=tuple(int(d) for d in feature_shape),
            feature_dtype=str(x_dtype),
            label_column=self.y_key,
            label_dtype=str(labels.dtype),
            num_classes=num_classes,
            classes=classes,
        )

    def read_rows(self, source: str, start: int, stop: int, info: DatasetInfo) -> Arrays:
        """Load both arrays and slice the shard's rows (NPZ members cannot be seeked into)."""
        where = redact(source)
        with open_source(source) as handle, _archive(handle, where) as archive:
            features = _load(archive, _member(archive, self.x_key, "x_key", where), where)
            labels = _load(archive, _member(archive, self.y_key, "y_key", where), where)
        x = as_features(features[start:stop], where=where)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        y, _, _ = encode_labels(labels, info.classes, where=where)
        return x, y[start:stop]
