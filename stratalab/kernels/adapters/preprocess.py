"""Built-in preprocessors: business payloads in, named model inputs out."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stratalab.kernels.adapters.base import Params, Preprocessor, register_preprocessor
from stratalab.kernels.adapters.numeric import normalize_images, pad_tokens
from stratalab.kernels.models.errors import InvalidInput
from stratalab.kernels.models.signature import ModelSignature
from stratalab.kernels.models.tensors import is_wire_array, to_array

logger = logging.getLogger(__name__)

#: ImageNet statistics, the usual defaults for pretrained vision models.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _first_input(signature: ModelSignature) -> str:
    """Name of the model's first input, or an error for an input-less model."""
    if not signature.inputs:
        raise InvalidInput("the model declares no inputs")
    return signature.inputs[0].name


def _is_tensor(value: Any) -> bool:
    """True for a single tensor in any accepted form (not a name -> tensor map)."""
    return (
        isinstance(value, (np.ndarray, list, tuple))
        or is_wire_array(value)
        or (isinstance(value, dict) and ("data" in value or "b64" in value))
    )


@register_preprocessor
class Passthrough(Preprocessor):
    """Raw tensors: ``{"data", "shape"}``, wire arrays, nested lists, or a name -> tensor map.

    An unnamed tensor goes to the model's only input; a model with several
    inputs needs a map keyed by input names.
    """

    name = "passthrough"

    def __call__(
        self, payload: Any, signature: ModelSignature, params: Params
    ) -> dict[str, np.ndarray]:
        """Decode each tensor; names and shapes are checked later by ``check_inputs``."""
        if _is_tensor(payload):
            if len(signature.inputs) > 1:
                raise InvalidInput(
                    f"the model has {len(signature.inputs)} inputs; send an object keyed "
                    f"by input name {signature.input_names}"
                )
            name = _first_input(signature)
            return {name: to_array(payload, name=f"input {name!r}")}
        if isinstance(payload, Mapping):
            return {str(k): to_array(v, name=f"input {k!r}") for k, v in payload.items()}
        raise InvalidInput("input must be a tensor or an object keyed by input name")


@register_preprocessor
class ImageClassification(Preprocessor):
    """HWC (one image) or NHWC (several) pixels to normalised NCHW float32.

    Params: ``mean`` and ``std`` per channel (ImageNet by default). Integer
    pixels are 0-255, float pixels 0-1. The payload may be the pixels or
    ``{"image": ...}`` / ``{"images": ...}``.
    """

    name = "image_classification"

    def __call__(
        self, payload: Any, signature: ModelSignature, params: Params
    ) -> dict[str, np.ndarray]:
        """Normalise and transpose to channels-first."""
        if isinstance(payload, Mapping) and not _is_tensor(payload):
            payload = payload.get("images", payload.get("image"))
            if payload is None:
                raise InvalidInput("image payload needs an 'image' or 'images' field")
        pixels = to_array(payload, name="image")
        if pixels.ndim == 2:  # one grayscale image
            pixels = pixels[None, :, :, None]
        elif pixels.ndim == 3:  # one HWC image
            pixels = pixels[None]
        if pixels.ndim != 4:
            raise InvalidInput(
                f"image must be [H, W, C] or [N, H, W, C], got {pixels.ndim} dimensions"
            )
        channels = pixels.shape[-1]
        mean = list(params.get("mean", IMAGENET_MEAN[:channels] if channels <= 3 else [0.0]))
        std = list(params.get("std", IMAGENET_STD[:channels] if channels <= 3 else [1.0]))
        for label, stats in (("mean", mean), ("std", std)):
            if len(stats) not in (1, channels):
                raise InvalidInput(
                    f"{label} has {len(stats)} values for {channels}-channel images",
                    details={label: stats, "channels": channels},
                )
        if any(s == 0 for s in std):
            raise InvalidInput("std must not contain zeros")
        return {_first_input(signature): normalize_images(pixels, mean, std)}


