"""Loaded models behind one small interface: numpy in, numpy out.

The serving plugin, batch shards and evaluation all run models through
:class:`LoadedModel`, so the ONNX Runtime / TorchScript differences (providers,
devices, positional arguments, output naming) live here and nowhere else.
"""

from __future__ import annotations

import io
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from stratalab.kernels.models.errors import InvalidInput, InvalidModelFile
from stratalab.kernels.models.formats import ModelFormat, parse_format
from stratalab.kernels.models.signature import (
    ModelSignature,
    onnx_signature,
    torchscript_signature,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Exceptions ONNX Runtime raises (they derive from ``Exception`` directly).
ORT_ERRORS: tuple[type[Exception], ...] = (
    _ort_state.Fail,
    _ort_state.InvalidArgument,
    _ort_state.InvalidGraph,
    _ort_state.InvalidProtobuf,
    _ort_state.NoSuchFile,
    _ort_state.NoModel,
    _ort_state.NotImplemented,
    _ort_state.RuntimeException,
    _ort_state.EPFail,
)

Arrays = dict[str, np.ndarray]


class LoadedModel(ABC):
    """A model ready to run; thread-safe for concurrent :meth:`run` calls."""

    #: Names, shapes and dtypes of inputs and outputs.
    signature: ModelSignature

    @abstractmethod
    def run(self, inputs: Arrays) -> Arrays:
        """Run one forward pass; ``inputs`` are keyed by signature input names."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Approximate memory held by the model, for the cache's byte budget."""

    @property
    @abstractmethod
    def device(self) -> str:
        """``"cpu"`` or ``"cuda"``: where :meth:`run` computes."""


def make_session(
    source: bytes | str | os.PathLike[str], *, threads: int, prefer_gpu: bool
) -> ort.InferenceSession:
    """An ORT session with bounded threads and CUDA first when asked and present.

    ``intra_op_num_threads`` defaults to 1 because a Dask worker already runs
    one task per thread: letting ORT spawn a pool per session oversubscribes the
    cores and makes latency worse, not better.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    providers = ["CPUExecutionProvider"]
    if prefer_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    src: bytes | str = source if isinstance(source, bytes) else os.fspath(source)
    return ort.InferenceSession(src, sess_options=options, providers=providers)


class OnnxModel(LoadedModel):
    """An ONNX model in an ONNX Runtime ``InferenceSession``."""

    def __init__(
        self, source: bytes | str | os.PathLike[str], *, prefer_gpu: bool = False, threads: int = 1
    ) -> None:
        try:
            self._session = make_session(source, threads=threads, prefer_gpu=prefer_gpu)
        except ORT_ERRORS as exc:
            raise InvalidModelFile("ONNX Runtime cannot load the model") from exc
        self.signature = onnx_signature(self._session)
        self._output_names = [spec.name for spec in self.signature.outputs]
        self._nbytes = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
        providers = self._session.get_providers()
        self._device = "cuda" if providers and providers[0] == "CUDAExecutionProvider" else "cpu"

    def run(self, inputs: Arrays) -> Arrays:
        """Run the session; ORT's own argument errors become :class:`InvalidInput`."""
        feed = {name: np.ascontiguousarray(value) for name, value in inputs.items()}
        try:
            values = self._session.run(self._output_names, feed)
        except (_ort_state.InvalidArgument, _ort_state.Fail) as exc:
            # ORT's message names the input and the expected/actual dims; it
            # contains no server paths, so it is safe to show.
            raise InvalidInput(
                "the model rejected the input", details={"reason": str(exc)[:500]}
            ) from exc
        return {name: np.asarray(v) for name, v in zip(self._output_names, values, strict=True)}

    @property
    def nbytes(self) -> int:
        """Serialized size: ORT keeps initializers in memory at about that size."""
        return self._nbytes

    @property
    def device(self) -> str:
        """``"cuda"`` when the CUDA provider took the session, else ``"cpu"``."""
        return self._device


class TorchScriptModel(LoadedModel):
    """A TorchScript module run under ``torch.inference_mode``.

    Inputs are passed positionally in the order of ``input_0``, ``input_1``...;
    the names of ``forward``'s own arguments are accepted too. A tensor result
    becomes ``output_0``, a tuple ``output_<i>``, a dict keeps its keys.
    """

    def __init__(
        self, source: bytes | str | os.PathLike[str], *, prefer_gpu: bool = False, threads: int = 1
    ) -> None:
        import torch

        # ``threads`` is not applied: torch's intra-op pool is process-global
        # (``torch.set_num_threads``) and would change every task on the worker;
        # Dask's nanny already pins OMP/MKL threads to one per worker process.
        del threads
        use_cuda = prefer_gpu and torch.cuda.is_available()
        self._torch_device = torch.device("cuda" if use_cuda else "cpu")
        buffer: Any = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
        try:
            module = torch.jit.load(buffer, map_location=self._torch_device)
        except (RuntimeError, ValueError) as exc:
            raise InvalidModelFile("TorchScript cannot load the model") from exc
        module.eval()
        self._module: torch.jit.ScriptModule = module
        self.signature = torchscript_signature(module)
        schema_args = [a.name for a in module.forward.schema.arguments if a.name != "self"]
        self._arg_names = schema_args
        file_size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
        tensors = [*module.parameters(), *module.buffers()]
        param_bytes = sum(t.numel() * t.element_size() for t in tensors)
        self._nbytes = max(file_size, param_bytes)

    def run(self, inputs: Arrays) -> Arrays:
        """Call ``forward`` with the inputs in positional order."""
        import torch

        args = []
        for i, arg_name in enumerate(self._arg_names):
            value = inputs.get(f"input_{i}")
            if value is None:
                value = inputs.get(arg_name)
            if value is None:
                raise InvalidInput(
                    f"missing input 'input_{i}'", details={"expected": self.signature.input_names}
                )
            # from_numpy needs a writable array; wire arrays are read-only views.
            array = value if value.flags.writeable else value.copy()
            args.append(torch.from_numpy(np.ascontiguousarray(array)).to(self._torch_device))
        with torch.inference_mode():
            try:
                result = self._module(*args)
            except RuntimeError as exc:
                raise InvalidInput(
                    "the model rejected the input", details={"reason": str(exc)[:500]}
                ) from exc
        return _torch_outputs(result)

    @property
    def nbytes(self) -> int:
        """Parameter and buffer bytes, or the file size when larger."""
        return self._nbytes

    @property
    def device(self) -> str:
        """``"cuda"`` or ``"cpu"``."""
        return self._torch_device.type


def _torch_outputs(result: Any) -> Arrays:
    """Name a TorchScript result the way :class:`TorchScriptModel` documents."""
    if isinstance(result, dict):
        return {str(k): _to_numpy(v) for k, v in result.items()}
    if isinstance(result, (tuple, list)):
        return {f"output_{i}": _to_numpy(v) for i, v in enumerate(result)}
    return {"output_0": _to_numpy(result)}


def _to_numpy(value: Any) -> np.ndarray:
    """A CPU numpy copy of a tensor (or of a Python number)."""
    import torch

    if isinstance(value, torch.Tensor):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)


