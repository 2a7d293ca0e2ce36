"""What a model takes and returns: names, shapes and dtypes of its tensors.

The signature is read by really loading the model (an ONNX Runtime session, or
``torch.jit.load``) rather than by walking the file, so what the upload route
records is exactly what the serving path will see. It is stored with the model
and drives input validation and the adapters.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stratalab.kernels.models.errors import InvalidModelFile
from stratalab.kernels.models.formats import ModelFormat, parse_format

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch

logger = logging.getLogger(__name__)

#: ONNX Runtime's type strings mapped to numpy dtype names.
ORT_DTYPES: dict[str, str] = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "str",
}

Shape = list[int | None]


@dataclass
class TensorSpec:
    """One named input or output tensor."""

    #: Name the model uses for the tensor (ONNX) or ``input_<i>``/``output_<i>`` (TorchScript).
    name: str
    #: Dimensions; ``None`` for a dynamic dimension. The whole shape is ``None``
    #: when even the rank is unknown (TorchScript without a declared shape).
    shape: Shape | None
    #: numpy dtype name (``"float32"``), ORT's type string for non-tensor
    #: values (``"seq(map(int64,tensor(float)))"``), or ``None`` when unknown.
    dtype: str | None

    def describe(self) -> str:
        """Human-readable ``[None, 4] (float32)`` for error messages."""
        shape = "unknown shape" if self.shape is None else format_shape(self.shape)
        return f"{shape} ({self.dtype or 'any dtype'})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the model record and the wire."""
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        """Inverse of :meth:`to_dict`."""
        shape = data.get("shape")
        return cls(
            name=str(data["name"]),
            shape=None if shape is None else [None if d is None else int(d) for d in shape],
            dtype=data.get("dtype"),
        )


@dataclass
class ModelSignature:
    """The tensors a model consumes and produces."""

    #: ``"onnx"`` or ``"torchscript"``.
    format: ModelFormat
    #: Inputs in the model's positional order.
    inputs: list[TensorSpec] = field(default_factory=list)
    #: Outputs in the model's order.
    outputs: list[TensorSpec] = field(default_factory=list)

    @property
    def input_names(self) -> list[str]:
        """Names of the inputs, in order."""
        return [spec.name for spec in self.inputs]

    @property
    def batch_dynamic(self) -> bool:
        """True when every input's first dimension is dynamic.

        Only then can requests be concatenated along axis 0 and run as one
        batch; a model exported with a fixed batch of 1 cannot be micro-batched.
        """
        return bool(self.inputs) and all(
            spec.shape is not None and len(spec.shape) >= 1 and spec.shape[0] is None
            for spec in self.inputs
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the model record and the wire."""
        return {
            "format": self.format,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSignature:
        """Inverse of :meth:`to_dict`."""
        return cls(
            format=parse_format(str(data["format"])),
            inputs=[TensorSpec.from_dict(d) for d in data.get("inputs", [])],
            outputs=[TensorSpec.from_dict(d) for d in data.get("outputs", [])],
        )


def inspect_model(
    data: bytes,
    fmt: ModelFormat,
    *,
    input_shape: Sequence[int | None] | None = None,
    output_shape: Sequence[int | None] | None = None,
) -> ModelSignature:
    """Load ``data`` and return its signature.

    Parameters
    ----------
    data:
        The model file's bytes (already accepted by ``detect_format``).
    fmt:
        Its format.
    input_shape, output_shape:
        The shapes an uploader declared (the upload form's ``input_shape`` and
        ``output_shape``). TorchScript has no static shapes, so they fill in the
        first input/output. For ONNX they are checked against the model, and a
        contradiction is an error: the declaration would mislead every client.

    Raises
    ------
    InvalidModelFile
        When the runtime cannot load the model, or a declared shape contradicts it.
    """
    if fmt == "onnx":
        from stratalab.kernels.models.runtime import ORT_ERRORS, make_session

        try:
            session = make_session(data, threads=1, prefer_gpu=False)
        except ORT_ERRORS as exc:
            raise InvalidModelFile("ONNX Runtime cannot load the model") from exc
        signature = onnx_signature(session)
        _check_declared(signature.inputs, input_shape, "input_shape")
        _check_declared(signature.outputs, output_shape, "output_shape")
        return signature
    import torch

    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise InvalidModelFile("TorchScript cannot load the model") from exc
    return torchscript_signature(module, input_shape=input_shape, output_shape=output_shape)


def onnx_signature(session: ort.InferenceSession) -> ModelSignature:
    """Signature of a loaded ONNX Runtime session."""
    return ModelSignature(
        format="onnx",
        inputs=[_ort_spec(arg) for arg in session.get_inputs()],
        outputs=[_ort_spec(arg) for arg in session.get_outputs()],
    )


def torchscript_signature(
    module: torch.jit.ScriptModule,
    *,
    input_shape: Sequence[int | None] | None = None,
    output_shape: Sequence[int | None] | None = None,
) -> ModelSignature:
    """Signature of a loaded TorchScript module.

    The number of inputs and outputs comes from the compiled ``forward``
    schema; shapes and dtypes are unknown unless declared, because TorchScript
    tensors carry neither in their types.
    """
    n_in, n_out = torchscript_arity(module)
    inputs = [TensorSpec(f"input_{i}", None, None) for i in range(n_in)]
    outputs = [TensorSpec(f"output_{i}", None, None) for i in range(n_out)]
    if input_shape is not None and inputs:
        inputs[0] = TensorSpec("input_0", list(input_shape), None)
    if output_shape is not None and outputs:
        outputs[0] = TensorSpec("output_0", list(output_shape), None)
    return ModelSignature(format="torchscript", inputs=inputs, outputs=outputs)


def torchscript_arity(module: torch.jit.ScriptModule) -> tuple[int, int]:
    """Number of tensor arguments (without ``self``) and of returned values."""
    forward: Any = module.forward  # a torch.jit ScriptMethod; its stub types it as a Callable
    schema = forward.schema
    n_in = sum(1 for arg in schema.arguments if arg.name != "self")
    n_out = 1
    if schema.returns:
        ret_type = schema.returns[0].type
        if ret_type.kind() == "TupleType":
            n_out = len(ret_type.elements())
    return n_in, n_out


def _ort_spec(arg: Any) -> TensorSpec:
    """TensorSpec of one ``onnxruntime.NodeArg``; symbolic dims become ``None``."""
    shape = arg.shape
    dims: Shape | None = (
        None if shape is None else [d if isinstance(d, int) and d >= 0 else None for d in shape]
    )
    return TensorSpec(name=arg.name, shape=dims, dtype=ORT_DTYPES.get(arg.type, arg.type))


def _check_declared(
    specs: list[TensorSpec], declared: Sequence[int | None] | None, what: str
) -> None:
    """Raise when a declared shape cannot describe the model's first tensor."""
    if declared is None or not specs or specs[0].shape is None:
        return
    actual = specs[0].shape
    compatible = len(actual) == len(declared) and all(
        a is None or d is None or a == d for a, d in zip(actual, declared, strict=True)
    )
    if not compatible:
        raise InvalidModelFile(
            f"declared {what} {format_shape(list(declared))} does not match the model's "
            f"{specs[0].name!r} {format_shape(actual)}",
            details={what: list(declared), "model_shape": actual},
        )


def format_shape(shape: Sequence[int | None]) -> str:
    """``[None, 4]`` as Python prints it, independent of numpy scalar types."""
    return "[" + ", ".join("None" if d is None else str(int(d)) for d in shape) + "]"
