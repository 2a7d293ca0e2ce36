"""Tests of the built-in architectures and the numpy <-> torch parameter bridge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
