"""Checkpoints: content-addressed, verified on read, and a corrupt one is skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stratalab.errors import NotFound
from stratalab.scheduler.artifacts import ArtifactStore
from stratalab.scheduler.checkpoints import CheckpointStore
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.store import Store, sqlite_url


@pytest.fixture
def checkpoints(tmp_path: Path) -> CheckpointStore:
    store = Store(sqlite_url(tmp_path))
    store.migrate()
    return CheckpointStore(store, ArtifactStore(tmp_path / "artifacts"))


def _save(ckpts: CheckpointStore, round: int) -> str:
    params = [np.full((4, 3), float(round), dtype=np.float32), np.arange(3, dtype=np.float32)]
    ckpt = ckpts.save(
        job_id="job_a",
        user_id="u",
        round=round,
        params=params,
        state={"round": round, "samples_seen": 100 * round},
        reason="round",
        metrics={},
    )
    assert ckpt.mb_per_s > 0 and len(ckpt.sha256) == 64
    return ckpt.id


def test_restore_gives_the_latest_checkpoint_bit_exactly(checkpoints: CheckpointStore) -> None:
    for r in (1, 2, 3):
        _save(checkpoints, r)
    restored = checkpoints.restore("job_a")
    assert restored is not None
    ckpt, params, state = restored
    assert ckpt.round == 3 and state["samples_seen"] == 300
    np.testing.assert_array_equal(params[0], np.full((4, 3), 3.0, dtype=np.float32))
    assert checkpoints.restore("job_other") is None


def test_a_corrupt_checkpoint_is_marked_and_resume_falls_back(
    checkpoints: CheckpointStore,
) -> None:
    first, second = _save(checkpoints, 1), _save(checkpoints, 2)
    latest = checkpoints.restore("job_a")
    assert latest is not None
    path = checkpoints.artifacts.path(latest[0].sha256)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit in the middle of the weights
    path.write_bytes(bytes(data))

    restored = checkpoints.restore("job_a")
    assert restored is not None and restored[0].id == first
    rows, total = checkpoints.page(_admin(), "job_a", 0, 10)
    status = {c.id: c.status for c in rows}
    assert total == 2 and status == {first: "ok", second: "corrupt"}
    # naming the corrupt one explicitly also falls back to the good one before it
    restored = checkpoints.restore("job_a", second)
    assert restored is not None and restored[0].id == first
    with pytest.raises(NotFound):
        checkpoints.restore("job_a", "ckpt_missing")


def _admin() -> Principal:
    return Principal(user_id="admin", scope="admin")
