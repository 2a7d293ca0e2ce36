"""The training, checkpoint, evaluation and reservation actions, one method per route.

The coordinator owns one :class:`TrainingApi` (``coordinator.train``);
handlers call ``coordinator.train.<action>``, so ownership checks and views
live here and the handlers stay thin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from distributed import Client

from stratalab.errors import CannotPause, Conflict
from stratalab.scheduler.checkpoints import checkpoint_view
from stratalab.scheduler.db import Job
from stratalab.scheduler.evaluations import EvaluationService
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.reservations import reservation_view
from stratalab.scheduler.states import TERMINAL, JobState
from stratalab.scheduler.training import TRAINING_TYPE, TrainingService
from stratalab.scheduler.training_metrics import metrics_view, read_points
from stratalab.scheduler.training_schemas import (
    EvaluationCreate,
    PauseRequest,
    ReservationCreate,
    ResumeRequest,
    TrainingRequest,
)

OwnedJob = Callable[[Principal, str], Awaitable[Job]]
JobView = Callable[[Principal, str], Awaitable[dict[str, Any]]]


class TrainingApi:
    """Training lifecycle, metrics, checkpoints, evaluations and reservations."""

    def __init__(self, training: TrainingService, owned_job: OwnedJob, get_job: JobView) -> None:
        self.training = training
        self.db = training.db
        self._owned_job = owned_job
        self._get_job = get_job
        self.evaluations = EvaluationService(
            store=training.store,
            db=training.db,
            checkpoints=training.checkpoints,
            descriptor=training.specs.descriptor,
        )

    async def start(self, client: Client) -> None:
        """Start what runs in the background (evaluations interrupted by a stop)."""
        await self.evaluations.start(client)

    async def stop(self) -> None:
        """Stop background work."""
        await self.evaluations.stop()

    # ------------------------------------------------------------------ jobs
    async def submit(self, principal: Principal, req: TrainingRequest) -> dict[str, Any]:
        """``POST /training`` (and ``POST /jobs`` type ``training``)."""
        return await self.training.submit(principal, req)

    async def _training_job(self, principal: Principal, job_id: str) -> Job:
        job = await self._owned_job(principal, job_id)
        if job.type != TRAINING_TYPE:
            raise CannotPause(
                f"{job_id} is a {job.type} job; only training jobs pause and resume",
                details={"type": job.type},
            )
        return job

    async def pause(self, principal: Principal, job_id: str, req: PauseRequest) -> dict[str, Any]:
        """Ask a running training job to pause after its current round."""
        await self.training.pause(await self._training_job(principal, job_id), req)
        view = await self._get_job(principal, job_id)
        view["pause_requested"] = True
        return view

    async def resume(self, principal: Principal, job_id: str, req: ResumeRequest) -> dict[str, Any]:
        """Queue a paused job again from a checkpoint."""
        job = await self._owned_job(principal, job_id)
        if job.type != TRAINING_TYPE:
            raise Conflict(f"{job_id} is a {job.type} job; only training jobs resume")
        await self.training.resume(job, req)
        return await self._get_job(principal, job_id)

    async def metrics(self, principal: Principal, job_id: str, max_points: int) -> dict[str, Any]:
        """``GET /jobs/{id}/metrics``: the job's series, downsampled."""
        job = await self._owned_job(principal, job_id)
        await self.training.sink.flush()
        points = await self.db(read_points, self.training.store, job_id)
        out = metrics_view(job_id, points, max_points)
        out["status"] = job.state
        out["progress"] = job.progress
        return out

    async def metrics_since(
        self, principal: Principal, job_id: str, after_id: int
    ) -> tuple[dict[str, Any], bool]:
        """New points since ``after_id`` and whether the job has ended (for the SSE stream)."""
        job = await self._owned_job(principal, job_id)
        await self.training.sink.flush()
        points = await self.db(read_points, self.training.store, job_id, after_id)
        out = metrics_view(job_id, points, 0)
        out["status"] = job.state
        out["progress"] = job.progress
        return out, JobState(job.state) in TERMINAL

    # ----------------------------------------------------------- checkpoints
    async def checkpoints(
        self, principal: Principal, job_id: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of checkpoints (of one job, when given)."""
        if job_id is not None:
            await self._owned_job(principal, job_id)
        rows, total = await self.db(
            self.training.checkpoints.page, principal, job_id, offset, limit
        )
        return [checkpoint_view(c) for c in rows], total

    async def checkpoint(self, principal: Principal, checkpoint_id: str) -> dict[str, Any]:
        """One checkpoint."""
        return checkpoint_view(
            await self.db(self.training.checkpoints.get, principal, checkpoint_id)
        )

    # ----------------------------------------------------------- evaluations
    async def evaluate(self, principal: Principal, req: EvaluationCreate) -> dict[str, Any]:
        """Commit an evaluation and start it."""
        return await self.evaluations.create(principal, req)

    async def evaluation(self, principal: Principal, evaluation_id: str) -> dict[str, Any]:
        """One evaluation with its results so far."""
        return await self.db(self.evaluations.get, principal, evaluation_id)

    async def list_evaluations(
        self, principal: Principal, job_id: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of evaluations."""
        return await self.db(self.evaluations.page, principal, job_id, offset, limit)

    # ---------------------------------------------------------- reservations
    async def reserve(self, principal: Principal, req: ReservationCreate) -> dict[str, Any]:
        """Hold workers; lower-priority training on them is preempted at its next round."""
        t = self.training
        res = await self.db(t.reservations.create, principal, req, t.runner.workers, t.priority_on)
        t.wake()
        return reservation_view(res)

    async def reservations(
        self, principal: Principal, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of reservations."""
        rows, total = await self.db(self.training.reservations.page, principal, offset, limit)
        return [reservation_view(r) for r in rows], total

    async def cancel_reservation(self, principal: Principal, reservation_id: str) -> None:
        """Give the workers back."""
        t = self.training
        res = await self.db(t.reservations.get, principal, reservation_id)
        if res.status not in ("active", "claimed"):
            raise Conflict(f"reservation {res.id} is already {res.status}")
        await self.db(t.reservations.set_status, res.id, "cancelled")
        t.wake()
