"""Built-in model architectures and the numpy <-> torch parameter bridge.

A *model spec* is a small JSON-able dict that names an architecture and its
arguments, for example ``{"architecture": "mlp", "in_features": 64,
"hidden": [64], "num_classes": 10}``. Specs travel to Dask workers instead of
pickled modules, so a worker rebuilds the same network from a few bytes and
the coordinator can store the spec in the job record.

Parameters travel as lists of numpy arrays in ``state_dict`` order, which is
what the aggregation maths works on.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from stratalab.errors import ValidationFailed
from stratalab.kernels.registry import construct

logger = logging.getLogger(__name__)


def mlp(
    in_features: int, hidden: Sequence[int], num_classes: int, *, dropout: float = 0.0
) -> nn.Sequential:
    """Build a multi-layer perceptron for tabular data or flattened images.

    Parameters
    ----------
    in_features
        Width of an input row.
    hidden
        Widths of the hidden layers, each followed by ReLU (and dropout when
        ``dropout > 0``). An empty list gives a linear (softmax-regression) model.
    num_classes
        Number of output logits.
    dropout
        Dropout probability after each hidden layer, in ``[0, 1)``.

    Returns
    -------
    torch.nn.Sequential
        The network; it returns logits.
    """
    _positive("in_features", in_features)
    _positive("num_classes", num_classes)
    if not 0.0 <= dropout < 1.0:
        raise ValidationFailed("dropout must be in [0, 1)", details={"dropout": dropout})
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        _positive("hidden layer width", size)
        layers.append(nn.Linear(width, int(size)))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(size)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def small_cnn(in_channels: int, num_classes: int, image_size: int) -> nn.Sequential:
    """Build a two-block convolutional network for small square images.

    Two ``conv 3x3 -> ReLU -> max-pool 2`` blocks (16 and 32 channels) and a
    linear classifier: enough for digits or MNIST-sized inputs while staying
    cheap to train on a CPU worker.

    Parameters
    ----------
    in_channels
        Channels of the input image (1 for greyscale).
    num_classes
        Number of output logits.
    image_size
        Height and width of the (square) input, at least 4.

    Returns
    -------
    torch.nn.Sequential
        The network; it takes ``(N, in_channels, image_size, image_size)``
        tensors and returns logits.
    """
    _positive("in_channels", in_channels)
    _positive("num_classes", num_classes)
    if image_size < 4:
        raise ValidationFailed(
            "small_cnn needs image_size >= 4", details={"image_size": image_size}
        )
    reduced = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * reduced * reduced, num_classes),
    )


def torchscript(path: str, input_shape: Sequence[int]) -> nn.Module:
    """Load an uploaded TorchScript model so it can be trained like a built-in one.

    The spec names the file by absolute path (workers may run in any
    directory) and declares the shape of one sample, which TorchScript does
    not record. Every call returns a fresh module: rounds and concurrent tasks
    on one worker must never share weights or optimizer-visible state. The
    file's bytes are cached by path, inode, size and modification time, so a
    round does not re-read an unchanged file and a replaced file is picked up.

    Parameters
    ----------
    path
        Absolute path of a ``torch.jit.save`` file, readable on the worker.
    input_shape
        Shape of one input sample, without the batch axis (``[64]``,
        ``[1, 8, 8]``).

    Returns
    -------
    torch.nn.Module
        The scripted module on the CPU, with the weights the file holds (the
        starting point when a job has no parameters yet).

    Raises
    ------
    ValidationFailed
        If the path is relative or unreadable, the file is not TorchScript,
        or ``input_shape`` is not a list of positive integers.
    """
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ValidationFailed(
            "a torchscript model spec needs an absolute 'path'", details={"path": path}
        )
    if isinstance(input_shape, str | bytes) or not input_shape:
        raise ValidationFailed(
            "input_shape must be a non-empty list of positive integers",
            details={"input_shape": input_shape},
        )
    for size in input_shape:
        _positive("input_shape entry", size)
    try:
        stat = os.stat(path)
        data = _read_model_file(path, (stat.st_ino, stat.st_size, stat.st_mtime_ns))
    except OSError as exc:
        raise ValidationFailed(
            f"cannot read the TorchScript model: {exc.strerror or 'unreadable'}",
            details={"path": path},
        ) from None
    try:
        module: nn.Module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise ValidationFailed(
            "the file is not a TorchScript model that this torch can load",
            details={"path": path},
        ) from exc
    return module


@functools.lru_cache(maxsize=4)
def _read_model_file(path: str, version: tuple[int, int, int]) -> bytes:
    """A model file's bytes; ``version`` (inode, size, mtime) keys a changed file anew."""
    with open(path, "rb") as handle:
        return handle.read()


