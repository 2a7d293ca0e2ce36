"""Format detection from content: tests for stratalab/kernels/models/formats.py."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from stratalab.errors import ValidationFailed
from stratalab.kernels.models.errors import InvalidModelFile
from stratalab.kernels.models.formats import detect_format


def test_onnx_built_with_helper_is_onnx(mlp_onnx: Path) -> None:
    assert detect_format(mlp_onnx.read_bytes()) == "onnx"


def test_onnx_exported_from_torch_is_onnx(torch_onnx: Path) -> None:
    assert detect_format(torch_onnx.read_bytes(), declared="onnx") == "onnx"


@pytest.mark.parametrize("fixture", ["mlp_torchscript", "mlp_traced"])
def test_scripted_and_traced_archives_are_torchscript(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(fixture)
    assert detect_format(path.read_bytes(), declared="torchscript") == "torchscript"


def test_random_bytes_named_onnx_are_refused(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "model.onnx"
    path.write_bytes(os.urandom(4096))
    # Execute / Assert
    with pytest.raises(InvalidModelFile) as info:
        detect_format(path.read_bytes(), declared="onnx")
    assert info.value.code == "VALIDATION_ERROR"
    assert info.value.status == 422
    assert isinstance(info.value, ValidationFailed)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_onnx_is_refused(mlp_onnx: Path, keep: float) -> None:
    data = mlp_onnx.read_bytes()
    with pytest.raises(InvalidModelFile):
        detect_format(data[: int(len(data) * keep)])


def test_truncated_torchscript_is_refused(mlp_torchscript: Path) -> None:
    data = mlp_torchscript.read_bytes()
    with pytest.raises(InvalidModelFile):
        detect_format(data[: len(data) // 2])


def test_torchscript_uploaded_as_onnx_is_refused(mlp_torchscript: Path) -> None:
    with pytest.raises(InvalidModelFile, match="declared format 'onnx'") as info:
        detect_format(mlp_torchscript.read_bytes(), declared="onnx")
    assert info.value.details == {"declared": "onnx", "detected": "torchscript"}


def test_onnx_uploaded_as_torchscript_is_refused(mlp_onnx: Path) -> None:
    with pytest.raises(InvalidModelFile, match="does not match"):
        detect_format(mlp_onnx.read_bytes(), declared="torchscript")


def test_torch_save_checkpoint_is_not_torchscript() -> None:
    # Prepare: a pickled module (needs its Python class to load), not TorchScript
    buffer = io.BytesIO()
    torch.save(torch.nn.Linear(4, 2).state_dict(), buffer)
    # Execute / Assert
    with pytest.raises(InvalidModelFile, match=r"torch\.jit\.script"):
        detect_format(buffer.getvalue())


def test_zip_with_a_corrupted_member_is_refused(mlp_torchscript: Path, tmp_path: Path) -> None:
    # Prepare: flip bytes inside a stored member so its CRC no longer matches
    data = bytearray(mlp_torchscript.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    header = info.header_offset
    name_len, extra_len = struct.unpack("<HH", bytes(data[header + 26 : header + 30]))
    start = header + 30 + name_len + extra_len  # first byte of the member's data
    data[start : start + 4] = bytes(b ^ 0xFF for b in data[start : start + 4])
    # Execute / Assert
    with pytest.raises(InvalidModelFile):
        detect_format(bytes(data))


def test_unrelated_zip_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(InvalidModelFile, match="neither"):
        detect_format(buffer.getvalue())


def test_empty_file_is_refused() -> None:
    with pytest.raises(InvalidModelFile, match="empty"):
        detect_format(b"")


def test_unknown_declared_format_is_refused(mlp_onnx: Path) -> None:
    with pytest.raises(InvalidModelFile, match="unknown model format"):
        detect_format(mlp_onnx.read_bytes(), declared="tflite")
