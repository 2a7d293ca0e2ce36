"""Sync and async inference: validate here, run on a worker, record what it cost.

Input is checked against the model's signature and ``input_schema`` on the
coordinator, before it reaches a worker, so a wrong shape is a 422 naming the
expected shape, not a worker error. Tensors then travel to the worker as
bytes (the wire form), which is cheaper than JSON lists.

A sync request is not a job: it is answered now and leaves a request record.
An async request is a job (type ``inference``): committed before the 202,
run in the background, and re-run after a restart (inference is pure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from stratalab.errors import Conflict, NoDevices, StrataLabError
from stratalab.ids import isoformat, new_id, utcnow
from stratalab.kernels.adapters import get_postprocessor, get_preprocessor
from stratalab.kernels.models.signature import ModelSignature
from stratalab.kernels.models.validate import check_inputs, validate_payload
from stratalab.scheduler.config import CoordinatorConfig
from stratalab.scheduler.db import Job, Model
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.model_schemas import InferenceOptions, InferenceRequest
from stratalab.scheduler.projects import ProjectService
from stratalab.scheduler.records import RecordSink
from stratalab.scheduler.registry import ModelRegistry, signature_of
from stratalab.scheduler.runner import JobRunner
from stratalab.scheduler.serving import ServingRouter
from stratalab.scheduler.states import TERMINAL, JobState

logger = logging.getLogger(__name__)

_S = JobState
DbCall = Callable[..., Awaitable[Any]]
AcceptCall = Callable[[Job], Awaitable[None]]
#: job type of an async request.
ASYNC_TYPE = "inference"
#: how often a queued async request looks for a worker again.
WORKER_WAIT_S = 0.5


def raw_adapters(model: Model) -> bool:
    """True when the model's input is a plain tensor (no preprocessing adapter)."""
    return model.preprocessing in (None, "passthrough")


def raw_outputs(model: Model) -> bool:
    """True when the model answers with raw tensors (no postprocessing adapter)."""
    return model.postprocessing in (None, "passthrough")


