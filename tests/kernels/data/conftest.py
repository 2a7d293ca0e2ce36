"""Fixtures for the dataset-reader tests: every test writes its own files."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import fsspec
import pytest


@pytest.fixture
def memdir() -> Iterator[str]:
    """A fresh ``memory://`` folder, removed after the test."""
    fs = fsspec.filesystem("memory")
    root = f"/stratalab-test-{uuid.uuid4().hex}"
    fs.mkdir(root)
    yield f"memory://{root}"
    fs.rm(root, recursive=True)


@pytest.fixture
def write_bytes() -> Callable[[str, bytes], str]:
    """Write bytes to an fsspec URL and return the URL."""

    def write(url: str, data: bytes) -> str:
        with fsspec.open(url, "wb") as handle:
            handle.write(data)
        return url

    return write
