"""Training routes: ``/training``, pause/resume, metrics, checkpoints, evaluations, reservations."""

from __future__ import annotations

import asyncio

from tornado import web

from stratalab.errors import BadRequest
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.jupyter_ext.sse import KEEPALIVE_S, SSEHandler
from stratalab.scheduler.schemas import CancelRequest
from stratalab.scheduler.training_schemas import (
    EvaluationCreate,
    PauseRequest,
    ReservationCreate,
    ResumeRequest,
    TrainingRequest,
)

_ID = r"[A-Za-z0-9_-]{1,64}"


class TrainingHandler(ApiHandler):
    """``POST /training``: DCP's shape of a training job."""

    async def post(self) -> None:
        """Accept a training job; committed before the 202."""
        out = await self.coordinator.train.submit(self.principal(), self.body(TrainingRequest))
        self.reply(out, 202, location=f"{self.request.path}/{out['job_id']}")


class TrainingJobHandler(ApiHandler):
    """``GET/DELETE /training/{id}``."""

    async def get(self, job_id: str) -> None:
        """The job with its progress and assigned devices."""
        self.reply(await self.coordinator.get_job(self.principal(), job_id))

    async def delete(self, job_id: str) -> None:
        """Cancel the training job."""
        req = self.body(CancelRequest, optional=True)
        self.reply(await self.coordinator.cancel(self.principal(), job_id, req.reason))


class PauseHandler(ApiHandler):
    """``POST /jobs/{id}/pause`` (and ``/training/{id}/pause``)."""

    async def post(self, job_id: str) -> None:
        """Pause after the current round (checkpoint first unless told otherwise)."""
        req = self.body(PauseRequest, optional=True)
        self.reply(await self.coordinator.train.pause(self.principal(), job_id, req), 202)


class ResumeHandler(ApiHandler):
    """``POST /jobs/{id}/resume`` (and ``/training/{id}/resume``)."""

    async def post(self, job_id: str) -> None:
        """Queue a paused job from a checkpoint (empty id: the latest good one)."""
        req = self.body(ResumeRequest, optional=True)
        self.reply(await self.coordinator.train.resume(self.principal(), job_id, req))


class MetricsHandler(ApiHandler):
    """``GET /jobs/{id}/metrics?max_points``."""

    async def get(self, job_id: str) -> None:
        """Per-round and per-worker series, downsampled to ``max_points`` (0: all)."""
        max_points = self.query_int("max_points", 0, lo=0, hi=100_000)
        self.reply(await self.coordinator.train.metrics(self.principal(), job_id, max_points))


class MetricsStreamHandler(SSEHandler):
    """``GET /jobs/{id}/metrics/stream?interval``: new points every ``interval`` seconds."""

    async def get(self, job_id: str) -> None:
        """Snapshots until the job ends or the client leaves."""
        raw = self.get_query_argument("interval", "5")
        try:
            interval = float(raw)
        except ValueError:
            raise BadRequest("interval must be a number", details={"field": "interval"}) from None
        if not 0.1 <= interval <= 60:
            raise BadRequest("interval must be between 0.1 and 60", details={"field": "interval"})
        train, p = self.coordinator.train, self.principal()
        snapshot, ended = await train.metrics_since(p, job_id, 0)
        self.start_stream()
        last = snapshot["last_id"]
        await self.send("metrics", snapshot, last)
        quiet = 0.0
        while not self.closed and not ended:
            await asyncio.sleep(interval)
            snapshot, ended = await train.metrics_since(p, job_id, last)
            if snapshot["last_id"] or ended:
                last = snapshot["last_id"] or last
                await self.send("metrics", snapshot, last)
                quiet = 0.0
            else:
                quiet += interval
                if quiet >= KEEPALIVE_S:
                    await self.keepalive()
                    quiet = 0.0
        if not self.closed:
            await self.send("end", {"status": snapshot["status"]})
        self.finish()


