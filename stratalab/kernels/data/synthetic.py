"""Synthetic ``stream`` datasets: a classification problem generated from a seed.

The API's ``data_config.type = "stream"`` trains on generated data. Rows are
generated in fixed-size blocks, each from its own seed derived from the
dataset seed and the block number, so any shard is produced in time
proportional to its size and is identical wherever and whenever it is
generated: no file, no download, nothing to keep in sync.

Each class has a Gaussian centre (drawn once from the seed); a row is its
class centre plus unit Gaussian noise times ``noise``.
"""

from __future__ import annotations

import logging

import numpy as np

from stratalab.kernels.data.base import (
    Arrays,
    DatasetInfo,
    DatasetReader,
    register_reader,
)
from stratalab.kernels.data.errors import BadReaderOptions

logger = logging.getLogger(__name__)

#: Rows generated per block; part of the data's definition, so never change it.
BLOCK_ROWS = 4096


@register_reader
class StreamReader(DatasetReader):
    """A deterministic synthetic classification dataset.

    The ``source`` is only a label (``stream://my-problem``); the options
    define the data.

    Parameters
    ----------
    num_rows
        Number of samples.
    n_features
        Features per sample.
    n_classes
        Number of classes (labels ``0 .. n_classes - 1``, balanced in expectation).
    seed
        Defines the class centres and every row.
    class_sep
        Standard deviation of the class centres: larger is easier.
    noise
        Standard deviation of the per-row noise.
    """

    format = "stream"

    def __init__(
        self,
        *,
        num_rows: int = 10_000,
        n_features: int = 20,
        n_classes: int = 2,
        seed: int = 0,
        class_sep: float = 2.0,
        noise: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("num_rows", num_rows, 1),
            ("n_features", n_features, 1),
            ("n_classes", n_classes, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise BadReaderOptions(f"{name} must be an integer >= {low}", details={name: value})
        if not (class_sep > 0 and noise >= 0):
            raise BadReaderOptions(
                "class_sep must be > 0 and noise >= 0",
                details={"class_sep": class_sep, "noise": noise},
            )
        self.num_rows = num_rows
        self.n_features = n_features
        self.n_classes = n_classes
        self.seed = seed
        self.class_sep = float(class_sep)
        self.noise = float(noise)

    def _centres(self) -> np.ndarray:
        """Class centres, one row per class."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0]))
        return rng.normal(0.0, self.class_sep, size=(self.n_classes, self.n_features))

    def _block(self, block: int, centres: np.ndarray) -> Arrays:
        """All rows of one block, whatever part of it is asked for."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, block]))
        labels = rng.integers(0, self.n_classes, size=BLOCK_ROWS)
        noise = rng.standard_normal((BLOCK_ROWS, self.n_features)) * self.noise
        return (centres[labels] + noise).astype(np.float32), labels.astype(np.int64)

    def inspect(self, source: str) -> DatasetInfo:
        """Describe the dataset the options define (nothing to validate on disk)."""
        names = tuple(f"x{i}" for i in range(self.n_features))
        return DatasetInfo(
            format=self.format,
            num_rows=self.num_rows,
            columns=(*names, "label"),
            features=names,
            feature_shape=(self.n_features,),
            feature_dtype="float32",
            label_column="label",
            label_dtype="int64",
            num_classes=self.n_classes,
        )

    def read_rows(self, source: str, start: int, stop: int, info: DatasetInfo) -> Arrays:
        """Generate just the blocks that overlap the rows and cut them out."""
        centres = self._centres()
        parts_x: list[np.ndarray] = []
        parts_y: list[np.ndarray] = []
        for block in range(start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS + 1):
            x, y = self._block(block, centres)
            low = max(start - block * BLOCK_ROWS, 0)
            high = min(stop - block * BLOCK_ROWS, BLOCK_ROWS)
            parts_x.append(x[low:high])
            parts_y.append(y[low:high])
        return np.concatenate(parts_x), np.concatenate(parts_y)
