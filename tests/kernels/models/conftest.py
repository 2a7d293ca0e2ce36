"""Real tiny models, built once per session (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratalab.kernels.models import samples


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def mlp_onnx(model_dir: Path) -> Path:
    """x[batch, 4] -> y[batch, 3], built with onnx.helper."""
    return samples.make_mlp_onnx(model_dir / "mlp.onnx")


@pytest.fixture(scope="session")
def mlp_onnx_fixed_batch(model_dir: Path) -> Path:
    """Same MLP with the batch dimension fixed to 1."""
    return samples.make_mlp_onnx(model_dir / "mlp_b1.onnx", batch=1)


@pytest.fixture(scope="session")
def torch_onnx(model_dir: Path) -> Path:
    """Same weights, exported by torch.onnx.export."""
    return samples.export_mlp_onnx_from_torch(model_dir / "torch_mlp.onnx")


@pytest.fixture(scope="session")
def mlp_torchscript(model_dir: Path) -> Path:
    """Same weights, torch.jit.script + save."""
    return samples.make_mlp_torchscript(model_dir / "mlp_script.pt")


@pytest.fixture(scope="session")
def mlp_traced(model_dir: Path) -> Path:
    """Same weights, torch.jit.trace + save."""
    return samples.make_mlp_torchscript(model_dir / "mlp_trace.pt", method="trace")


@pytest.fixture(scope="session")
def token_onnx(model_dir: Path) -> Path:
    """(input_ids, attention_mask) -> pooled[batch, 4]."""
    return samples.make_token_model_onnx(model_dir / "tokens.onnx")
