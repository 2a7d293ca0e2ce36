"""Small real dataset files for the datasets tests, written into a test's tmp_path.

Every file holds the same kind of data: ``n`` rows of four float features and
an integer class label in ``0..2``, drawn from a fixed seed.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

FEATURES = ["f0", "f1", "f2", "f3"]


def arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features (float32, ``(n, 4)``) and labels (int64, ``0..2``)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, size=n)


def write_csv(path: Path, n: int = 60, *, ragged_line: int | None = None) -> Path:
    """A CSV with a header ``f0,f1,f2,f3,label``; ``ragged_line`` drops a field on that line."""
    x, y = arrays(n)
    lines = [",".join([*FEATURES, "label"])]
    for row, label in zip(x, y, strict=True):
        lines.append(",".join([*(f"{v:.6f}" for v in row), str(label)]))
    if ragged_line is not None:
        index = ragged_line - 1  # line numbers count the header as line 1
        lines[index] = lines[index].rsplit(",", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_parquet(path: Path, n: int = 60) -> Path:
    """A Parquet file with the same columns as :func:`write_csv`, in two row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = arrays(n)
    table = pa.table({**{name: x[:, i] for i, name in enumerate(FEATURES)}, "label": y})
    pq.write_table(table, path, row_group_size=max(1, n // 2))
    return path


def write_npz(path: Path, n: int = 60, *, x_key: str = "x", y_key: str = "y") -> Path:
    """An NPZ archive with arrays ``x_key`` and ``y_key``."""
    x, y = arrays(n)
    with path.open("wb") as fh:
        np.savez(fh, **{x_key: x, y_key: y})
    return path


def write_webdataset(path: Path, n: int = 30) -> Path:
    """A WebDataset tar: ``0000.npy`` (features) and ``0000.cls`` (class) per sample."""
    x, y = arrays(n)
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            buffer = io.BytesIO()
            np.save(buffer, x[i])
            for ext, data in (("npy", buffer.getvalue()), ("cls", str(int(y[i])).encode())):
                info = tarfile.TarInfo(f"{i:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path
