"""Benchmarks: measured runs of the serving path and of training, kept as jobs.

``POST /benchmarks`` checks the request (the model or dataset is the
caller's, the input fits the model, a GPU exists for ``gpu-training``),
commits a job of type ``benchmark`` (spec = the request) and answers 202. The
run is a background task on the coordinator's event loop; its figures go to
the job's ``result`` (``summary`` and ``steps``) after every step, and its
``progress`` says how far it is, so ``GET /benchmarks/{id}`` and
``GET /jobs/{id}`` show a run as it goes and after a restart.

- ``inference`` and ``perf`` send requests through
  :meth:`InferenceService.sync`, the code path of ``POST /inference`` without
  the HTTP layer: validation, routing to a worker that holds the model,
  request records. Their requests belong to a project of type ``benchmark``,
  so ``GET /projects/{id}/analytics`` has them too.
- ``training`` and ``gpu-training`` submit one real training job
  (:meth:`TrainingService.submit`, nothing exported) and read its per-round
  metrics: samples/s, barrier latency, time to the target accuracy.

Runs take turns (one at a time), so two benchmarks never measure each other.
Cancel one with ``POST /jobs/{id}/cancel`` (its training job is cancelled too).

After a restart, a benchmark that was still queued runs; one that had
started is marked FAILED with the reason, and its training job cancelled:
figures taken across two server lifetimes would mean nothing, and a silent
re-run could double a load nobody asked for. ``POST /jobs/{id}/retry`` runs
it again as a new job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from stratalab.errors import Conflict, NotFound, NoTrainingDevices, StrataLabError
from stratalab.ids import as_utc, isoformat, new_id, utcnow
from stratalab.scheduler.benchmark_runs import BenchmarkRuns, training_request
from stratalab.scheduler.benchmark_schemas import BenchmarkCreate, TrainingBenchmark
from stratalab.scheduler.db import Job, JobEvent
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.serving_api import AcceptCall, ServingApi
from stratalab.scheduler.states import ACTIVE, TERMINAL, WAITING, JobState
from stratalab.scheduler.training import TrainingService
from stratalab.scheduler.views import job_out, timeline_entry

logger = logging.getLogger(__name__)

_S = JobState
#: the job type of a benchmark run.
BENCHMARK_TYPE = "benchmark"
#: why a run cut off by a stop failed.
RESTARTED = (
    "the server stopped while the benchmark was {state}; figures across two server "
    "lifetimes would mean nothing, so it is not resumed: retry it (POST /jobs/{{id}}/retry)"
)


class BenchmarkService:
    """Accepts, runs, reports and (after a restart) settles benchmark runs."""

    def __init__(
        self, serving: ServingApi, training: TrainingService, *, accept: AcceptCall
    ) -> None:
        self.serving = serving
        self.training = training
        self.store = training.store
        self.db = training.db
        self.runner = training.runner
        self.bus = training.bus
        self._accept = accept
        #: the measurements of each mode.
        self.runs = BenchmarkRuns(serving, training)
        #: held by the running benchmark; the others wait QUEUED for their turn.
        self._turn = asyncio.Lock()
        #: background run per job id.
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Run benchmarks that were queued at the last stop; fail those that had started."""
        jobs = await self.db(self.store.jobs_in_states, ACTIVE | WAITING)
        mine = [j for j in jobs if j.type == BENCHMARK_TYPE]
        for job in sorted(mine, key=lambda j: (as_utc(j.created_at), j.id)):
            owner = Principal(user_id=job.user_id, scope="user")
            if JobState(job.state) in ACTIVE:
                await self._fail(job.id, RESTARTED.format(state=job.state))
                await self._clean_up(job.id, owner)
                continue
            if job.state == _S.PENDING.value:
                await self.runner.transition(job.id, _S.QUEUED, reason="queued after restart")
            self._launch(job.id, owner)

    async def stop(self) -> None:
        """Stop the runs; the store keeps them as they were (see :meth:`start`)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    # ---------------------------------------------------------------- accept
    async def create(self, principal: Principal, body: BenchmarkCreate) -> dict[str, Any]:
        """Check, commit and start a run (the 202 body)."""
        req = body.root
        model_id = None
        if isinstance(req, TrainingBenchmark):
            await self._check_training(principal, req)
        else:
            model = await self.serving.inference.model(principal, req.model_id)
            self.runs.payload(model, req)  # a bad input is a 422 now, not a failed run later
            model_id = model.id
        now = utcnow()
        job = Job(
            id=new_id("job"),
            user_id=principal.user_id,
            name=req.name,
            type=BENCHMARK_TYPE,
            state=_S.QUEUED.value,
            priority=5,
            created_at=now,
            queued_at=now,
            updated_at=now,
            spec=req.model_dump(mode="json"),
            resources={},
            metadata_={},
            max_retries=0,
            retry_count=0,
            attempt=0,
            model_id=model_id,
            progress={"percent_complete": 0.0},
        )
        await self._accept(job)
        self._launch(job.id, principal)
        return benchmark_view(job)

    async def retry(self, child: Job) -> dict[str, Any]:
        """``POST /jobs/{id}/retry`` of a benchmark: the same request as a new run."""
        child.project_id = None
        child.model_id = (child.spec or {}).get("model_id")
        child.progress = {"percent_complete": 0.0}
        await self._accept(child)
        self._launch(child.id, Principal(user_id=child.user_id, scope="user"))
        return {
            "job_id": child.id,
            "status": child.state,
            "message": "benchmark queued",
            "estimated_wait_seconds": None,
            "job": job_out(child),
        }

    async def _check_training(self, principal: Principal, req: TrainingBenchmark) -> None:
        if req.mode == "gpu-training" and not any(w.gpus for w in self.runner.workers.values()):
            raise NoTrainingDevices(
                "a gpu-training benchmark needs a worker with a GPU and no worker has one",
                details={"workers": len(self.runner.workers)},
            )
        await self.training.specs.build(principal, training_request("check", req))

    # ----------------------------------------------------------------- reads
    async def get(self, principal: Principal, benchmark_id: str) -> dict[str, Any]:
        """One run with its timeline, progress and figures."""
        job = await self.db(self.store.get_job, benchmark_id)
        if job is None or job.type != BENCHMARK_TYPE or not principal.may_see(job.user_id):
            raise NotFound(f"no benchmark {benchmark_id}", details={"benchmark_id": benchmark_id})
        return benchmark_view(job, await self.db(self.store.job_events, benchmark_id))

    async def page(
        self, principal: Principal, *, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the caller's runs, newest first (all users' for admins)."""
        rows, total = await self.db(
            self.store.list_jobs,
            user_id=principal.owner_filter(),
            types=[BENCHMARK_TYPE],
            order_by="-created_at",
            offset=offset,
            limit=limit,
        )
        return [benchmark_view(j) for j in rows], total

    # ------------------------------------------------------------------- run
    def _launch(self, job_id: str, principal: Principal) -> None:
        task = asyncio.ensure_future(self._run(job_id, principal))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    async def _run(self, job_id: str, principal: Principal) -> None:
        """Wait for the turn, then measure until done or cancelled (by the job routes)."""

        def cancelled(event: Any) -> bool:
            data = event.data
            return bool(data.get("job_id") == job_id and data.get("status") == _S.CANCELLED.value)

        with self.bus.subscribe(["jobs"], maxsize=4, accept=cancelled) as sub:
            async with self._turn:
                job = await self.db(self.store.get_job, job_id)
                if job is None or job.state != _S.QUEUED.value:
                    return  # cancelled while it waited
                work = asyncio.ensure_future(self._measure(job, principal))
                stop = asyncio.ensure_future(sub.get())
                try:
                    await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    if not work.done():
                        work.cancel()
                        with contextlib.suppress(BaseException):
                            await work
                if work.cancelled():
                    await self._clean_up(job_id, principal)
                elif work.exception() is not None:
                    logger.error("benchmark %s failed", job_id, exc_info=work.exception())
                    await self._fail(job_id, "INTERNAL_ERROR: the run failed; see the server log")
                    await self._clean_up(job_id, principal)

    async def _measure(self, job: Job, principal: Principal) -> None:
        req = BenchmarkCreate.model_validate(job.spec).root
        try:
            await self.runs.step(job.id, _S.SCHEDULING, "its turn came", started_at=utcnow())
            if isinstance(req, TrainingBenchmark):
                result = await self.runs.trained(job, principal, req)
            else:
                result = await self.runs.served(job, principal, req)
            await self._complete(job, result)
        except StrataLabError as exc:  # a Conflict too: then it was cancelled, and stays so
            await self._fail(job.id, f"{exc.code}: {exc.message}")
            await self._clean_up(job.id, principal)

    # --------------------------------------------------------------- helpers
    async def _complete(self, job: Job, result: dict[str, Any]) -> None:
        progress = {**(job.progress or {}), "percent_complete": 100.0}
        await self.runner.transition(
            job.id,
            _S.COMPLETED,
            reason="measured",
            ended_at=utcnow(),
            result=result,
            progress=progress,
        )

    async def _fail(self, job_id: str, reason: str) -> None:
        """FAILED with the reason, unless the run already ended (e.g. it was cancelled)."""
        with contextlib.suppress(Conflict, NotFound):
            await self.runner.transition(
                job_id, _S.FAILED, reason=reason, ended_at=utcnow(), error=reason
            )

    async def _clean_up(self, job_id: str, principal: Principal) -> None:
        """After a cancel or failure: cancel the training job, close the project."""
        job = await self.db(self.store.get_job, job_id)
        if job is None:
            return
        child_id = (job.progress or {}).get("training_job_id")
        child = await self.db(self.store.get_job, child_id) if child_id else None
        if child is not None and JobState(child.state) not in TERMINAL:
            with contextlib.suppress(Conflict, NotFound):
                await self.training.cancel(child, f"benchmark {job_id} ended {job.state}")
        if job.project_id is not None:
            with contextlib.suppress(Conflict, NotFound):
                await self.serving.projects.finish(principal, job.project_id, "cancelled")


def benchmark_view(job: Job, timeline: list[JobEvent] | None = None) -> dict[str, Any]:
    """A run as ``/benchmarks`` shows it."""
    spec, result = job.spec or {}, job.result or {}
    out: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "mode": spec.get("mode"),
        "status": job.state,
        "user_id": job.user_id,
        "created_at": isoformat(job.created_at),
        "started_at": isoformat(job.started_at),
        "ended_at": isoformat(job.ended_at),
        "request": spec,
        "progress": job.progress,
        "summary": result.get("summary"),
        "steps": result.get("steps", []),
        "training_job_id": (job.progress or {}).get("training_job_id"),
        "project_id": job.project_id,
        "model_id": job.model_id,
        "error": job.error,
        "poll_url": f"/stratalab/api/v1/benchmarks/{job.id}",
    }
    if timeline is not None:
        out["timeline"] = [timeline_entry(ev) for ev in timeline]
    return out
