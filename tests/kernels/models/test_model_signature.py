"""Signatures read by loading the model: tests for stratalab/kernels/models/signature.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratalab.kernels.models.errors import InvalidModelFile
from stratalab.kernels.models.signature import ModelSignature, TensorSpec, inspect_model


def test_onnx_signature_has_names_dynamic_batch_and_dtypes(mlp_onnx: Path) -> None:
    sig = inspect_model(mlp_onnx.read_bytes(), "onnx")
    assert sig == ModelSignature(
        format="onnx",
        inputs=[TensorSpec("x", [None, 4], "float32")],
        outputs=[TensorSpec("y", [None, 3], "float32")],
    )
    assert sig.batch_dynamic


def test_torch_exported_onnx_signature(torch_onnx: Path) -> None:
    sig = inspect_model(torch_onnx.read_bytes(), "onnx")
    assert sig.inputs == [TensorSpec("x", [None, 4], "float32")]
    assert sig.outputs == [TensorSpec("y", [None, 3], "float32")]


def test_two_input_int64_model(token_onnx: Path) -> None:
    sig = inspect_model(token_onnx.read_bytes(), "onnx")
    assert sig.input_names == ["input_ids", "attention_mask"]
    assert [s.dtype for s in sig.inputs] == ["int64", "int64"]
    assert sig.outputs[0].shape == [None, 4]


def test_fixed_batch_model_is_not_batch_dynamic(mlp_onnx_fixed_batch: Path) -> None:
    sig = inspect_model(mlp_onnx_fixed_batch.read_bytes(), "onnx")
    assert sig.inputs[0].shape == [1, 4]
    assert not sig.batch_dynamic


@pytest.mark.parametrize("fixture", ["mlp_torchscript", "mlp_traced"])
def test_torchscript_inputs_are_positional_with_unknown_shape(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(fixture)
    sig = inspect_model(path.read_bytes(), "torchscript")
    assert sig.inputs == [TensorSpec("input_0", None, None)]
    assert sig.outputs == [TensorSpec("output_0", None, None)]
    assert not sig.batch_dynamic


def test_torchscript_declared_shapes_fill_the_signature(mlp_torchscript: Path) -> None:
    sig = inspect_model(
        mlp_torchscript.read_bytes(), "torchscript", input_shape=[None, 4], output_shape=[None, 3]
    )
    assert sig.inputs == [TensorSpec("input_0", [None, 4], None)]
    assert sig.outputs == [TensorSpec("output_0", [None, 3], None)]
    assert sig.batch_dynamic


def test_onnx_declared_shape_compatible_with_model_is_accepted(mlp_onnx: Path) -> None:
    sig = inspect_model(mlp_onnx.read_bytes(), "onnx", input_shape=[1, 4], output_shape=[1, 3])
    assert sig.inputs[0].shape == [None, 4]  # the model's own shape wins


def test_onnx_declared_shape_contradicting_model_is_refused(mlp_onnx: Path) -> None:
    with pytest.raises(InvalidModelFile, match=r"declared input_shape \[1, 10\]"):
        inspect_model(mlp_onnx.read_bytes(), "onnx", input_shape=[1, 10])


def test_signature_round_trips_through_dict(token_onnx: Path) -> None:
    sig = inspect_model(token_onnx.read_bytes(), "onnx")
    assert ModelSignature.from_dict(sig.to_dict()) == sig


def test_describe_is_readable() -> None:
    assert TensorSpec("x", [None, 4], "float32").describe() == "[None, 4] (float32)"
    assert TensorSpec("input_0", None, None).describe() == "unknown shape (any dtype)"
