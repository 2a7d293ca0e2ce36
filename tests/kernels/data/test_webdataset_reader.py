"""Tests of the WebDataset (tar) reader."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable

import numpy as np
import pytest

from stratalab.kernels.data import (
    FormatMismatch,
    LabelColumnMissing,
    MalformedRecord,
    SchemaMismatch,
    WebDatasetReader,
)


def npy_bytes(array: np.ndarray) -> bytes:
    """A single array in ``.npy`` format."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def tar_bytes(members: list[tuple[str, bytes]], *, gzip: bool = False) -> bytes:
    """A tar archive of ``(name, data)`` members, in the given order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def samples(count: int) -> list[tuple[str, bytes]]:
    members = []
    for i in range(count):
        members.append((f"shard/{i:04d}.npy", npy_bytes(np.full(3, i, dtype=np.float32))))
        members.append((f"shard/{i:04d}.cls", str(i % 2).encode()))
        members.append((f"shard/{i:04d}.json", b"{}"))
    return members


@pytest.mark.parametrize("gzip", [False, True])
def test_inspect_and_shards(memdir: str, write_bytes: Callable, gzip: bool) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/data.tar", tar_bytes(samples(5), gzip=gzip))
    reader = WebDatasetReader()

    # Execute
    info = reader.inspect(url)
    shards = [reader.read_shard(url, i, 2, info=info) for i in range(2)]

    # Assert
    assert info.num_rows == 5 and info.feature_shape == (3,) and info.num_classes == 2
    assert info.columns == ("cls", "json", "npy")
    np.testing.assert_array_equal(shards[0][0][:, 0], [0, 1])
    np.testing.assert_array_equal(shards[1][0][:, 0], [2, 3, 4])
    np.testing.assert_array_equal(shards[1][1], [0, 1, 0])


def test_sample_without_label_is_named(memdir: str, write_bytes: Callable) -> None:
    # Prepare: drop the label of sample 0002
    members = [m for m in samples(4) if m[0] != "shard/0002.cls"]
    url = write_bytes(f"{memdir}/data.tar", tar_bytes(members))

    # Execute / Assert
    with pytest.raises(LabelColumnMissing, match=r"sample 'shard/0002' has no '\.cls' member"):
        WebDatasetReader().inspect(url)


def test_unparsable_label_is_named(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    members = [(n, b"cat" if n == "shard/0001.cls" else d) for n, d in samples(3)]
    url = write_bytes(f"{memdir}/data.tar", tar_bytes(members))

    # Execute / Assert
    with pytest.raises(MalformedRecord, match=r"'shard/0001\.cls' holds 'cat'"):
        WebDatasetReader().inspect(url)


def test_features_must_agree_in_shape(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    members = samples(3)
    members[3] = ("shard/0001.npy", npy_bytes(np.zeros(4, dtype=np.float32)))
    url = write_bytes(f"{memdir}/data.tar", tar_bytes(members))

    # Execute / Assert
    with pytest.raises(SchemaMismatch, match=r"sample 'shard/0001' has features of shape \(4,\)"):
        WebDatasetReader().inspect(url)


def test_split_sample_is_rejected(memdir: str, write_bytes: Callable) -> None:
    # Prepare: one more member of sample 0000 after sample 0001
    members = [*samples(2), ("shard/0000.txt", b"late")]
    url = write_bytes(f"{memdir}/data.tar", tar_bytes(members))

    # Execute / Assert
    with pytest.raises(MalformedRecord, match="members of sample 'shard/0000' are not consecutive"):
        WebDatasetReader().inspect(url)


def test_not_a_tar(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    url = write_bytes(f"{memdir}/data.tar", b"this is not a tar archive" * 40)

    # Execute / Assert
    with pytest.raises(FormatMismatch, match="not a tar archive"):
        WebDatasetReader().inspect(url)


def test_feature_member_that_is_not_npy(memdir: str, write_bytes: Callable) -> None:
    # Prepare
    members = samples(2)
    members[0] = ("shard/0000.npy", b"not numpy")
    url = write_bytes(f"{memdir}/data.tar", tar_bytes(members))

    # Execute / Assert
    with pytest.raises(MalformedRecord, match=r"'shard/0000\.npy' is not a numeric \.npy array"):
        WebDatasetReader().inspect(url)
