"""The serving RPC's message conventions, shared by the worker and its callers.

Operations are registered on the worker's own Dask server (decision 11), so
messages are Dask messages: dicts packed with msgpack, where ``bytes`` travel
as binary. Arrays use the wire form of :mod:`stratalab.kernels.models.tensors`.

A handler that fails with a :class:`~stratalab.errors.StrataLabError` replies
``{"error": {"type", "code", "message", "details"}}`` instead of raising:
Dask would log every client mistake as an "Exception while handling op" with a
traceback, and pickle the exception across. The caller's helper turns the
reply back into the same exception class. Anything else (a bug) is left to
Dask, which logs it and re-raises it at the caller.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

import stratalab.kernels.models.errors  # noqa: F401 - defines subclasses _error_class finds
from stratalab.errors import StrataLabError
from stratalab.kernels.models.tensors import decode_array, encode_array, is_wire_array

logger = logging.getLogger(__name__)

#: Handler names on the worker.
OP_INFER = "stratalab_infer"
OP_MODELS = "stratalab_models"
OP_UNLOAD = "stratalab_unload"
OP_LOAD = "stratalab_load"

__all__ = [
    "OP_INFER",
    "OP_LOAD",
    "OP_MODELS",
    "OP_UNLOAD",
    "decode_outputs",
    "encode_inputs",
    "error_reply",
    "raise_for_reply",
]


def error_reply(exc: StrataLabError) -> dict[str, Any]:
    """The reply for a caller-facing error."""
    return {
        "error": {
            "type": type(exc).__name__,
            "code": exc.code,
            "message": exc.message,
            "details": exc.details,
        }
    }


def raise_for_reply(reply: Any) -> dict[str, Any]:
    """Return ``reply`` or raise the error it carries, as its original class."""
    if not isinstance(reply, dict):
        raise StrataLabError("malformed reply from worker")
    error = reply.get("error")
    if error is None:
        return reply
    cls = _error_class(str(error.get("type", "")), str(error.get("code", "")))
    message = str(error.get("message", "worker error"))
    details = decode_outputs(error.get("details"))
    try:
        exc = cls(message, details=details)
    except TypeError:  # a subclass with extra required arguments
        exc = StrataLabError(message, details=details)
    raise exc


def encode_inputs(value: Any) -> Any:
    """``value`` with every numpy array replaced by its wire form."""
    if isinstance(value, np.ndarray):
        return encode_array(value)
    if isinstance(value, dict) and not is_wire_array(value):
        return {k: encode_inputs(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and any(isinstance(v, np.ndarray) for v in value):
        return [encode_inputs(v) for v in value]
    return value


def decode_outputs(value: Any) -> Any:
    """``value`` with wire-form arrays as numpy arrays and tuples as lists.

    Dask unpacks msgpack arrays as tuples; JSON-shaped results (adapter
    output, raw ``{"data", "shape"}``) read more naturally as lists.
    """
    if is_wire_array(value):
        return decode_array(value, name="output")
    if isinstance(value, dict):
        return {k: decode_outputs(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [decode_outputs(v) for v in value]
    return value


def _error_class(name: str, code: str) -> type[StrataLabError]:
    """The StrataLabError subclass called ``name``; else the first one with ``code``.

    Only subclasses of StrataLabError are considered, so a reply can never make
    the caller instantiate an arbitrary class.
    """
    by_code: type[StrataLabError] | None = None
    stack: list[type[StrataLabError]] = [StrataLabError]
    while stack:
        cls = stack.pop()
        if cls.__name__ == name:
            return cls
        if by_code is None and cls.code == code and cls is not StrataLabError:
            by_code = cls
        stack.extend(cls.__subclasses__())
    return by_code or StrataLabError
