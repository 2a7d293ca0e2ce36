"""A training state as self-verifying bytes: parameters plus the loop's JSON state.

Pause, preemption and resume happen between rounds, from checkpoints
(architecture decision 12), so a checkpoint must restore the global
parameters bit for bit and must never be silently wrong. The encoding is an
uncompressed ``.npz`` (``numpy.load`` opens it; no pickle anywhere):

* ``p0.npy`` ... ``p{N-1}.npy``: the parameters, in ``get_params`` order,
  dtype and byte order preserved;
* ``meta.json``: ``{"format", "version", "num_params", "state"}``, where
  ``state`` is whatever JSON-able dict the coordinator keeps (round,
  strategy and optimizer config, seed, metrics ...);
* the zip comment: the sha256 (hex) of every byte before it.

The trailing digest makes every truncation or flipped bit detectable, not
only those that land where zip's CRC-32 looks, and the members carry a fixed
timestamp, so equal states encode to equal bytes and share one
content-addressed artifact (architecture decision 5).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import struct
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stratalab.errors import ValidationFailed

__all__ = ["FORMAT", "VERSION", "CorruptCheckpoint", "decode_checkpoint", "encode_checkpoint"]

logger = logging.getLogger(__name__)

#: Value of ``meta.json``'s ``format``: tells a checkpoint from any other ``.npz``.
FORMAT = "stratalab.checkpoint"
#: Encoding version written; a reader refuses versions newer than it knows.
VERSION = 1

_META = "meta.json"
_PARAM = re.compile(r"^p(0|[1-9][0-9]*)\.npy$")
#: A fixed member timestamp (zip's epoch) so encoding is deterministic.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_DIGEST_LEN = 64  # hex sha256
_EOCD = b"PK\x05\x06"
_EOCD_LEN = 22  # end-of-central-directory record without its comment
_ZIP_MAGIC = b"PK\x03\x04"


class CorruptCheckpoint(ValidationFailed):
    """The bytes are not an intact checkpoint: truncated, altered, or not one at all."""


def encode_checkpoint(params: Sequence[np.ndarray], state: Mapping[str, Any]) -> bytes:
    """Encode parameters and the training loop's state as checkpoint bytes.

    Parameters
    ----------
    params
        Global parameters (``get_params`` order); any numeric or boolean dtype.
    state
        JSON-able loop state. numpy scalars are accepted and stored as plain
        numbers; NaN and infinity survive (a diverged loss is still recorded).

    Returns
    -------
    bytes
        The checkpoint; the same inputs always give the same bytes.

    Raises
    ------
    ValidationFailed
        If a parameter has an object dtype (it would need pickle) or the state
        is not JSON-able.
    """
    arrays = [np.asarray(p) for p in params]
    for index, array in enumerate(arrays):
        if array.dtype.hasobject:
            raise ValidationFailed(
                f"parameter {index} has dtype {array.dtype}; checkpoints hold numeric arrays only",
                details={"index": index, "dtype": str(array.dtype)},
            )
    meta = {"format": FORMAT, "version": VERSION, "num_params": len(arrays), "state": dict(state)}
    try:
        meta_bytes = json.dumps(meta, sort_keys=True, default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"checkpoint state is not JSON-serialisable: {exc}") from None

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, array in enumerate(arrays):
            # force_zip64 as numpy.savez does: members may exceed 4 GiB.
            with archive.open(_member(f"p{index}.npy"), "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, array, allow_pickle=False)
        archive.writestr(_member(_META), meta_bytes)
        archive.comment = b"\0" * _DIGEST_LEN  # reserve the space; replaced below
    body = buffer.getvalue()[:-_DIGEST_LEN]
    return body + hashlib.sha256(body).hexdigest().encode("ascii")


def decode_checkpoint(data: bytes) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Verify and decode checkpoint bytes from :func:`encode_checkpoint`.

    Parameters
    ----------
    data
        The checkpoint's bytes (``bytes``, ``bytearray`` or ``memoryview``).

    Returns
    -------
    tuple
        ``(params, state)``: the parameters, bit-identical to those encoded,
        and the state dict.

    Raises
    ------
    CorruptCheckpoint
        If the bytes are truncated, altered, not a checkpoint, miss a member,
        or hold a different number of parameters than they declare.
    """
    raw = bytes(data)
    _verify_digest(raw)
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = archive.namelist()
            if _META not in names:
                raise CorruptCheckpoint(f"checkpoint is missing its {_META} member")
            meta = _read_meta(archive.read(_META))
            params = _read_params(archive, names, int(meta["num_params"]))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        # The digest matched, so this is a well-formed file that is no checkpoint of ours
        # (or a bug in the encoder); say so without the parser's internals.
        logger.debug("undecodable checkpoint", exc_info=True)
        raise CorruptCheckpoint(
            f"checkpoint cannot be decoded: {type(exc).__name__}",
        ) from exc
    state = meta["state"]
    return params, state


