"""The end of training: trained parameters become a model file the registry can serve.

A finished job's global parameters are a list of arrays that only mean
something together with their model spec. Exporting turns the pair into a
self-contained ONNX (served by ONNX Runtime) or TorchScript file, and
:func:`input_signature` says what to declare when registering it.

ONNX goes through torch's TorchScript-based exporter (``dynamo=False``): the
``torch.export``-based default needs ``onnxscript``, which StrataLab does not
depend on. That exporter keeps global state while it runs, so exports in one
process are serialised by a lock (a worker may run several tasks at once).
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stratalab.kernels.training.architectures import build_model, input_shape, set_params

__all__ = [
    "INPUT_NAME",
    "ONNX_OPSET",
    "OUTPUT_NAME",
    "export_onnx",
    "export_torchscript",
    "input_signature",
]

logger = logging.getLogger(__name__)

#: Name of the exported model's input tensor.
INPUT_NAME = "input"
#: Name of the exported model's output tensor (unnormalised class scores).
OUTPUT_NAME = "logits"
#: ONNX opset written; 17 loads in every ONNX Runtime StrataLab supports (>= 1.17).
ONNX_OPSET = 17
#: Batch size of the example input used to trace; 2 rather than 1 so that no
#: operation can be specialised to a batch of one.
_EXAMPLE_BATCH = 2

_EXPORT_LOCK = threading.Lock()


def _trained_model(model_spec: Mapping[str, Any], params: Sequence[np.ndarray]) -> nn.Module:
    """The spec's network with ``params`` loaded, on the CPU, in eval mode.

    Built under a forked RNG: the random initialisation is overwritten anyway
    and must not move the caller's torch random stream.
    """
    with torch.random.fork_rng(devices=[]):
        model = build_model(model_spec)
    set_params(model, params)
    return model.cpu().eval()


def _example_input(model_spec: Mapping[str, Any]) -> torch.Tensor:
    """A zero batch of the spec's input shape, for tracing."""
    return torch.zeros((_EXAMPLE_BATCH, *input_shape(model_spec)), dtype=torch.float32)


def export_onnx(model_spec: Mapping[str, Any], params: Sequence[np.ndarray]) -> bytes:
    """Export trained parameters as an ONNX model with a dynamic batch axis.

    Parameters
    ----------
    model_spec
        The spec the parameters were trained with (any architecture,
        ``torchscript`` included).
    params
        Parameters in ``get_params`` order.

    Returns
    -------
    bytes
        An ONNX model with one float32 input ``"input"`` of shape
        ``[batch, *input_shape]`` and one output ``"logits"`` of shape
        ``[batch, num_classes]``.

    Raises
    ------
    ValidationFailed
        If the spec is invalid or the parameters do not fit it.
    """
    model = _trained_model(model_spec, params)
    example = _example_input(model_spec)
    # A path rather than a BytesIO: ``torch.onnx.export`` is typed (and documented)
    # to take a path; the file is small and lives for a moment.
    with (
        tempfile.TemporaryDirectory(prefix="stratalab-export-") as folder,
        _EXPORT_LOCK,
        torch.no_grad(),
    ):
        path = Path(folder) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            path,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
        data = path.read_bytes()
    logger.debug("exported %s to ONNX (%d bytes)", model_spec.get("architecture"), len(data))
    return data


def export_torchscript(model_spec: Mapping[str, Any], params: Sequence[np.ndarray]) -> bytes:
    """Export trained parameters as a TorchScript file, in eval mode.

    The network is scripted rather than traced, so any data-dependent
    control flow survives; a model that is already TorchScript (the
    ``torchscript`` architecture) is saved as it is, with the new weights.

    Returns
    -------
    bytes
        What ``torch.jit.save`` writes; ``torch.jit.load`` reads it back.
    """
    model = _trained_model(model_spec, params)
    scripted = model if isinstance(model, torch.jit.ScriptModule) else torch.jit.script(model)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def input_signature(model_spec: Mapping[str, Any]) -> dict[str, Any]:
    """What to declare when registering an exported model, with a dynamic batch.

    Dynamic dimensions are ``None`` (JSON ``null``), the convention of the
    model registry: its ``batch_dynamic`` test, which decides whether
    requests may be micro-batched, looks for ``None`` in the first axis.
    The output width is found by running the network once on a zero sample.

    Returns
    -------
    dict
        ``input_shape`` and ``output_shape`` (the upload form's fields, e.g.
        ``[None, 64]`` and ``[None, 10]``, or ``[None, 1, 8, 8]`` for a CNN),
        and ``inputs`` / ``outputs``: ``{"name", "shape", "dtype"}`` tensor
        specs as the registry stores them for the ONNX export.
    """
    sample = input_shape(model_spec)
    with torch.random.fork_rng(devices=[]):
        model = build_model(model_spec).eval()
    with torch.no_grad():
        output = model(torch.zeros((1, *sample), dtype=torch.float32))
    in_shape: list[int | None] = [None, *sample]
    out_shape: list[int | None] = [None, *(int(d) for d in output.shape[1:])]
    return {
        "input_shape": in_shape,
        "output_shape": out_shape,
        "inputs": [{"name": INPUT_NAME, "shape": in_shape, "dtype": "float32"}],
        "outputs": [{"name": OUTPUT_NAME, "shape": out_shape, "dtype": "float32"}],
    }
