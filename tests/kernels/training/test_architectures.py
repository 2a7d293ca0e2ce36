"""Tests of the built-in architectures and the numpy <-> torch parameter bridge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from stratalab.errors import ValidationFailed
from stratalab.kernels.training.architectures import (
    build_model,
    get_params,
    input_shape,
    mlp,
    prepare_inputs,
    set_params,
    small_cnn,
)


def test_mlp_layers_and_output() -> None:
    # Execute
    model = mlp(64, [32, 16], 10)

    # Assert: three linear layers -> six tensors, logits of width 10
    assert [tuple(p.shape) for p in model.parameters()] == [
        (32, 64),
        (32,),
        (16, 32),
        (16,),
        (10, 16),
        (10,),
    ]
    assert model(torch.zeros(2, 64)).shape == (2, 10)


def test_small_cnn_output_shape() -> None:
    # Execute
    model = small_cnn(in_channels=3, num_classes=5, image_size=16)

    # Assert
    assert model(torch.zeros(4, 3, 16, 16)).shape == (4, 5)


def test_get_and_set_params_round_trip() -> None:
    # Prepare
    torch.manual_seed(0)
    source = build_model({"architecture": "mlp", "in_features": 4, "hidden": [3], "num_classes": 2})
    torch.manual_seed(1)
    target = build_model({"architecture": "mlp", "in_features": 4, "hidden": [3], "num_classes": 2})

    # Execute
    params = get_params(source)
    set_params(target, params)

    # Assert: same outputs, and the exported arrays are copies
    x = torch.randn(5, 4)
    torch.testing.assert_close(source(x), target(x))
    params[0][:] = 123.0
    assert not torch.equal(next(source.parameters()), torch.full((3, 4), 123.0))


def test_set_params_rejects_another_architecture() -> None:
    # Prepare
    model = mlp(4, [3], 2)

    # Execute / Assert
    with pytest.raises(ValidationFailed, match="tensors"):
        set_params(model, [np.zeros((3, 4))])
    with pytest.raises(ValidationFailed, match="shape"):
        set_params(model, [np.zeros((3, 5)), np.zeros(3), np.zeros((2, 3)), np.zeros(2)])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"architecture": "resnet"}, "unknown model architecture"),
        ({}, "unknown model architecture"),
        ({"architecture": "mlp", "in_features": 4}, "invalid arguments"),
        ({"architecture": "mlp", "in_features": 0, "hidden": [], "num_classes": 2}, "positive"),
        ({"architecture": "mlp", "in_features": 4, "hidden": [-1], "num_classes": 2}, "positive"),
        (
            {"architecture": "small_cnn", "in_channels": 1, "num_classes": 2, "image_size": 2},
            "image_size",
        ),
    ],
)
def test_build_model_rejects_bad_specs(spec: dict, message: str) -> None:
    # Execute / Assert
    with pytest.raises(ValidationFailed, match=message):
        build_model(spec)


def test_prepare_inputs_reshapes_flat_rows_for_a_cnn() -> None:
    # Prepare
    spec = {"architecture": "small_cnn", "in_channels": 1, "num_classes": 10, "image_size": 8}

    # Execute
    tensor = prepare_inputs(spec, np.arange(2 * 64).reshape(2, 64))

    # Assert
    assert input_shape(spec) == (1, 8, 8)
    assert tensor.shape == (2, 1, 8, 8) and tensor.dtype == torch.float32
    assert float(tensor[1, 0, 0, 1]) == 65.0


def scripted_net(tmp_path: Path) -> dict:
    """Save a small scripted network as a user would upload it; return its spec."""
    torch.manual_seed(0)
    net = torch.jit.script(nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10)))
    path = tmp_path / "net.pt"
    torch.jit.save(net, str(path))
    return {"architecture": "torchscript", "path": str(path), "input_shape": [64]}


def test_torchscript_builds_fresh_modules_from_the_file(tmp_path: Path) -> None:
    # Prepare
    spec = scripted_net(tmp_path)

    # Execute
    first, second = build_model(spec), build_model(spec)
    set_params(first, [np.zeros_like(p) for p in get_params(first)])

    # Assert: the file's weights, no state shared between builds, flat rows accepted
    assert input_shape(spec) == (64,)
    assert first is not second
    assert all(not np.any(p) for p in get_params(first))
    assert any(np.any(p) for p in get_params(second))
    assert second(prepare_inputs(spec, np.ones((3, 64)))).shape == (3, 10)


def test_torchscript_picks_up_a_replaced_file(tmp_path: Path) -> None:
    # Prepare
    spec = scripted_net(tmp_path)
    build_model(spec)  # cache the first version
    wider = torch.jit.script(nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)))
    torch.jit.save(wider, spec["path"])

    # Execute
    model = build_model(spec)

    # Assert
    assert get_params(model)[0].shape == (16, 64)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"path": "relative/net.pt"}, "absolute"),
        ({"path": "/nonexistent/stratalab/net.pt"}, "cannot read"),
        ({"input_shape": []}, "input_shape"),
        ({"input_shape": [0]}, "positive"),
        ({"input_shape": [64], "extra": 1}, "invalid arguments"),
    ],
)
def test_torchscript_rejects_bad_specs(tmp_path: Path, fields: dict, message: str) -> None:
    # Prepare
    spec = {**scripted_net(tmp_path), **fields}

    # Execute / Assert
    with pytest.raises(ValidationFailed, match=message):
        build_model(spec)


def test_torchscript_rejects_a_file_that_is_not_torchscript(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "not_a_model.pt"
    path.write_bytes(b"\x00not a model" * 10)

    # Execute / Assert
    with pytest.raises(ValidationFailed, match="not a TorchScript model"):
        build_model({"architecture": "torchscript", "path": str(path), "input_shape": [4]})