def _positive(name: str, value: int) -> None:
    """Reject non-positive integer hyper-parameters with a clear message."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValidationFailed(f"{name} must be a positive integer", details={name: value})


#: Builders by the ``architecture`` name a model spec uses.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "small_cnn": small_cnn,
    "torchscript": torchscript,
}


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """Build a fresh, randomly initialised network from a model spec.

    Parameters
    ----------
    spec
        ``{"architecture": name, **arguments}``; the arguments are those of
        the builder (:func:`mlp`, :func:`small_cnn` or :func:`torchscript`).

    Returns
    -------
    torch.nn.Module
        The network, in training mode. Seed torch beforehand for a
        reproducible initialisation.

    Raises
    ------
    ValidationFailed
        If the architecture is unknown or an argument is missing or wrong.
    """
    name = spec.get("architecture")
    arguments = {key: value for key, value in spec.items() if key != "architecture"}
    return construct(
        ARCHITECTURES,
        str(name),
        arguments,
        what="model architecture",
        field="architecture",
        options_word="arguments",
    )


def input_shape(spec: Mapping[str, Any]) -> tuple[int, ...]:
    """Shape of one input sample the spec's network expects (without the batch axis)."""
    if spec.get("architecture") == "torchscript":
        return tuple(int(size) for size in spec["input_shape"])
    if spec.get("architecture") == "small_cnn":
        size = int(spec["image_size"])
        return (int(spec["in_channels"]), size, size)
    return (int(spec["in_features"]),)


def prepare_inputs(spec: Mapping[str, Any], features: np.ndarray) -> torch.Tensor:
    """Turn a feature array into the float32 tensor the network takes.

    Rows may come flat (a CSV row of 64 pixels) or already shaped; they are
    reshaped to :func:`input_shape` so the same dataset feeds an MLP or a CNN.

    Raises
    ------
    ValidationFailed
        If a row does not have as many values as the network expects.
    """
    shape = input_shape(spec)
    array = np.asarray(features, dtype=np.float32)
    per_row = int(np.prod(shape))
    if array.ndim == 0 or int(np.prod(array.shape[1:])) != per_row:
        raise ValidationFailed(
            f"each sample must have {per_row} values for this model, "
            f"got shape {tuple(array.shape[1:])}",
            details={"expected": list(shape), "got": list(array.shape[1:])},
        )
    return torch.from_numpy(np.ascontiguousarray(array.reshape((len(array), *shape))))


def get_params(model: nn.Module) -> list[np.ndarray]:
    """Copy a model's ``state_dict`` into a list of numpy arrays, in order.

    Buffers (batch-norm statistics) are included so that averaging the list
    averages everything that defines the model's behaviour.
    """
    return [tensor.detach().cpu().numpy().copy() for tensor in model.state_dict().values()]


def set_params(model: nn.Module, params: Sequence[np.ndarray]) -> None:
    """Load a list of numpy arrays (from :func:`get_params`) into a model.

    Raises
    ------
    ValidationFailed
        If the list does not match the model's tensors in count or shape,
        which means the parameters belong to a different architecture.
    """
    state = model.state_dict()
    if len(params) != len(state):
        raise ValidationFailed(
            f"model has {len(state)} tensors, parameters have {len(params)}",
            details={"expected": len(state), "got": len(params)},
        )
    new_state: dict[str, torch.Tensor] = {}
    for (key, current), value in zip(state.items(), params, strict=True):
        array = np.asarray(value)
        if tuple(array.shape) != tuple(current.shape):
            raise ValidationFailed(
                f"tensor {key!r} has shape {tuple(current.shape)}, "
                f"parameters have {tuple(array.shape)}",
                details={"tensor": key},
            )
        new_state[key] = torch.as_tensor(array, dtype=current.dtype).clone()
    model.load_state_dict(new_state)