def _member(name: str) -> zipfile.ZipInfo:
    """A stored (uncompressed) zip member with the fixed timestamp."""
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _json_default(value: Any) -> Any:
    """Let numpy scalars (a metric computed with numpy) into the JSON state."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _verify_digest(raw: bytes) -> None:
    """Check the layout and the trailing sha256 before any parser sees the bytes."""
    if not raw.startswith(_ZIP_MAGIC):
        raise CorruptCheckpoint(
            "not a checkpoint: the bytes are not an .npz archive", details={"size": len(raw)}
        )
    eocd_at = len(raw) - _DIGEST_LEN - _EOCD_LEN
    has_trailer = (
        eocd_at >= 0
        and raw[eocd_at : eocd_at + 4] == _EOCD
        and struct.unpack("<H", raw[eocd_at + 20 : eocd_at + 22])[0] == _DIGEST_LEN
    )
    if not has_trailer:
        raise CorruptCheckpoint(
            "checkpoint is truncated or has no checksum trailer", details={"size": len(raw)}
        )
    body, digest = raw[:-_DIGEST_LEN], raw[-_DIGEST_LEN:]
    if hashlib.sha256(body).hexdigest().encode("ascii") != digest:
        raise CorruptCheckpoint(
            "checkpoint is corrupted: its bytes do not match their sha256",
            details={"size": len(raw)},
        )


def _read_meta(blob: bytes) -> dict[str, Any]:
    """Parse and check ``meta.json``."""
    try:
        meta = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptCheckpoint(f"checkpoint's {_META} is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptCheckpoint(f"not a checkpoint: {_META} does not name the {FORMAT} format")
    version = meta.get("version")
    if not isinstance(version, int) or not 1 <= version <= VERSION:
        raise CorruptCheckpoint(
            f"checkpoint format version {version!r} is not one this version reads (1..{VERSION})",
            details={"version": version},
        )
    count = meta.get("num_params")
    if not isinstance(count, int) or count < 0 or not isinstance(meta.get("state"), dict):
        raise CorruptCheckpoint(f"checkpoint's {_META} lacks num_params or state")
    return meta


def _read_params(archive: zipfile.ZipFile, names: list[str], count: int) -> list[np.ndarray]:
    """Load ``p0..p{count-1}``, refusing missing or extra parameter members."""
    present = {name for name in names if _PARAM.match(name)}
    expected = {f"p{index}.npy" for index in range(count)}
    if present != expected:
        raise CorruptCheckpoint(
            f"checkpoint declares {count} parameters but holds {len(present)}",
            details={
                "num_params": count,
                "missing": sorted(expected - present),
                "unexpected": sorted(present - expected),
            },
        )
    params = []
    for index in range(count):
        with archive.open(f"p{index}.npy") as handle:
            params.append(np.lib.format.read_array(handle, allow_pickle=False))
    return params
