"""Small datasets that ship inside installed packages: nothing is downloaded.

``digits`` (1,797 8x8 greyscale images of handwritten digits, values 0-16)
and ``iris`` (150 flowers, 4 measurements, 3 species) come from
scikit-learn's bundled data files. They make the platform demonstrable and
testable on a machine with no network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from stratalab.errors import ServiceUnavailable
from stratalab.kernels.data.base import (
    Arrays,
    DatasetInfo,
    DatasetReader,
    register_reader,
)
from stratalab.kernels.data.errors import SourceUnreadable

logger = logging.getLogger(__name__)

#: Names a ``builtin`` source may use, with or without the ``builtin://`` prefix.
BUILTIN_NAMES = ("digits", "iris")

#: Features, labels, feature names and class names of a bundled dataset.
Loaded = tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]


@lru_cache(maxsize=len(BUILTIN_NAMES))
def _load(name: str) -> Loaded:
    """Features, labels, feature names and class names of a bundled dataset (memoised)."""
    try:
        from sklearn import datasets
    except ImportError:
        raise ServiceUnavailable("built-in datasets need scikit-learn on the workers") from None
    loaders: dict[str, Callable[..., Any]] = {
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
    }
    bunch = loaders[name]()
    data = np.asarray(bunch.data, dtype=np.float32)
    target = np.asarray(bunch.target, dtype=np.int64)
    features = tuple(str(f) for f in bunch.feature_names)
    classes = tuple(str(c) for c in bunch.target_names)
    data.setflags(write=False)
    target.setflags(write=False)
    return data, target, features, classes


def builtin_name(source: str) -> str:
    """The dataset name in a ``builtin`` source (``digits`` or ``builtin://digits``)."""
    name = source.removeprefix("builtin://").strip("/").lower()
    if name not in BUILTIN_NAMES:
        raise SourceUnreadable(
            f"unknown built-in dataset {source!r}",
            details={"source": source, "allowed": list(BUILTIN_NAMES)},
        )
    return name


@register_reader
class BuiltinReader(DatasetReader):
    """A dataset bundled with scikit-learn.

    Parameters
    ----------
    shuffle_seed
        When set, rows are put in a fixed pseudo-random order (by this seed)
        before sharding. ``iris`` is stored sorted by class, so contiguous
        shards of it are single-class without this.
    """

    format = "builtin"

    def __init__(self, *, shuffle_seed: int | None = None) -> None:
        super().__init__()
        self.shuffle_seed = shuffle_seed

    def _arrays(self, source: str) -> Loaded:
        """The dataset in the reader's row order."""
        data, target, features, classes = _load(builtin_name(source))
        if self.shuffle_seed is not None:
            order = np.random.default_rng(self.shuffle_seed).permutation(len(data))
            data, target = data[order], target[order]
        return data, target, features, classes

    def inspect(self, source: str) -> DatasetInfo:
        """Describe the bundled dataset."""
        data, target, features, classes = self._arrays(source)
        return DatasetInfo(
            format=self.format,
            num_rows=len(data),
            columns=(*features, "target"),
            features=features,
            feature_shape=tuple(data.shape[1:]),
            feature_dtype=str(data.dtype),
            label_column="target",
            label_dtype=str(target.dtype),
            num_classes=len(classes),
            classes=None,
        )

    def read_rows(self, source: str, start: int, stop: int, info: DatasetInfo) -> Arrays:
        """Slice the rows (copies, so callers may modify them)."""
        data, target, _, _ = self._arrays(source)
        return data[start:stop].copy(), target[start:stop].copy()
