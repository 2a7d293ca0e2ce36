"""Detect a model file's format from its content, never from its name.

An upload named ``model.onnx`` may be a TorchScript archive, a ``torch.save``
checkpoint, or random bytes. Deciding from the bytes lets the upload route
reject a bad file with a 422 before it is stored and shipped to workers, where
the failure would otherwise surface later as an opaque runtime error.
"""

from __future__ import annotations

import io
import logging
import zipfile
from typing import Literal, cast, get_args

from stratalab.kernels.models.errors import InvalidModelFile

logger = logging.getLogger(__name__)

#: Model formats the platform can load.
ModelFormat = Literal["onnx", "torchscript"]
#: The same, as a tuple for runtime checks.
MODEL_FORMATS: tuple[str, ...] = get_args(ModelFormat)


def parse_format(value: str) -> ModelFormat:
    """Return ``value`` as a :data:`ModelFormat`, or raise :class:`InvalidModelFile`."""
    if value not in MODEL_FORMATS:
        raise InvalidModelFile(
            f"unknown model format {value!r}; expected one of {list(MODEL_FORMATS)}",
            details={"format": value},
        )
    return cast(ModelFormat, value)


def detect_format(data: bytes, declared: str | None = None) -> ModelFormat:
    """Return the format of a serialized model by inspecting its bytes.

    Parameters
    ----------
    data:
        The whole model file.
    declared:
        The format the uploader claimed, if any. A claim that contradicts the
        content is an error rather than silently corrected, because the client
        is probably uploading the wrong file.

    Returns
    -------
    ``"torchscript"`` for a TorchScript zip archive, ``"onnx"`` for a protobuf
    ``ModelProto`` that passes ``onnx.checker.check_model``.

    Raises
    ------
    InvalidModelFile
        For empty, random or truncated bytes, a plain ``torch.save`` checkpoint,
        or a declared format that does not match the content.
    """
    expected = parse_format(declared) if declared is not None else None
    if not data:
        raise InvalidModelFile("model file is empty")
    if _is_zip(data):
        detected: ModelFormat = "torchscript"
        _check_torchscript_archive(data)
    else:
        detected = "onnx"
        _check_onnx(data)
    if expected is not None and expected != detected:
        raise InvalidModelFile(
            f"declared format {expected!r} does not match the file content, which is {detected!r}",
            details={"declared": expected, "detected": detected},
        )
    return detected


def _is_zip(data: bytes) -> bool:
    """True when ``data`` is a readable zip archive (central directory intact)."""
    return zipfile.is_zipfile(io.BytesIO(data))


def _check_torchscript_archive(data: bytes) -> None:
    """Accept a zip only if it has TorchScript's layout and intact members.

    ``torch.jit.save`` writes ``<root>/code/...``, ``<root>/constants.pkl`` and
    ``<root>/data.pkl``; ``torch.save`` writes only ``<root>/data.pkl``. The
    latter needs the model's Python class to unpickle, so it cannot be served
    and is refused with a message that says how to fix it.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidModelFile("model file is a damaged zip archive") from exc
    if bad_member is not None:
        raise InvalidModelFile(
            "model archive is corrupted (CRC mismatch)", details={"member": bad_member}
        )
    has_data = any(n == "data.pkl" or n.endswith("/data.pkl") for n in names)
    has_code = any(n.startswith("code/") or "/code/" in n for n in names)
    has_constants = any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in names)
    if has_data and (has_code or has_constants):
        return
    if has_data:
        raise InvalidModelFile(
            "file is a torch.save checkpoint, not TorchScript; export the model "
            "with torch.jit.script or torch.jit.trace and torch.jit.save"
        )
    raise InvalidModelFile("zip archive is neither a TorchScript model nor an ONNX model")


def _check_onnx(data: bytes) -> None:
    """Parse ``data`` as an ONNX ``ModelProto`` and run the ONNX checker on it."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidModelFile(
            "model file is neither a TorchScript archive nor a parseable ONNX model"
        ) from exc
    if not model.HasField("graph"):
        raise InvalidModelFile("ONNX model has no graph (random or truncated bytes?)")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        # The checker's message names the offending node/field and carries no
        # server internals, so it is useful to the uploader as is.
        raise InvalidModelFile(
            "ONNX model failed validation", details={"reason": str(exc).strip()[:500]}
        ) from exc
