"""WebDataset shards: a tar of samples whose members share a key.

A sample is the run of consecutive members named ``<key>.<ext>`` (for
example ``0007.npy`` with the features and ``0007.cls`` with the integer
class, as WebDataset writes them). The key is the path up to the first dot
of the file name, the extension the rest. The tar is read as a stream
(``r|*``, gzip allowed), so a remote URL is never seeked and a shard read
stops as soon as its last sample is in.
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Generator
from contextlib import closing
from typing import IO

import numpy as np

from stratalab.kernels.data.base import (
    Arrays,
    DatasetInfo,
    DatasetReader,
    as_features,
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

#: One sample: its key and its members' bytes by extension.
Sample = tuple[str, dict[str, bytes]]


def split_name(name: str) -> tuple[str, str]:
    """Split a member path into WebDataset key and extension.

    ``a/0001.seg.png`` gives key ``a/0001`` and extension ``seg.png``.
    """
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def _open_tar(handle: IO[bytes], where: str) -> tarfile.TarFile:
    """Open a tar stream (plain or compressed), or say the source is not a tar."""
    try:
        return tarfile.open(fileobj=handle, mode="r|*")
    except tarfile.TarError:
        raise FormatMismatch(f"{where} is not a tar archive") from None


def iter_samples(source: str) -> Generator[Sample, None, None]:
    """Yield samples in tar order, grouping consecutive members by key.

    Raises
    ------
    FormatMismatch
        If the source is not a (possibly gzip-compressed) tar archive.
    MalformedRecord
        If a key's members are not consecutive (the sample is split).
    """
    where = redact(source)
    seen: set[str] = set()
    with open_source(source) as handle, _open_tar(handle, where) as archive:
        current: str | None = None
        members: dict[str, bytes] = {}
        try:
            for info in archive:
                if not info.isfile():
                    continue
                key, ext = split_name(info.name)
                if key != current:
                    if current is not None:
                        yield current, members
                    if key in seen:
                        raise MalformedRecord(
                            f"{where}: the members of sample {key!r} are not consecutive "
                            f"(member {info.name!r})",
                            details={"sample": key, "member": info.name},
                        )
                    seen.add(key)
                    current, members = key, {}
                extracted = archive.extractfile(info)
                members[ext] = extracted.read() if extracted is not None else b""
        except tarfile.TarError:
            raise FormatMismatch(f"{where} is a damaged tar archive") from None
        if current is not None:
            yield current, members


@register_reader
class WebDatasetReader(DatasetReader):
    """A WebDataset tar with one feature member and one label member per sample.

    Parameters
    ----------
    feature_ext
        Extension of the feature member; ``npy`` (a numpy array per sample).
    label_ext
        Extension of the label member; ``cls`` (an integer as text).
    """

    format = "webdataset"

    def __init__(self, *, feature_ext: str = "npy", label_ext: str = "cls") -> None:
        super().__init__()
        if feature_ext != "npy":
            raise SchemaMismatch(
                "only 'npy' feature members are supported",
                details={"feature_ext": feature_ext},
            )
        self.feature_ext = feature_ext
        self.label_ext = label_ext

    def _decode(self, key: str, members: dict[str, bytes], where: str) -> tuple[np.ndarray, int]:
        """Features and label of one sample; name the sample if a member is bad."""
        for ext, error in (
            (self.feature_ext, MalformedRecord),
            (self.label_ext, LabelColumnMissing),
        ):
            if ext not in members:
                raise error(
                    f"{where}: sample {key!r} has no '.{ext}' member "
                    f"(it has: {', '.join(sorted(members)) or 'nothing'})",
                    details={"sample": key, "missing": ext},
                )
        member = f"{key}.{self.feature_ext}"
        try:
            features = np.load(io.BytesIO(members[self.feature_ext]), allow_pickle=False)
        except (ValueError, OSError, EOFError):
            raise MalformedRecord(
                f"{where}: member {member!r} is not a numeric .npy array",
                details={"member": member},
            ) from None
        text = members[self.label_ext].decode("utf-8", errors="replace").strip()
        try:
            label = int(text)
        except ValueError:
            raise MalformedRecord(
                f"{where}: label member '{key}.{self.label_ext}' holds {text[:40]!r}, "
                "not an integer class",
                details={"member": f"{key}.{self.label_ext}"},
            ) from None
        if label < 0:
            raise MalformedRecord(
                f"{where}: label of sample {key!r} is negative ({label})",
                details={"sample": key},
            )
        as_features(features, where=f"{where}: member {member!r}")  # numeric check
        return features, label

    def _check_shape(
        self, key: str, shape: tuple[int, ...], expected: tuple[int, ...], where: str
    ) -> None:
        """Every sample's features must have the first sample's shape."""
        if shape != expected:
            raise SchemaMismatch(
                f"{where}: sample {key!r} has features of shape {shape}, "
                f"the first sample has {expected}",
                details={"sample": key, "shape": list(shape), "expected": list(expected)},
            )

    def inspect(self, source: str) -> DatasetInfo:
        """Read every sample: members present, arrays numeric and equal in shape, labels ints."""
        where = redact(source)
        count = 0
        max_label = -1
        shape: tuple[int, ...] | None = None
        dtype = ""
        extensions: set[str] = set()
        for key, members in iter_samples(source):
            features, label = self._decode(key, members, where)
            if shape is None:
                shape, dtype = (
                    tuple(features.shape),
                    str(np.load(io.BytesIO(members[self.feature_ext])).dtype),
                )
            self._check_shape(key, tuple(features.shape), shape, where)
            extensions.update(members)
            max_label = max(max_label, label)
            count += 1
        if count == 0 or shape is None:
            raise MalformedRecord(f"{where} holds no samples")
        return DatasetInfo(
            format=self.format,
            num_rows=count,
            columns=tuple(sorted(extensions)),
            features=(self.feature_ext,),
            feature_shape=shape,
            feature_dtype=dtype,
            label_column=self.label_ext,
            label_dtype="int64",
            num_classes=max_label + 1,
        )

    def read_rows(self, source: str, start: int, stop: int, info: DatasetInfo) -> Arrays:
        """Stream the tar up to the shard's last sample, decoding only the shard's samples."""
        where = redact(source)
        features: list[np.ndarray] = []
        labels: list[int] = []
        with closing(iter_samples(source)) as samples:
            for index, (key, members) in enumerate(samples):
                if index >= stop:
                    break
                if index < start:
                    continue
                x, label = self._decode(key, members, where)
                self._check_shape(key, tuple(x.shape), tuple(info.feature_shape), where)
                features.append(x)
                labels.append(label)
        return np.stack(features).astype(np.float32), np.asarray(labels, dtype=np.int64)
