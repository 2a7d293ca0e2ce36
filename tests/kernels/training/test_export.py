"""Tests of ``stratalab.kernels.training.export``: the files really load and agree with torch."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from stratalab.errors import ValidationFailed
from stratalab.kernels.training.architectures import build_model, get_params, set_params
from stratalab.kernels.training.export import export_onnx, export_torchscript, input_signature

pytestmark = pytest.mark.timeout(60)

MLP = {"architecture": "mlp", "in_features": 64, "hidden": [32], "num_classes": 10}
CNN = {"architecture": "small_cnn", "in_channels": 1, "num_classes": 10, "image_size": 8}


def trained_like(spec: dict[str, Any], seed: int = 0) -> list[np.ndarray]:
    """Non-default parameters for ``spec`` (a seeded initialisation)."""
    torch.manual_seed(seed)
    return get_params(build_model(spec))


def reference(spec: dict[str, Any], params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """What torch itself computes for ``x``."""
    model = build_model(spec)
    set_params(model, params)
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def scripted_file(tmp_path: Path) -> dict[str, Any]:
    """A user's TorchScript upload, with dropout so that eval mode matters."""
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))
    path = tmp_path / "user_model.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    return {"architecture": "torchscript", "path": str(path), "input_shape": [64]}


@pytest.mark.parametrize("spec", [MLP, CNN], ids=["mlp", "small_cnn"])
def test_onnx_export_matches_torch_for_any_batch_size(spec: dict[str, Any]) -> None:
    # Prepare
    params = trained_like(spec)
    shape = input_signature(spec)["input_shape"][1:]

    # Execute
    session = ort.InferenceSession(export_onnx(spec, params), providers=["CPUExecutionProvider"])

    # Assert: names, a dynamic batch axis, and torch's numbers at batch 1 and 5
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("input", "logits")
    assert not isinstance(inp.shape[0], int) and inp.shape[1:] == shape
    rng = np.random.default_rng(1)
    for batch in (1, 5):
        x = rng.uniform(0, 16, (batch, *shape)).astype(np.float32)
        (logits,) = session.run(None, {"input": x})
        assert logits.shape == (batch, 10)
        np.testing.assert_allclose(logits, reference(spec, params, x), atol=1e-4, rtol=1e-4)


def test_export_does_not_move_the_callers_rng() -> None:
    # Prepare
    params = trained_like(MLP)
    torch.manual_seed(9)
    expected = torch.rand(3)
    torch.manual_seed(9)

    # Execute: both build a freshly initialised network before loading params
    export_onnx(MLP, params)
    export_torchscript(MLP, params)

    # Assert
    assert torch.equal(torch.rand(3), expected)


def test_torchscript_export_loads_and_matches_torch() -> None:
    # Prepare
    params = trained_like(CNN, seed=2)
    x = np.random.default_rng(2).uniform(0, 16, (4, 1, 8, 8)).astype(np.float32)

    # Execute
    loaded = torch.jit.load(io.BytesIO(export_torchscript(CNN, params)))

    # Assert
    assert not loaded.training
    with torch.no_grad():
        got = loaded(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, reference(CNN, params, x), atol=1e-5)


@pytest.mark.filterwarnings("ignore:no signature found:UserWarning")
def test_a_torchscript_model_exports_with_new_weights_in_eval_mode(tmp_path: Path) -> None:
    # Prepare: weights that differ from the file's
    spec = scripted_file(tmp_path)
    params = [p * 0.5 + 0.01 for p in get_params(build_model(spec))]
    x = np.random.default_rng(3).uniform(0, 16, (5, 64)).astype(np.float32)
    expected = reference(spec, params, x)

    # Execute
    onnx_bytes = export_onnx(spec, params)
    script_bytes = export_torchscript(spec, params)

    # Assert: both files give the eval-mode (no dropout) outputs of the new weights
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        np.testing.assert_allclose(
            session.run(None, {"input": x[:batch]})[0], expected[:batch], atol=1e-4
        )
    loaded = torch.jit.load(io.BytesIO(script_bytes))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(torch.from_numpy(x)).numpy(), expected, atol=1e-5)


def test_input_signature_has_a_dynamic_batch(tmp_path: Path) -> None:
    # Execute
    mlp_sig = input_signature(MLP)
    cnn_sig = input_signature(CNN)
    script_sig = input_signature(scripted_file(tmp_path))

    # Assert
    assert mlp_sig["input_shape"] == [None, 64]
    assert mlp_sig["output_shape"] == [None, 10]
    assert mlp_sig["inputs"] == [{"name": "input", "shape": [None, 64], "dtype": "float32"}]
    assert mlp_sig["outputs"] == [{"name": "logits", "shape": [None, 10], "dtype": "float32"}]
    assert cnn_sig["input_shape"] == [None, 1, 8, 8]
    assert script_sig["input_shape"] == [None, 64] and script_sig["output_shape"] == [None, 10]


def test_export_refuses_parameters_of_another_model() -> None:
    # Execute / Assert
    with pytest.raises(ValidationFailed, match="tensors"):
        export_onnx(MLP, trained_like(CNN))
