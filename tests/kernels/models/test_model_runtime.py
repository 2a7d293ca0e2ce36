"""Loaded models checked against ONNX Runtime: tests for kernels/models/runtime.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from stratalab.kernels.models.errors import InvalidInput, InvalidModelFile
from stratalab.kernels.models.runtime import (
    OnnxModel,
    TorchScriptModel,
    load_model,
    load_model_bytes,
)


def _ort_reference(path: Path, x: np.ndarray) -> np.ndarray:
    """Output of a plain ORT session, the ground truth."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(5, 4)).astype(np.float32)


def test_onnx_model_matches_plain_session(mlp_onnx: Path, x: np.ndarray) -> None:
    # Execute
    model = load_model(mlp_onnx, "onnx", threads=2)
    out = model.run({"x": x})
    # Assert
    assert isinstance(model, OnnxModel)
    assert list(out) == ["y"]
    np.testing.assert_array_equal(out["y"], _ort_reference(mlp_onnx, x))
    assert model.device == "cpu"
    assert model.nbytes == mlp_onnx.stat().st_size


def test_session_threads_are_configurable(mlp_onnx: Path) -> None:
    model = OnnxModel(mlp_onnx, threads=3)
    assert model._session.get_session_options().intra_op_num_threads == 3


def test_prefer_gpu_without_gpu_falls_back_to_cpu(mlp_onnx: Path, x: np.ndarray) -> None:
    model = load_model(mlp_onnx, "onnx", prefer_gpu=True)
    expected = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    assert model.device == expected
    np.testing.assert_allclose(model.run({"x": x})["y"], _ort_reference(mlp_onnx, x), rtol=1e-5)


def test_torch_exported_onnx_matches_helper_built_onnx(
    mlp_onnx: Path, torch_onnx: Path, x: np.ndarray
) -> None:
    np.testing.assert_allclose(
        _ort_reference(torch_onnx, x), _ort_reference(mlp_onnx, x), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("fixture", ["mlp_torchscript", "mlp_traced"])
def test_torchscript_matches_onnx_runtime(
    fixture: str, request: pytest.FixtureRequest, torch_onnx: Path, x: np.ndarray
) -> None:
    # Prepare
    path: Path = request.getfixturevalue(fixture)
    # Execute
    model = load_model(path, "torchscript")
    out = model.run({"input_0": x})
    # Assert
    assert isinstance(model, TorchScriptModel)
    np.testing.assert_allclose(out["output_0"], _ort_reference(torch_onnx, x), rtol=1e-5, atol=1e-6)
    assert model.nbytes >= (4 * 8 + 8 + 8 * 3 + 3) * 4


def test_torchscript_accepts_forward_argument_names(mlp_torchscript: Path, x: np.ndarray) -> None:
    model = load_model(mlp_torchscript, "torchscript")
    arg = next(a.name for a in model._module.forward.schema.arguments if a.name != "self")
    np.testing.assert_array_equal(
        model.run({arg: x})["output_0"], model.run({"input_0": x})["output_0"]
    )


def test_torchscript_tuple_output_is_named_by_position(tmp_path: Path) -> None:
    # Prepare
    class TwoHeads(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return a + b, a * b

    path = tmp_path / "two.pt"
    torch.jit.save(torch.jit.script(TwoHeads()), str(path))
    a = np.array([[1.0, 2.0]], dtype=np.float32)
    b = np.array([[3.0, 4.0]], dtype=np.float32)
    # Execute
    model = load_model(path, "torchscript")
    out = model.run({"input_0": a, "input_1": b})
    # Assert
    assert model.signature.input_names == ["input_0", "input_1"]
    assert [s.name for s in model.signature.outputs] == ["output_0", "output_1"]
    np.testing.assert_array_equal(out["output_0"], a + b)
    np.testing.assert_array_equal(out["output_1"], a * b)


def test_torchscript_runtime_error_becomes_invalid_input(mlp_torchscript: Path) -> None:
    model = load_model(mlp_torchscript, "torchscript")
    with pytest.raises(InvalidInput):
        model.run({"input_0": np.zeros((2, 5), dtype=np.float32)})


def test_onnx_runtime_argument_error_becomes_invalid_input(mlp_onnx: Path) -> None:
    model = load_model(mlp_onnx, "onnx")
    with pytest.raises(InvalidInput):
        model.run({"x": np.zeros((2, 5), dtype=np.float32)})


def test_loading_from_bytes(mlp_onnx: Path, x: np.ndarray) -> None:
    model = load_model_bytes(mlp_onnx.read_bytes(), "onnx")
    np.testing.assert_array_equal(model.run({"x": x})["y"], _ort_reference(mlp_onnx, x))


def test_garbage_fails_to_load_as_invalid_model_file() -> None:
    with pytest.raises(InvalidModelFile):
        load_model_bytes(b"not a model", "onnx")
    with pytest.raises(InvalidModelFile):
        load_model_bytes(b"not a model", "torchscript")
