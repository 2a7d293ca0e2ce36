"""Pre- and postprocessing adapters (pure numpy), looked up by name.

Importing this package registers the built-ins: preprocessing
``image_classification``, ``tabular``, ``text_tokens``, ``passthrough``;
postprocessing ``top_k_labels``, ``binary_classification``, ``regression``,
``passthrough``.
"""

from __future__ import annotations

from stratalab.kernels.adapters import postprocess, preprocess
from stratalab.kernels.adapters.base import (
    POSTPROCESSORS,
    PREPROCESSORS,
    Postprocessor,
    Preprocessor,
    get_postprocessor,
    get_preprocessor,
    register_postprocessor,
    register_preprocessor,
)

__all__ = [
    "POSTPROCESSORS",
    "PREPROCESSORS",
    "Postprocessor",
    "Preprocessor",
    "get_postprocessor",
    "get_preprocessor",
    "postprocess",
    "preprocess",
    "register_postprocessor",
    "register_preprocessor",
]