@register_preprocessor
class Tabular(Preprocessor):
    """Rows (list of dicts, one dict, or a 2-D list) to a float32 ``[rows, columns]`` matrix.

    Params: ``columns``, the feature order the model was trained with; without
    it, dict rows use the first row's key order. ``fill_value`` replaces
    missing or null cells (default: missing cells are an error).
    """

    name = "tabular"

    def __call__(
        self, payload: Any, signature: ModelSignature, params: Params
    ) -> dict[str, np.ndarray]:
        """Order the columns and build the matrix, naming the bad cell on error."""
        if isinstance(payload, Mapping) and "rows" in payload:
            payload = payload["rows"]
        if isinstance(payload, Mapping):
            payload = [payload]
        if not isinstance(payload, (list, tuple)) or not payload:
            raise InvalidInput("tabular input must be a non-empty list of rows")
        fill = params.get("fill_value")
        if all(isinstance(row, Mapping) for row in payload):
            columns = list(params.get("columns") or list(payload[0].keys()))
            matrix = [
                [_cell(row, col, i, fill) for col in columns] for i, row in enumerate(payload)
            ]
        elif all(isinstance(row, (list, tuple)) for row in payload):
            width = len(payload[0])
            for i, row in enumerate(payload):
                if len(row) != width:
                    raise InvalidInput(
                        f"row {i} has {len(row)} values, row 0 has {width}",
                        details={"row": i},
                    )
            matrix = [
                [_number(v, f"row {i} column {j}", fill) for j, v in enumerate(row)]
                for i, row in enumerate(payload)
            ]
        else:
            raise InvalidInput("tabular rows must all be objects or all be lists")
        return {_first_input(signature): np.asarray(matrix, dtype=np.float32)}


def _cell(row: Mapping[str, Any], column: str, index: int, fill: Any) -> float:
    """One cell of a dict row, with a message naming the row and column."""
    if column not in row:
        if fill is None:
            raise InvalidInput(
                f"row {index} is missing column {column!r}",
                details={"row": index, "column": column},
            )
        return float(fill)
    return _number(row[column], f"row {index} column {column!r}", fill)


def _number(value: Any, where: str, fill: Any) -> float:
    """A numeric cell as float; ``None`` becomes ``fill_value`` when one is set."""
    if value is None and fill is not None:
        return float(fill)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise InvalidInput(f"{where} is not a number: {value!r}"[:200], details={"cell": where})
    return float(value)


@register_preprocessor
class TextTokens(Preprocessor):
    """Token ids to int64 ``[batch, max_len]`` ids, plus a mask for two-input models.

    The payload is one sequence (``[5, 9, 2]``), several (``[[5, 9], [7]]``), or
    ``{"input_ids": ...}`` / ``{"tokens": ...}``. Params: ``max_len`` (pad or
    truncate to it; default the model's fixed sequence length, else the longest
    sequence) and ``pad_id`` (default 0). When the model has a second input it
    receives the attention mask.
    """

    name = "text_tokens"

    def __call__(
        self, payload: Any, signature: ModelSignature, params: Params
    ) -> dict[str, np.ndarray]:
        """Pad the batch and build the mask."""
        if isinstance(payload, Mapping):
            payload = payload.get("input_ids", payload.get("tokens"))
        if not isinstance(payload, (list, tuple)) or not payload:
            raise InvalidInput("text_tokens input must be a non-empty list of token ids")
        sequences: list[Sequence[Any]] = (
            [payload] if not isinstance(payload[0], (list, tuple)) else list(payload)
        )
        for i, seq in enumerate(sequences):
            for j, token in enumerate(seq):
                if isinstance(token, bool) or not isinstance(token, (int, np.integer)) or token < 0:
                    raise InvalidInput(
                        f"token {j} of sequence {i} is not a non-negative integer: {token!r}"[:200],
                        details={"sequence": i, "position": j},
                    )
        max_len = _max_len(signature, params, sequences)
        ids, mask = pad_tokens(sequences, max_len, int(params.get("pad_id", 0)))
        names = signature.input_names
        if not names:
            raise InvalidInput("the model declares no inputs")
        result = {names[0]: ids}
        if len(names) >= 2:
            mask_dtype = signature.inputs[1].dtype or "int64"
            result[names[1]] = mask.astype(mask_dtype)
        return result


def _max_len(signature: ModelSignature, params: Params, sequences: list[Sequence[Any]]) -> int:
    """``max_len`` param, else a fixed sequence dim of the model, else the longest sequence."""
    if params.get("max_len") is not None:
        value = int(params["max_len"])
        if value < 1:
            raise InvalidInput("max_len must be at least 1")
        return value
    shape = signature.inputs[0].shape if signature.inputs else None
    if shape is not None and len(shape) == 2 and shape[1] is not None:
        return int(shape[1])
    return max([1, *(len(s) for s in sequences)])
