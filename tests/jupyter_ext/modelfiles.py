"""Real model files for the API tests: built with onnx.helper, exported and scripted by torch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stratalab.kernels.models.samples import (
    export_mlp_onnx_from_torch,
    make_mlp_onnx,
    make_mlp_torchscript,
)


@dataclass(frozen=True)
class ModelFiles:
    """Paths of the test models (4 features in, 3 scores out)."""

    root: Path

    @property
    def onnx(self) -> Path:
        return self.root / "mlp.onnx"

    @property
    def torch_onnx(self) -> Path:
        return self.root / "mlp_torch.onnx"

    @property
    def torchscript(self) -> Path:
        return self.root / "mlp.pt"

    @property
    def fixed(self) -> Path:
        return self.root / "mlp_fixed.onnx"


def build(root: Path) -> ModelFiles:
    """Write every test model into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    make_mlp_onnx(root / "mlp.onnx", seed=1)
    make_mlp_onnx(root / "mlp_fixed.onnx", seed=2, batch=1)
    export_mlp_onnx_from_torch(root / "mlp_torch.onnx", seed=3)
    make_mlp_torchscript(root / "mlp.pt", seed=4)
    return ModelFiles(root)


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    """ONNX Runtime's own answer, the reference every test compares with."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: x.astype(np.float32)})[0])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tensor(x: np.ndarray) -> dict:
    """The REST raw tensor form."""
    return {"data": x.reshape(-1).tolist(), "shape": list(x.shape)}


def array(t: dict) -> np.ndarray:
    return np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
