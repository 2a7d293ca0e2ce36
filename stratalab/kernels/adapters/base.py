"""Pre- and postprocessing adapters: the ABCs and the registry by name.

A model record names its adapters (``preprocessing="tabular"``,
``postprocessing="top_k_labels"``); the worker looks them up here. Adapters are
stateless and pure numpy, so they run the same on a CPU worker, a GPU worker
or in a unit test, and adding one is a subclass plus a decorator.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np

from stratalab.kernels.models.errors import UnknownAdapter
from stratalab.kernels.models.signature import ModelSignature

logger = logging.getLogger(__name__)

Params = Mapping[str, Any]


class Preprocessor(ABC):
    """Turns a business-format payload into the model's named input arrays."""

    #: Name used in the model record and the registry.
    name: ClassVar[str]

    @abstractmethod
    def __call__(
        self, payload: Any, signature: ModelSignature, params: Params
    ) -> dict[str, np.ndarray]:
        """Return arrays keyed by the signature's input names.

        Raises
        ------
        InvalidInput
            When the payload is not in the format this adapter consumes.
        """


class Postprocessor(ABC):
    """Turns the model's raw output arrays into a JSON-able business result."""

    #: Name used in the model record and the registry.
    name: ClassVar[str]

    @abstractmethod
    def __call__(
        self, outputs: Mapping[str, np.ndarray], signature: ModelSignature, params: Params
    ) -> Any:
        """Return a JSON-able result (``{"predictions": [...]}`` for the built-ins)."""


#: Preprocessor classes by name.
PREPROCESSORS: dict[str, type[Preprocessor]] = {}
#: Postprocessor classes by name.
POSTPROCESSORS: dict[str, type[Postprocessor]] = {}

_Pre = TypeVar("_Pre", bound=type[Preprocessor])
_Post = TypeVar("_Post", bound=type[Postprocessor])


def register_preprocessor(cls: _Pre) -> _Pre:
    """Class decorator adding a preprocessor to the registry under ``cls.name``."""
    PREPROCESSORS[cls.name] = cls
    return cls


def register_postprocessor(cls: _Post) -> _Post:
    """Class decorator adding a postprocessor to the registry under ``cls.name``."""
    POSTPROCESSORS[cls.name] = cls
    return cls


def get_preprocessor(name: str | None) -> Preprocessor:
    """The preprocessor called ``name``; ``None`` means ``passthrough``."""
    return _lookup(PREPROCESSORS, name or "passthrough", "preprocessing")()


def get_postprocessor(name: str | None) -> Postprocessor:
    """The postprocessor called ``name``; ``None`` means ``passthrough``."""
    return _lookup(POSTPROCESSORS, name or "passthrough", "postprocessing")()


def _lookup(registry: Mapping[str, Callable[[], Any]], name: str, kind: str) -> Any:
    """Registry entry or :class:`UnknownAdapter` listing the valid names."""
    try:
        return registry[name]
    except KeyError:
        raise UnknownAdapter(
            f"unknown {kind} adapter {name!r}; expected one of {sorted(registry)}",
            details={kind: name, "choices": sorted(registry)},
        ) from None
