"""Built-in postprocessors: raw model outputs in, ``{"predictions": ...}`` out.

Each reads the model's first output unless ``params["output"]`` names another,
and treats axis 0 as the batch: one prediction per input row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stratalab.kernels.adapters.base import Params, Postprocessor, register_postprocessor
from stratalab.kernels.adapters.numeric import sigmoid, softmax, top_k
from stratalab.kernels.models.errors import InvalidInput
from stratalab.kernels.models.signature import ModelSignature
from stratalab.kernels.models.tensors import raw_tensor

logger = logging.getLogger(__name__)


def _select(outputs: Mapping[str, np.ndarray], params: Params) -> np.ndarray:
    """The output an adapter reads: ``params["output"]`` or the first one."""
    if not outputs:
        raise InvalidInput("the model produced no outputs")
    name = params.get("output")
    if name is None:
        return np.asarray(next(iter(outputs.values())))
    if name not in outputs:
        raise InvalidInput(f"the model has no output {name!r}; it has {sorted(outputs)}")
    return np.asarray(outputs[name])


def _label(labels: Sequence[Any] | None, index: int) -> str:
    """Label for a class index; the index itself when labels are missing or short."""
    if labels is not None and 0 <= index < len(labels):
        return str(labels[index])
    return str(index)


@register_postprocessor
class Passthrough(Postprocessor):
    """The raw ``{"data", "shape"}`` tensor; one per output name for multi-output models."""

    name = "passthrough"

    def __call__(
        self, outputs: Mapping[str, np.ndarray], signature: ModelSignature, params: Params
    ) -> Any:
        """Flat data plus shape, the REST API's raw tensor format."""
        if len(outputs) == 1:
            return raw_tensor(next(iter(outputs.values())))
        return {name: raw_tensor(value) for name, value in outputs.items()}


@register_postprocessor
class TopKLabels(Postprocessor):
    """Softmax over class scores, then the ``k`` best labels per row.

    Params: ``k`` (default 5), ``labels`` (class names), ``softmax`` (default
    true; set false when the model already outputs probabilities).
    """

    name = "top_k_labels"

    def __call__(
        self, outputs: Mapping[str, np.ndarray], signature: ModelSignature, params: Params
    ) -> Any:
        """``{"predictions": [[{"label", "index", "score"}, ...], ...]}``, one list per row."""
        scores = _select(outputs, params)
        if scores.ndim == 1:
            scores = scores[None, :]
        if scores.ndim != 2:
            raise InvalidInput(
                f"top_k_labels needs [batch, classes] scores, got shape {list(scores.shape)}"
            )
        probs = softmax(scores) if params.get("softmax", True) else scores.astype(np.float64)
        indices, values = top_k(probs, int(params.get("k", 5)))
        labels = params.get("labels")
        return {
            "predictions": [
                [
                    {"label": _label(labels, int(i)), "index": int(i), "score": float(v)}
                    for i, v in zip(row_i, row_v, strict=True)
                ]
                for row_i, row_v in zip(indices, values, strict=True)
            ]
        }


@register_postprocessor
class BinaryClassification(Postprocessor):
    """Positive-class probability and a thresholded label per row.

    Accepts one logit per row (``[batch]`` or ``[batch, 1]``, through a sigmoid
    unless ``sigmoid`` is false) or two class scores (``[batch, 2]``, through a
    softmax). Params: ``threshold`` (0.5), ``labels`` (``[negative, positive]``).
    """

    name = "binary_classification"

    def __call__(
        self, outputs: Mapping[str, np.ndarray], signature: ModelSignature, params: Params
    ) -> Any:
        """``{"predictions": [{"label", "probability"}, ...]}``."""
        scores = _select(outputs, params)
        if scores.ndim == 0:
            scores = scores.reshape(1)
        if scores.ndim == 2 and scores.shape[1] == 2:
            positive = softmax(scores)[:, 1]
        elif scores.ndim == 1 or (scores.ndim == 2 and scores.shape[1] == 1):
            flat = scores.reshape(-1)
            positive = sigmoid(flat) if params.get("sigmoid", True) else flat.astype(np.float64)
        else:
            raise InvalidInput(
                "binary_classification needs [batch], [batch, 1] or [batch, 2] outputs, "
                f"got shape {list(scores.shape)}"
            )
        threshold = float(params.get("threshold", 0.5))
        labels = params.get("labels") or ["negative", "positive"]
        return {
            "predictions": [
                {"label": _label(labels, int(p >= threshold)), "probability": float(p)}
                for p in positive
            ]
        }


@register_postprocessor
class Regression(Postprocessor):
    """Numbers as plain floats: one per row, or a list per row for multi-target models."""

    name = "regression"

    def __call__(
        self, outputs: Mapping[str, np.ndarray], signature: ModelSignature, params: Params
    ) -> Any:
        """``{"predictions": [1.5, ...]}`` or ``[[1.5, 2.0], ...]``."""
        values = _select(outputs, params).astype(np.float64)
        if values.ndim == 0:
            return {"predictions": [float(values)]}
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        return {"predictions": values.tolist()}
