"""The numeric core of the adapters, as plain functions on numpy arrays.

Kept apart from the adapter classes so the maths is tested on its own and can
be reused (evaluation metrics use the same softmax).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64 (no overflow for large logits)."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=axis, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function via ``tanh``, which never overflows."""
    x = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest scores per row, best first.

    Ties keep the lower index first (stable), so results are deterministic.
    """
    x = np.atleast_2d(np.asarray(scores))
    k = max(1, min(k, x.shape[-1]))
    order = np.argsort(-x, axis=-1, kind="stable")[:, :k]
    return order, np.take_along_axis(x, order, axis=-1)


def normalize_images(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``[N, H, W, C]`` images to normalised ``[N, C, H, W]`` float32.

    Integer pixels are taken as 0-255 and scaled to 0-1 first; float pixels are
    taken as already in 0-1. ``mean``/``std`` have one value per channel (or one
    for all channels).
    """
    x = np.asarray(images)
    scaled = x.astype(np.float32) / 255.0 if x.dtype.kind in "biu" else x.astype(np.float32)
    m = np.asarray(mean, dtype=np.float32).reshape(1, 1, 1, -1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 1, 1, -1)
    normalised = (scaled - m) / s
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))


def pad_tokens(
    sequences: Sequence[Sequence[int]], max_len: int, pad_id: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad (or truncate) token id sequences to ``[batch, max_len]`` int64.

    Returns the ids and an attention mask with 1 on real tokens, 0 on padding.
    """
    ids = np.full((len(sequences), max_len), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), max_len), dtype=np.int64)
    for row, seq in enumerate(sequences):
        n = min(len(seq), max_len)
        ids[row, :n] = np.asarray(seq[:n], dtype=np.int64)
        mask[row, :n] = 1
    return ids, mask