class InferenceService:
    """``POST /inference`` (sync and async) and the async jobs' life."""

    def __init__(
        self,
        *,
        config: CoordinatorConfig,
        registry: ModelRegistry,
        router: ServingRouter,
        records: RecordSink,
        projects: ProjectService,
        runner: JobRunner,
        db: DbCall,
        accept: AcceptCall,
    ) -> None:
        self.config = config
        self.registry = registry
        self.router = router
        self.records = records
        self.projects = projects
        self.runner = runner
        self._db = db
        self._accept = accept
        self._signatures: dict[tuple[str, Any], ModelSignature] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ lookups
    async def model(self, principal: Principal, model_id: str) -> Model:
        """The caller's model, from memory when possible."""
        model = self.registry.cached(model_id)
        if model is not None and model.deleted_at is None and principal.may_see(model.user_id):
            return model
        return await self._db(self.registry.get, principal, model_id)

    def signature(self, model: Model) -> ModelSignature:
        """The model's signature, parsed once per version of the record."""
        key = (model.id, model.updated_at)
        sig = self._signatures.get(key)
        if sig is None:
            sig = self._signatures[key] = signature_of(model)
        return sig

    def prepare(self, model: Model, payload: Any) -> Any:
        """The input checked against the model: arrays, or the adapter's payload.

        Raises :class:`~stratalab.kernels.models.errors.InvalidInput` (422) naming
        the expected shape and dtype or the failing schema path.
        """
        validate_payload(payload, model.input_schema)  # the input as sent, like the worker
        if raw_adapters(model):
            sig = self.signature(model)
            return check_inputs(sig, get_preprocessor("passthrough")(payload, sig, {}))
        return payload

    def params(self, model: Model, params: dict[str, Any]) -> dict[str, Any]:
        """Adapter parameters: the model's labels unless the request names others."""
        if model.labels is not None and "labels" not in params:
            return {**params, "labels": model.labels}
        return params

    # ---------------------------------------------------------------- sync
    async def sync(
        self, principal: Principal, req: InferenceRequest, *, started: float | None = None
    ) -> dict[str, Any]:
        """Answer one request now."""
        t0 = time.perf_counter() if started is None else started
        arrived = time.time()
        model = await self.model(principal, req.model_id)
        if req.project_id is not None:
            await self.projects.require_active(principal, req.project_id)
        request_id = new_id("infer")
        out = await self._recorded(
            principal,
            model,
            project_id=req.project_id,
            request_id=request_id,
            kind="sync",
            call=self._call(model, req.input, req.params, req.options),
            arrived=arrived,
            t0=t0,
        )
        latency_ms = (time.perf_counter() - t0) * 1000.0
        return {
            "job_id": request_id,
            "status": "completed",
            "model_id": model.id,
            "result": out["result"],
            "latency_ms": round(latency_ms, 3),
            "compute_ms": round(float(out.get("compute_ms", 0.0)), 3),
            "worker_id": out["worker_id"],
            "device": out.get("device", "cpu"),
            "project_id": req.project_id,
        }

    async def _call(
        self, model: Model, payload: Any, params: dict[str, Any], options: Any
    ) -> dict[str, Any]:
        """Validate, send to a worker, and shape the result for the API."""
        inputs = self.prepare(model, payload)
        timeout = options.timeout / 1000.0 if options.timeout else self.config.inference_timeout_s
        reply = await self.router.infer(
            model.sha256,
            prefer_gpu=options.prefer_gpu,
            timeout=timeout,
            fmt=model.format,
            inputs=inputs,
            model_id=model.id,
            preprocessing=None if raw_adapters(model) else model.preprocessing,
            postprocessing=None if raw_outputs(model) else model.postprocessing,
            params=self.params(model, params),
        )
        result = reply["outputs"]
        if raw_outputs(model):
            result = get_postprocessor("passthrough")(result, self.signature(model), {})
        worker = self.router.live().get(str(reply.get("worker", "")))
        reply["result"] = result
        reply["worker_id"] = worker.id if worker else None
        reply["pool"] = ("gpu" if worker.gpus else "cpu") if worker else None
        return reply

    async def _recorded(
        self,
        principal: Principal,
        model: Model,
        *,
        project_id: str | None,
        request_id: str,
        kind: str,
        call: Awaitable[dict[str, Any]],
        arrived: float,
        t0: float,
    ) -> dict[str, Any]:
        """Await ``call`` and leave a request record, whether it succeeds or not."""
        out: dict[str, Any] | None = None
        exc: StrataLabError | None = None
        try:
            out = await call
            return out
        except StrataLabError as error:
            exc = error
            raise
        finally:
            self._record_one(principal, model, project_id, request_id, kind, arrived, t0, out, exc)

    def _record_one(  # noqa: PLR0917 - one record's columns, called from one place
        self,
        principal: Principal,
        model: Model,
        project_id: str | None,
        request_id: str,
        kind: str,
        arrived: float,
        t0: float,
        out: dict[str, Any] | None,
        exc: StrataLabError | None,
    ) -> None:
        self.records.add(
            ts=arrived,
            user_id=principal.user_id,
            project_id=project_id,
            model_id=model.id,
            request_id=request_id,
            kind=kind,
            error_code=exc.code if exc is not None else None,
            latency_ms=(time.perf_counter() - t0) * 1000.0,
            compute_ms=float((out or {}).get("compute_ms", 0.0)),
            items=1,
            worker=(out or {}).get("worker"),
            device=(out or {}).get("device"),
            pool=(out or {}).get("pool"),
        )

    # --------------------------------------------------------------- async
    async def submit(self, principal: Principal, req: InferenceRequest) -> dict[str, Any]:
        """Accept an async request: checked now, committed before the 202, run later."""
        model = await self.model(principal, req.model_id)
        if req.project_id is not None:
            await self.projects.require_active(principal, req.project_id)
        self.prepare(model, req.input)  # a bad input is a 422 now, not a failed job later
        now = utcnow()
        job = Job(
            id=new_id("infer"),
            user_id=principal.user_id,
            name=f"inference-{model.name}"[:64],
            type=ASYNC_TYPE,
            state=_S.QUEUED.value,
            priority=5,
            created_at=now,
            queued_at=now,
            updated_at=now,
            spec={
                "input": req.input,
                "params": req.params,
                "options": req.options.model_dump(),
            },
            resources={},
            metadata_={},
            max_retries=0,
            retry_count=0,
            attempt=0,
            project_id=req.project_id,
            model_id=model.id,
        )
        await self._accept(job)
        self.start(job.id, principal)
        return {
            "job_id": job.id,
            "status": "queued",
            "message": "Inference job queued",
            "poll_url": f"/stratalab/api/v1/inference/{job.id}",
            "project_id": req.project_id,
        }

    def start(self, job_id: str, principal: Principal) -> None:
        """Run an accepted async job in the background."""
        task = asyncio.ensure_future(self._run(job_id, principal))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job_id: str, principal: Principal) -> None:
        t0 = time.perf_counter()
        arrived = time.time()
        job = await self._db(self.runner.store.get_job, job_id)
        if job is None or JobState(job.state) in TERMINAL:
            return
        try:
            model = await self.model(principal, str(job.model_id))
        except StrataLabError as exc:
            await self._fail(job_id, exc)
            return
        spec = job.spec or {}
        options = InferenceOptions.model_validate(spec.get("options") or {})
        if not await self._wait_for_workers(job_id, model, options.prefer_gpu):
            return
        try:
            await self._step(job_id, _S.SCHEDULING, "routed to a worker holding the model")
            await self._step(job_id, _S.PREPARING, "input validated against the model")
            await self._step(job_id, _S.RUNNING, "forward pass", started_at=utcnow())
        except Conflict:
            return  # cancelled meanwhile
        try:
            out = await self._recorded(
                principal,
                model,
                project_id=job.project_id,
                request_id=job_id,
                kind="async",
                call=self._call(model, spec.get("input"), spec.get("params") or {}, options),
                arrived=arrived,
                t0=t0,
            )
        except StrataLabError as exc:
            await self._fail(job_id, exc)
            return
        result = {
            "result": out["result"],
            "latency_ms": round((time.perf_counter() - t0) * 1000.0, 3),
            "compute_ms": round(float(out.get("compute_ms", 0.0)), 3),
            "worker_id": out["worker_id"],
            "device": out.get("device"),
        }
        with contextlib.suppress(Conflict):
            await self.runner.transition(
                job_id,
                _S.COMPLETED,
                reason=f"answered by worker {out['worker_id']}",
                ended_at=utcnow(),
                result=result,
                worker=out.get("worker"),
            )

    async def _wait_for_workers(self, job_id: str, model: Model, prefer_gpu: bool) -> bool:
        """Keep an async request queued while no worker can serve (False: it ended)."""
        while True:
            try:
                self.router.candidates(model.sha256, prefer_gpu=prefer_gpu)
                return True
            except NoDevices:
                job = await self._db(self.runner.store.get_job, job_id)
                if job is None or job.state != _S.QUEUED.value:
                    return False
                await asyncio.sleep(WORKER_WAIT_S)

    async def _step(self, job_id: str, to: JobState, reason: str, **kw: Any) -> None:
        await self.runner.transition(job_id, to, reason=reason, **kw)

    async def _fail(self, job_id: str, exc: StrataLabError) -> None:
        with contextlib.suppress(Conflict):
            await self.runner.transition(
                job_id,
                _S.FAILED,
                reason=f"{exc.code}: {exc.message}",
                ended_at=utcnow(),
                error=f"{exc.code}: {exc.message}",
                result={"error": {"code": exc.code, "message": exc.message}},
            )

    async def resume(self, jobs: list[Job], principal_for: Callable[[Job], Principal]) -> None:
        """After a restart: re-run async requests that had not finished."""
        for job in jobs:
            if JobState(job.state) not in (_S.QUEUED, _S.PENDING):
                await self.runner.transition(
                    job.id, _S.QUEUED, reason="the server restarted; running it again"
                )
            self.start(job.id, principal_for(job))

    async def stop(self) -> None:
        """Stop background requests (they are re-run after the next start)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def async_view(job: Job) -> dict[str, Any]:
    """``GET /inference/{id}`` for an async request."""
    result = job.result or {}
    return {
        "job_id": job.id,
        "type": job.type,
        "status": job.state.lower(),
        "state": job.state,
        "model_id": job.model_id,
        "project_id": job.project_id,
        "created_at": isoformat(job.created_at),
        "started_at": isoformat(job.started_at),
        "ended_at": isoformat(job.ended_at),
        "error": result.get("error"),
        "result": result.get("result"),
        "latency_ms": result.get("latency_ms"),
        "compute_ms": result.get("compute_ms"),
        "worker_id": result.get("worker_id"),
        "device": result.get("device"),
    }