def load_model(
    path: str | os.PathLike[str],
    fmt: ModelFormat | str,
    *,
    prefer_gpu: bool = False,
    threads: int = 1,
) -> LoadedModel:
    """Load the model file at ``path``.

    Parameters
    ----------
    path:
        A local file (the cache resolves content-addressed paths first).
    fmt:
        ``"onnx"`` or ``"torchscript"``.
    prefer_gpu:
        Use CUDA when this process can see a GPU; otherwise CPU, silently, so a
        request that prefers a GPU still succeeds on a CPU-only cluster.
    threads:
        ORT intra-op threads for this session.
    """
    model_format = parse_format(str(fmt))
    if model_format == "onnx":
        return OnnxModel(path, prefer_gpu=prefer_gpu, threads=threads)
    return TorchScriptModel(path, prefer_gpu=prefer_gpu, threads=threads)


def load_model_bytes(
    data: bytes, fmt: ModelFormat | str, *, prefer_gpu: bool = False, threads: int = 1
) -> LoadedModel:
    """Like :func:`load_model`, from bytes already in memory (verified by the caller)."""
    model_format = parse_format(str(fmt))
    if model_format == "onnx":
        return OnnxModel(data, prefer_gpu=prefer_gpu, threads=threads)
    return TorchScriptModel(data, prefer_gpu=prefer_gpu, threads=threads)


def resolve_device(fmt: ModelFormat | str | None, *, prefer_gpu: bool) -> str:
    """The device a model of ``fmt`` (``None``: either format) would load on here.

    Cheap (no model is loaded), so the cache can key entries by device and a
    GPU-preferring request on a CPU-only worker reuses the CPU copy.
    """
    if not prefer_gpu:
        return "cpu"
    model_format = None if fmt is None else parse_format(str(fmt))
    if model_format in (None, "onnx") and "CUDAExecutionProvider" in ort.get_available_providers():
        return "cuda"
    if model_format == "onnx":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
