"""Tiny real models built locally, for tests, examples and benchmarks.

Nothing here is downloaded: every model is built from a seeded numpy random
state, so an ONNX MLP and a TorchScript MLP made with the same arguments
compute the same function and their outputs can be compared.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from stratalab.files import write_atomic

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Opset and IR version the sample ONNX models declare (supported by ORT >= 1.17).
ONNX_OPSET = 17
ONNX_IR_VERSION = 8


def mlp_weights(
    in_features: int = 4, hidden: int = 8, out: int = 3, *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded float32 weights of a two-layer MLP (``W`` stored as ``[out, in]``)."""
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(0, 0.5, (hidden, in_features)).astype(np.float32),
        "b1": rng.normal(0, 0.1, (hidden,)).astype(np.float32),
        "w2": rng.normal(0, 0.5, (out, hidden)).astype(np.float32),
        "b2": rng.normal(0, 0.1, (out,)).astype(np.float32),
    }


def make_mlp_onnx(
    path: str | os.PathLike[str],
    in_features: int = 4,
    hidden: int = 8,
    out: int = 3,
    *,
    seed: int = 0,
    batch: int | None = None,
) -> Path:
    """Write ``x[batch, in] -> Gemm -> Relu -> Gemm -> y[batch, out]`` built with ``onnx.helper``.

    ``batch=None`` makes the first dimension dynamic (named ``batch``); an int
    fixes it, which is how models that cannot be micro-batched look.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = mlp_weights(in_features, hidden, out, seed=seed)
    batch_dim: int | str = "batch" if batch is None else batch
    graph = helper.make_graph(
        nodes=[
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["a"]),
            helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], transB=1),
        ],
        name="mlp",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, in_features])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, out])],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in w.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="stratalab-samples",
    )
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    target = Path(path)
    target.write_bytes(model.SerializeToString())
    return target


def make_token_model_onnx(
    path: str | os.PathLike[str], vocab: int = 32, dim: int = 4, *, seed: int = 0
) -> Path:
    """Write a masked sum of token embeddings: ``(input_ids, attention_mask) -> [batch, dim]``.

    Two int64 inputs, the shape the ``text_tokens`` adapter produces.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    emb = rng.normal(0, 1, (vocab, dim)).astype(np.float32)
    graph = helper.make_graph(
        nodes=[
            helper.make_node("Gather", ["emb", "input_ids"], ["e"], axis=0),
            helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["m", "axis2"], ["m3"]),
            helper.make_node("Mul", ["e", "m3"], ["em"]),
            helper.make_node("ReduceSum", ["em", "axis1"], ["pooled"], keepdims=0),
        ],
        name="tokens",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs=[helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", dim])],
        initializer=[
            numpy_helper.from_array(emb, name="emb"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), name="axis2"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), name="axis1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    target = Path(path)
    target.write_bytes(model.SerializeToString())
    return target


def make_mlp_torchscript(
    path: str | os.PathLike[str],
    in_features: int = 4,
    hidden: int = 8,
    out: int = 3,
    *,
    seed: int = 0,
    method: Literal["script", "trace"] = "script",
) -> Path:
    """Write the same MLP as :func:`make_mlp_onnx` as a TorchScript archive."""
    import torch

    module = _torch_mlp(in_features, hidden, out, seed=seed)
    if method == "script":
        compiled = torch.jit.script(module)
    else:
        compiled = torch.jit.trace(module, torch.zeros(2, in_features))
    target = Path(path)
    torch.jit.save(compiled, str(target))
    return target


def export_mlp_onnx_from_torch(
    path: str | os.PathLike[str],
    in_features: int = 4,
    hidden: int = 8,
    out: int = 3,
    *,
    seed: int = 0,
) -> Path:
    """Export the same MLP with ``torch.onnx.export``, as a user's training code would.

    ``dynamo=False`` uses the TorchScript-based exporter, which needs no extra
    package; the dynamo exporter needs ``onnxscript``, which is not a dependency.
    """
    import torch

    module = _torch_mlp(in_features, hidden, out, seed=seed)
    target = Path(path)
    torch.onnx.export(
        module,
        (torch.zeros(2, in_features),),
        str(target),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )
    return target


def write_artifact(store_root: str | os.PathLike[str], data: bytes) -> str:
    """Store ``data`` content-addressed under ``store_root``; return its sha256.

    Same layout the serving cache reads (``<root>/<sha[:2]>/<sha>``), written
    atomically: temp file, fsync, rename, so a reader never sees half a file.
    """
    digest = hashlib.sha256(data).hexdigest()
    target = Path(store_root) / digest[:2] / digest
    if target.exists():
        return digest
    write_atomic(target, data)
    return digest


@dataclass(frozen=True)
class SampleStore:
    """A content-addressed store holding the sample models, and their digests."""

    #: Store root (``<root>/<sha[:2]>/<sha>``).
    root: Path
    #: ONNX MLP 4 -> 8 -> 3 with a dynamic batch.
    mlp: str
    #: The same with the batch fixed to 1.
    mlp_fixed_batch: str
    #: The same weights exported by ``torch.onnx.export``.
    torch_onnx: str
    #: The same weights as TorchScript.
    torchscript: str
    #: The two-input token model.
    tokens: str

    def path(self, sha256: str) -> Path:
        """Where an artifact of this store lives."""
        return self.root / sha256[:2] / sha256


def build_sample_store(
    root: str | os.PathLike[str], build_dir: str | os.PathLike[str]
) -> SampleStore:
    """Build every sample model in ``build_dir`` and store them under ``root``."""
    build = Path(build_dir)
    build.mkdir(parents=True, exist_ok=True)

    def put(path: Path) -> str:
        return write_artifact(root, path.read_bytes())

    return SampleStore(
        root=Path(root),
        mlp=put(make_mlp_onnx(build / "mlp.onnx")),
        mlp_fixed_batch=put(make_mlp_onnx(build / "mlp_b1.onnx", batch=1)),
        torch_onnx=put(export_mlp_onnx_from_torch(build / "torch_mlp.onnx")),
        torchscript=put(make_mlp_torchscript(build / "mlp.pt")),
        tokens=put(make_token_model_onnx(build / "tokens.onnx")),
    )


def _torch_mlp(in_features: int, hidden: int, out: int, *, seed: int) -> torch.nn.Module:
    """An ``nn.Sequential`` holding :func:`mlp_weights`."""
    import torch

    w = mlp_weights(in_features, hidden, out, seed=seed)
    first = torch.nn.Linear(in_features, hidden)
    second = torch.nn.Linear(hidden, out)
    with torch.no_grad():
        first.weight.copy_(torch.from_numpy(w["w1"]))
        first.bias.copy_(torch.from_numpy(w["b1"]))
        second.weight.copy_(torch.from_numpy(w["w2"]))
        second.bias.copy_(torch.from_numpy(w["b2"]))
    return torch.nn.Sequential(first, torch.nn.ReLU(), second).eval()