class JobCheckpointsHandler(ApiHandler):
    """``GET /jobs/{id}/checkpoints``."""

    async def get(self, job_id: str) -> None:
        """The job's checkpoints, newest first."""
        offset, size = self.page()
        items, total = await self.coordinator.train.checkpoints(
            self.principal(), job_id, offset, size
        )
        self.reply_page(items, total, offset, size)


class CheckpointsHandler(ApiHandler):
    """``GET /checkpoints?job_id=``."""

    async def get(self) -> None:
        """The caller's checkpoints."""
        offset, size = self.page()
        job_id = self.get_query_argument("job_id", None) or None
        items, total = await self.coordinator.train.checkpoints(
            self.principal(), job_id, offset, size
        )
        self.reply_page(items, total, offset, size)


class CheckpointHandler(ApiHandler):
    """``GET /checkpoints/{id}``."""

    async def get(self, checkpoint_id: str) -> None:
        """One checkpoint with its digest, size and write rate."""
        self.reply(await self.coordinator.train.checkpoint(self.principal(), checkpoint_id))


class EvaluationsHandler(ApiHandler):
    """``GET/POST /evaluations``."""

    async def get(self) -> None:
        """The caller's evaluations (``job_id`` filters)."""
        offset, size = self.page()
        job_id = self.get_query_argument("job_id", None) or None
        items, total = await self.coordinator.train.list_evaluations(
            self.principal(), job_id, offset, size
        )
        self.reply_page(items, total, offset, size)

    async def post(self) -> None:
        """Commit an evaluation and run its benchmarks on workers."""
        out = await self.coordinator.train.evaluate(self.principal(), self.body(EvaluationCreate))
        self.reply(out, 201, location=f"{self.request.path}/{out['id']}")


class EvaluationHandler(ApiHandler):
    """``GET /evaluations/{id}``."""

    async def get(self, evaluation_id: str) -> None:
        """One evaluation with per-benchmark results once they exist."""
        self.reply(await self.coordinator.train.evaluation(self.principal(), evaluation_id))


class ReservationsHandler(ApiHandler):
    """``GET/POST /reservations``."""

    async def get(self) -> None:
        """The caller's reservations."""
        offset, size = self.page()
        items, total = await self.coordinator.train.reservations(self.principal(), offset, size)
        self.reply_page(items, total, offset, size)

    async def post(self) -> None:
        """Hold workers until claimed or expired."""
        out = await self.coordinator.train.reserve(self.principal(), self.body(ReservationCreate))
        self.reply(out, 201, location=f"{self.request.path}/{out['id']}")


class ReservationHandler(ApiHandler):
    """``DELETE /reservations/{id}``."""

    async def delete(self, reservation_id: str) -> None:
        """Release a reservation's workers."""
        await self.coordinator.train.cancel_reservation(self.principal(), reservation_id)
        self.set_status(204)
        self.finish()


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The routes of this module."""
    jid = rf"(?P<job_id>{_ID})"
    return [
        (f"{prefix}/training", TrainingHandler),
        (f"{prefix}/training/{jid}", TrainingJobHandler),
        (f"{prefix}/training/{jid}/pause", PauseHandler),
        (f"{prefix}/training/{jid}/resume", ResumeHandler),
        (f"{prefix}/jobs/{jid}/pause", PauseHandler),
        (f"{prefix}/jobs/{jid}/resume", ResumeHandler),
        (f"{prefix}/jobs/{jid}/metrics", MetricsHandler),
        (f"{prefix}/jobs/{jid}/metrics/stream", MetricsStreamHandler),
        (f"{prefix}/jobs/{jid}/checkpoints", JobCheckpointsHandler),
        (f"{prefix}/checkpoints", CheckpointsHandler),
        (rf"{prefix}/checkpoints/(?P<checkpoint_id>{_ID})", CheckpointHandler),
        (f"{prefix}/evaluations", EvaluationsHandler),
        (rf"{prefix}/evaluations/(?P<evaluation_id>{_ID})", EvaluationHandler),
        (f"{prefix}/reservations", ReservationsHandler),
        (rf"{prefix}/reservations/(?P<reservation_id>{_ID})", ReservationHandler),
    ]
