"""Training checkpoints: written atomically by content address, verified on read.

A checkpoint is the global parameters plus the loop's state (round, samples
seen, best loss, the strategy's settings and seed), encoded by
:mod:`stratalab.kernels.training.checkpoint` and stored in the artifact
store. Every write is timed, so ``checkpoint_throughput`` (MB/s) is a
measured number. A checkpoint whose bytes no longer hash to its digest, or
do not decode, is marked ``corrupt`` and resume falls back to the one before.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa

from stratalab.errors import NotFound, StrataLabError
from stratalab.ids import isoformat, new_id, utcnow
from stratalab.kernels.training.checkpoint import decode_checkpoint, encode_checkpoint
from stratalab.scheduler.artifacts import ArtifactStore
from stratalab.scheduler.db import Checkpoint
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.store import Store

logger = logging.getLogger(__name__)


class Written(NamedTuple):
    """A checkpoint's bytes on disk: digest, size, and seconds the write took."""

    sha256: str
    size: int
    seconds: float


#: A restored training state: its record, the parameters and the loop's state.
Restored = tuple[Checkpoint, list[np.ndarray], dict[str, Any]]


class CheckpointStore:
    """Saves, finds and restores checkpoints (blocking: call from a thread)."""

    def __init__(self, store: Store, artifacts: ArtifactStore) -> None:
        self.store = store
        self.artifacts = artifacts

    def write(self, params: list[np.ndarray], state: dict[str, Any]) -> Written:
        """Encode and store the bytes (timed): file work, kept off the store's thread."""
        data = encode_checkpoint(params, state)
        started = time.perf_counter()
        sha256 = self.artifacts.put(data)
        return Written(sha256, len(data), max(time.perf_counter() - started, 1e-9))

    def record(
        self,
        written: Written,
        *,
        job_id: str,
        user_id: str,
        round: int,
        reason: str,
        metrics: dict[str, Any],
    ) -> Checkpoint:
        """Insert the row of a written checkpoint."""
        ckpt = Checkpoint(
            id=new_id("ckpt"),
            job_id=job_id,
            user_id=user_id,
            round=round,
            sha256=written.sha256,
            size=written.size,
            write_s=written.seconds,
            mb_per_s=written.size / written.seconds / 1e6,
            status="ok",
            reason=reason,
            metrics=metrics,
            created_at=utcnow(),
        )
        with self.store.session() as s:
            s.add(ckpt)
        return ckpt

    def save(
        self,
        *,
        job_id: str,
        user_id: str,
        round: int,
        params: list[np.ndarray],
        state: dict[str, Any],
        reason: str,
        metrics: dict[str, Any],
    ) -> Checkpoint:
        """Write and record one checkpoint in one blocking call."""
        written = self.write(params, state)
        return self.record(
            written, job_id=job_id, user_id=user_id, round=round, reason=reason, metrics=metrics
        )

    def restore(self, job_id: str, checkpoint_id: str = "") -> Restored | None:
        """The named checkpoint, or the job's latest good one; falls back past corrupt ones.

        Returns None when the job has no usable checkpoint.
        """
        with self.store.session() as s:
            query = sa.select(Checkpoint).where(
                Checkpoint.job_id == job_id, Checkpoint.status == "ok"
            )
            if checkpoint_id:
                chosen = self.of_job(job_id, checkpoint_id)
                query = query.where(Checkpoint.round <= chosen.round)
            candidates = list(
                s.scalars(query.order_by(Checkpoint.round.desc(), Checkpoint.created_at.desc()))
            )
        for ckpt in candidates:
            try:
                params, state = decode_checkpoint(self.artifacts.read(ckpt.sha256))
            except StrataLabError as exc:
                logger.error("checkpoint %s of %s is unusable: %s", ckpt.id, job_id, exc)
                self.mark_corrupt(ckpt.id)
                continue
            return ckpt, params, state
        return None

    def of_job(self, job_id: str, checkpoint_id: str) -> Checkpoint:
        """A checkpoint of this job; :class:`NotFound` for any other id."""
        with self.store.session() as s:
            ckpt = s.get(Checkpoint, checkpoint_id)
        if ckpt is None or ckpt.job_id != job_id:
            raise NotFound(f"job {job_id} has no checkpoint {checkpoint_id}")
        return ckpt

    def mark_corrupt(self, checkpoint_id: str) -> None:
        """Never offer this checkpoint again."""
        with self.store.session() as s:
            s.execute(
                sa.update(Checkpoint).where(Checkpoint.id == checkpoint_id).values(status="corrupt")
            )

    def get(self, principal: Principal, checkpoint_id: str) -> Checkpoint:
        """One checkpoint the caller may see."""
        with self.store.session() as s:
            ckpt = s.get(Checkpoint, checkpoint_id)
        if ckpt is None or not principal.may_see(ckpt.user_id):
            raise NotFound(f"no checkpoint {checkpoint_id}")
        return ckpt

    def page(
        self, principal: Principal, job_id: str | None, offset: int, limit: int
    ) -> tuple[list[Checkpoint], int]:
        """The caller's checkpoints, newest first, optionally of one job."""
        query = sa.select(Checkpoint)
        owner = principal.owner_filter()
        if owner is not None:
            query = query.where(Checkpoint.user_id == owner)
        if job_id is not None:
            query = query.where(Checkpoint.job_id == job_id)
        order = (Checkpoint.created_at.desc(), Checkpoint.round.desc())
        return self.store.page(query, order, offset, limit)


def checkpoint_view(ckpt: Checkpoint) -> dict[str, Any]:
    """A checkpoint as the API shows it."""
    return {
        "id": ckpt.id,
        "job_id": ckpt.job_id,
        "round": ckpt.round,
        "sha256": ckpt.sha256,
        "size": ckpt.size,
        "write_seconds": round(ckpt.write_s, 6),
        "checkpoint_throughput": round(ckpt.mb_per_s, 3),
        "status": ckpt.status,
        "reason": ckpt.reason,
        "metrics": ckpt.metrics,
        "created_at": isoformat(ckpt.created_at),
    }
