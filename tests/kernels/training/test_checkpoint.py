"""Tests of ``stratalab.kernels.training.checkpoint``: bit-exact round trips, loud corruption."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

from stratalab.errors import ValidationFailed
from stratalab.kernels.training.checkpoint import (
    FORMAT,
    VERSION,
    CorruptCheckpoint,
    decode_checkpoint,
    encode_checkpoint,
)

pytestmark = pytest.mark.timeout(30)

STATE = {
    "round": 7,
    "strategy": {"sync_mode": "full_sync", "seed": 3},
    "optimizer": {"optimizer": "sgd", "lr": 0.01, "batch_size": 32},
    "seed": 42,
    "metrics": {"loss": 0.25, "accuracy": 0.91},
}


@pytest.fixture
def params() -> list[np.ndarray]:
    """Arrays with every property a round trip could lose: dtype, order, shape, odd values."""
    rng = np.random.default_rng(0)
    return [
        rng.standard_normal((16, 64)).astype(np.float32),
        np.array([np.nan, np.inf, -0.0, 1e-45], dtype=np.float32),
        np.asfortranarray(rng.standard_normal((3, 5))),
        np.arange(4, dtype=">i4"),
        np.array(12, dtype=np.int64),
        np.zeros((0, 3), dtype=np.float16),
        np.array([True, False]),
    ]


def seal(archive_bytes_with_placeholder: bytes) -> bytes:
    """Give a hand-made archive the trailing digest, as the encoder does."""
    body = archive_bytes_with_placeholder[:-64]
    return body + hashlib.sha256(body).hexdigest().encode("ascii")


def handmade(members: dict[str, bytes]) -> bytes:
    """A sealed zip holding exactly ``members``: valid bytes, possibly wrong content."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.comment = b"\0" * 64
    return seal(buffer.getvalue())


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array)
    return buffer.getvalue()


def meta(**fields: object) -> bytes:
    base = {"format": FORMAT, "version": VERSION, "num_params": 1, "state": {}}
    return json.dumps({**base, **fields}).encode()


def test_round_trip_is_bit_exact(params: list[np.ndarray]) -> None:
    # Execute
    decoded, state = decode_checkpoint(encode_checkpoint(params, STATE))

    # Assert
    assert state == STATE
    assert len(decoded) == len(params)
    for original, restored in zip(params, decoded, strict=True):
        assert restored.dtype == original.dtype
        assert restored.shape == original.shape
        assert restored.tobytes(order="A") == original.tobytes(order="A")
        assert restored.flags.f_contiguous == original.flags.f_contiguous


def test_encoding_is_deterministic_and_an_ordinary_npz(params: list[np.ndarray]) -> None:
    # Execute
    first = encode_checkpoint(params, STATE)
    second = encode_checkpoint([p.copy(order="K") for p in params], dict(STATE))

    # Assert: equal states give equal bytes (one content-addressed artifact) ...
    assert first == second
    # ... which numpy opens without pickle
    with np.load(io.BytesIO(first), allow_pickle=False) as npz:
        assert npz.files == [f"p{i}" for i in range(len(params))] + ["meta.json"]
        np.testing.assert_array_equal(npz["p0"], params[0])


def test_state_keeps_numpy_scalars_and_non_finite_metrics() -> None:
    # Execute
    _, state = decode_checkpoint(
        encode_checkpoint([], {"loss": float("nan"), "best": np.float32(0.5), "n": np.int64(3)})
    )

    # Assert
    assert np.isnan(state["loss"])
    assert state["best"] == 0.5 and state["n"] == 3


def test_refuses_what_it_cannot_store_without_pickle() -> None:
    # Execute / Assert
    with pytest.raises(ValidationFailed, match="numeric arrays"):
        encode_checkpoint([np.array([object()])], {})
    with pytest.raises(ValidationFailed, match="JSON"):
        encode_checkpoint([], {"when": object()})


def test_every_truncation_is_detected(params: list[np.ndarray]) -> None:
    # Prepare
    data = encode_checkpoint(params[:2], STATE)

    # Execute / Assert: every prefix, the empty one included
    for length in range(len(data)):
        with pytest.raises(CorruptCheckpoint):
            decode_checkpoint(data[:length])


def test_every_flipped_bit_is_detected(params: list[np.ndarray]) -> None:
    # Prepare
    data = encode_checkpoint(params[:2], {"round": 1})

    # Execute / Assert: one flipped bit anywhere, zip headers and digest included
    for position in range(len(data)):
        for bit in (0, 3, 7):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            with pytest.raises(CorruptCheckpoint):
                decode_checkpoint(bytes(flipped))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an .npz"),
        (b"garbage that is no checkpoint" * 10, "not an .npz"),
        (npy(np.arange(3)), "not an .npz"),
        (b"PK\x03\x04" + b"\0" * 200, "truncated"),
    ],
)
def test_garbage_is_refused(data: bytes, message: str) -> None:
    # Execute / Assert
    with pytest.raises(CorruptCheckpoint, match=message):
        decode_checkpoint(data)


def test_plain_npz_without_digest_is_refused() -> None:
    # Prepare
    buffer = io.BytesIO()
    np.savez(buffer, p0=np.arange(3))

    # Execute / Assert
    with pytest.raises(CorruptCheckpoint, match="truncated or has no checksum"):
        decode_checkpoint(buffer.getvalue())


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"p0.npy": npy(np.arange(3))}, "missing its meta.json"),
        ({"meta.json": b"{not json"}, "not valid JSON"),
        ({"meta.json": meta(format="other")}, "does not name"),
        ({"meta.json": meta(version=VERSION + 1)}, "version"),
        ({"meta.json": meta(state=[])}, "lacks num_params or state"),
        ({"meta.json": meta(num_params=2), "p0.npy": npy(np.arange(3))}, "declares 2"),
        ({"meta.json": meta(), "p1.npy": npy(np.arange(3))}, "declares 1"),
        ({"meta.json": meta(), "p0.npy": b"not an array"}, "cannot be decoded"),
        (
            {"meta.json": meta(), "p0.npy": npy(np.array([{"a": 1}], dtype=object))},
            "cannot be decoded",
        ),
    ],
)
def test_intact_bytes_with_wrong_content_are_refused(
    members: dict[str, bytes], message: str
) -> None:
    # Execute / Assert: the digest holds, so the content checks must catch these
    with pytest.raises(CorruptCheckpoint, match=message):
        decode_checkpoint(handmade(members))


def test_corrupt_checkpoint_is_a_validation_error() -> None:
    # Assert: the web layer maps it like any other ValidationFailed
    assert issubclass(CorruptCheckpoint, ValidationFailed)
