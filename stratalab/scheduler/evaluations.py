"""Evaluations: a trained state measured on benchmarks, on the workers.

``POST /evaluations`` names a training job (its latest good checkpoint) or a
checkpoint, and benchmarks (a dataset, how many samples, which split). The
record is committed before the answer; each benchmark then runs as a Dask
task (``run_evaluation``) and its loss, accuracy, per-class precision and
recall and per-sample latency are stored. Unfinished evaluations run again
after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from distributed import Client

from stratalab.errors import NotFound, StrataLabError, ValidationFailed
from stratalab.ids import isoformat, new_id, utcnow
from stratalab.kernels.training.rounds import run_evaluation
from stratalab.scheduler.checkpoints import CheckpointStore
from stratalab.scheduler.db import Checkpoint, Dataset, Evaluation, Job
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.store import Store
from stratalab.scheduler.training_schemas import EvaluationCreate
from stratalab.scheduler.usage import UsageRecorder

logger = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]
DescriptorCall = Callable[[str], Awaitable[dict[str, Any]]]


class EvaluationService:
    """Accepts evaluations, runs their benchmarks on workers, reports them."""

    def __init__(
        self, *, store: Store, db: DbCall, checkpoints: CheckpointStore, descriptor: DescriptorCall
    ) -> None:
        self.store = store
        self.db = db
        self.checkpoints = checkpoints
        self.descriptor = descriptor
        self.client: Client | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: where each benchmark's measured work goes (the coordinator sets it).
        self.usage: UsageRecorder | None = None

    async def start(self, client: Client) -> None:
        """Run evaluations a stop interrupted."""
        self.client = client
        for ev in await self.db(self._unfinished):
            self._spawn(ev.id)

    async def stop(self) -> None:
        """Stop running evaluations (they run again on the next start)."""
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    def _spawn(self, evaluation_id: str) -> None:
        task = asyncio.ensure_future(self._run(evaluation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- accept
    async def create(self, principal: Principal, req: EvaluationCreate) -> dict[str, Any]:
        """Check the target and the datasets, commit, start; the 201 body."""
        ev = await self.db(self._create, principal, req)
        self._spawn(ev.id)
        return evaluation_view(ev)

    def _create(self, principal: Principal, req: EvaluationCreate) -> Evaluation:
        with self.store.session() as s:
            job_id = req.job_id
            if req.checkpoint_id is not None:
                ckpt = s.get(Checkpoint, req.checkpoint_id)
                if ckpt is None or not principal.may_see(ckpt.user_id):
                    raise NotFound(f"no checkpoint {req.checkpoint_id}")
                if job_id is not None and ckpt.job_id != job_id:
                    raise ValidationFailed(
                        f"checkpoint {ckpt.id} belongs to job {ckpt.job_id}, not {job_id}"
                    )
                job_id = ckpt.job_id
            job = s.get(Job, job_id)
            if job is None or not principal.may_see(job.user_id):
                raise NotFound(f"no job {job_id}")
            if job.type != "training":
                raise ValidationFailed(f"job {job.id} is a {job.type} job, not a training job")
            for b in req.benchmarks:
                ds = s.get(Dataset, b.dataset)
                if ds is None or ds.deleted_at is not None or not principal.may_see(ds.user_id):
                    raise NotFound(f"benchmark {b.name!r}: no dataset {b.dataset}")
            ev = Evaluation(
                id=new_id("eval"),
                user_id=principal.user_id,
                job_id=job_id,
                checkpoint_id=req.checkpoint_id,
                status="QUEUED",
                benchmarks=[b.model_dump() for b in req.benchmarks],
                results=[],
                created_at=utcnow(),
            )
            s.add(ev)
        return ev

    # ------------------------------------------------------------------- run
    async def _run(self, evaluation_id: str) -> None:
        ev = await self.db(self._get, evaluation_id)
        if ev is None:
            return
        await self.db(self._update, evaluation_id, status="RUNNING")
        try:
            restored = await self.db(
                self.checkpoints.restore, str(ev.job_id), ev.checkpoint_id or ""
            )
            if restored is None:
                raise ValidationFailed(f"job {ev.job_id} has no usable checkpoint yet")
            _, params, _ = restored
            job = await self.db(self.store.get_job, str(ev.job_id))
            assert job is not None
            results = []
            for bench in ev.benchmarks:
                results.append(await self._benchmark(bench, job, params))
                if self.usage is not None:  # billed to whoever asked for the evaluation
                    self.usage.work_done(
                        "evaluation",
                        job_id=job.id,
                        user_id=ev.user_id,
                        project_id=job.project_id,
                        worker=None,
                        result=results[-1],
                    )
                await self.db(self._update, evaluation_id, results=list(results))
            await self.db(self._update, evaluation_id, status="COMPLETED", ended_at=utcnow())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure ends the evaluation, with the reason
            reason = exc.message if isinstance(exc, StrataLabError) else f"{type(exc).__name__}"
            logger.warning("evaluation %s failed: %s", evaluation_id, exc)
            await self.db(
                self._update, evaluation_id, status="FAILED", error=reason, ended_at=utcnow()
            )

    async def _benchmark(self, bench: dict[str, Any], job: Job, params: Any) -> dict[str, Any]:
        assert self.client is not None
        parameters = bench.get("parameters") or {}
        spec = {
            "dataset": await self.descriptor(bench["dataset"]),
            "split": parameters.get("split", "validation"),
            "model_spec": job.spec["model_spec"],
            "params": params,
            "use_gpu": bool(job.spec["resources"].get("gpu")),
            "num_samples": bench.get("num_samples"),
            "batch_size": parameters.get("batch_size", 1024),
        }
        result: dict[str, Any] = await self.client.submit(run_evaluation, spec, pure=False)
        return {"name": bench["name"], "dataset": bench["dataset"], **result}

    # ----------------------------------------------------------------- store
    def _get(self, evaluation_id: str) -> Evaluation | None:
        with self.store.session() as s:
            return s.get(Evaluation, evaluation_id)

    def _update(self, evaluation_id: str, **values: Any) -> None:
        with self.store.session() as s:
            s.execute(sa.update(Evaluation).where(Evaluation.id == evaluation_id).values(**values))

    def _unfinished(self) -> list[Evaluation]:
        with self.store.session() as s:
            return list(
                s.scalars(sa.select(Evaluation).where(Evaluation.status.in_(("QUEUED", "RUNNING"))))
            )

    def get(self, principal: Principal, evaluation_id: str) -> dict[str, Any]:
        """One evaluation the caller may see."""
        ev = self._get(evaluation_id)
        if ev is None or not principal.may_see(ev.user_id):
            raise NotFound(f"no evaluation {evaluation_id}")
        return evaluation_view(ev)

    def page(
        self, principal: Principal, job_id: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The caller's evaluations, newest first."""
        query = sa.select(Evaluation)
        owner = principal.owner_filter()
        if owner is not None:
            query = query.where(Evaluation.user_id == owner)
        if job_id is not None:
            query = query.where(Evaluation.job_id == job_id)
        rows, total = self.store.page(query, (Evaluation.created_at.desc(),), offset, limit)
        return [evaluation_view(e) for e in rows], total


def evaluation_view(ev: Evaluation) -> dict[str, Any]:
    """An evaluation as the API shows it."""
    return {
        "id": ev.id,
        "job_id": ev.job_id,
        "checkpoint_id": ev.checkpoint_id,
        "status": ev.status,
        "benchmarks": ev.benchmarks,
        "results": ev.results,
        "error": ev.error,
        "created_at": isoformat(ev.created_at),
        "ended_at": isoformat(ev.ended_at),
    }
