"""numpy arrays to and from the REST tensor form ``{"data": [...], "shape": [...]}``."""

from __future__ import annotations

from typing import Any

import numpy as np


def encode(value: Any) -> Any:
    """Make an inference input JSON-ready: arrays become ``{"data", "shape"}``.

    Dicts (named inputs) and lists are walked; everything else is kept.
    """
    if isinstance(value, np.ndarray):
        return {"data": value.ravel().tolist(), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and any(isinstance(v, np.ndarray) for v in value):
        return [encode(v) for v in value]
    return value


def to_numpy(value: Any, dtype: Any = None) -> Any:
    """Turn tensors in a result back into numpy arrays.

    ``{"data", "shape"}`` becomes an array of that shape; a dict of them (named
    outputs) becomes a dict of arrays; plain lists become arrays.
    """
    if isinstance(value, dict):
        if "data" in value and "shape" in value:
            return np.asarray(value["data"], dtype=dtype or value.get("dtype")).reshape(
                value["shape"]
            )
        return {k: to_numpy(v, dtype) for k, v in value.items()}
    if isinstance(value, list):
        return np.asarray(value, dtype=dtype)
    return value
