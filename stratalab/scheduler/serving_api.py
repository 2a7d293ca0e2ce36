"""The models, inference and projects actions, one method per route.

The coordinator owns one :class:`ServingApi`; handlers call
``coordinator.serving.<action>``. It wires the registry, the router, the
request records, projects and batches together, so none of them needs to
know about the others' plumbing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from distributed import Client

from stratalab.errors import CannotCancel, Conflict, NotFound
from stratalab.ids import utcnow
from stratalab.scheduler.artifacts import ArtifactStore, PendingArtifact
from stratalab.scheduler.batches import BATCH_TYPE, BatchRunner
from stratalab.scheduler.cluster import WorkerInfo
from stratalab.scheduler.config import CoordinatorConfig
from stratalab.scheduler.db import Job
from stratalab.scheduler.inference import ASYNC_TYPE, InferenceService, async_view
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.model_schemas import (
    BatchRequest,
    InferenceRequest,
    ModelSchemaPatch,
    ModelUploadFields,
    ProjectCreate,
)
from stratalab.scheduler.projects import ProjectService
from stratalab.scheduler.records import RecordSink
from stratalab.scheduler.registry import ModelRegistry, model_view
from stratalab.scheduler.runner import JobRunner
from stratalab.scheduler.serving import ServingRouter
from stratalab.scheduler.states import ACTIVE, TERMINAL, WAITING, JobState
from stratalab.scheduler.store import Store

logger = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]
AcceptCall = Callable[[Job], Awaitable[None]]
#: job types this module runs (the task runner leaves them alone).
SERVING_TYPES = frozenset({ASYNC_TYPE, BATCH_TYPE})


class ServingApi:
    """Model registry, sync/async/batch inference and projects."""

    def __init__(
        self,
        *,
        config: CoordinatorConfig,
        store: Store,
        runner: JobRunner,
        db: DbCall,
        accept: AcceptCall,
    ) -> None:
        self.config = config
        self.store = store
        self.runner = runner
        self._db = db
        self.artifacts = ArtifactStore(config.data_dir / "artifacts")
        self.registry = ModelRegistry(store, self.artifacts)
        self.records = RecordSink(store, db)
        self.projects = ProjectService(store, db)
        self.router = ServingRouter(
            store_root=str(self.artifacts.root),
            workers=lambda: runner.workers,
            drained=lambda: runner.drained,
            cache_bytes=config.serving_cache_mb << 20,
            max_wait_ms=config.batch_wait_ms,
            replicas=config.serving_replicas,
        )
        self.inference = InferenceService(
            config=config,
            registry=self.registry,
            router=self.router,
            records=self.records,
            projects=self.projects,
            runner=runner,
            db=db,
            accept=accept,
        )
        self.batches = BatchRunner(
            inference=self.inference,
            root=config.data_dir / "batches",
            store_root=str(self.artifacts.root),
            accept=accept,
        )
        self._closing = False
        self._flusher: asyncio.Task[None] | None = None
        self._warming: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ lifecycle
    async def start(self, client: Client, leftovers: list[Job]) -> None:
        """Put the serving plugin on the workers and resume unfinished requests."""
        removed = self.artifacts.clean_tmp()
        if removed:
            logger.info("removed %d partial uploads left by a previous run", removed)
        await self.router.install(client)
        self.batches.client = client
        self._flusher = asyncio.ensure_future(self.records.run(lambda: self._closing))
        await self.inference.resume(
            [j for j in leftovers if j.type == ASYNC_TYPE], _owner_principal
        )
        await self.batches.resume([j for j in leftovers if j.type == BATCH_TYPE], _owner_principal)

    async def stop(self) -> None:
        """Stop background work and write the last request records."""
        self._closing = True
        await self.inference.stop()
        await self.batches.stop()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.records.flush()

    def workers_changed(self, workers: dict[str, WorkerInfo]) -> None:
        """Forget models held by workers that left."""
        self.router.workers_changed(workers)

    # --------------------------------------------------------------- models
    async def upload_model(
        self,
        principal: Principal,
        pending: PendingArtifact,
        fields: ModelUploadFields,
        filename: str | None,
    ) -> dict[str, Any]:
        """Verify and register an uploaded file, then warm it on its workers."""
        model = await asyncio.to_thread(
            self.registry.register, principal, pending, fields, filename=filename
        )
        task = asyncio.ensure_future(self.router.warm(model.sha256, model.format))
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)
        return self._model_view(model)

    def begin_upload(self) -> PendingArtifact:
        """A temp file for an upload, bounded by ``max_upload_mb``."""
        return self.artifacts.begin(self.config.max_upload_mb << 20)

    async def list_models(
        self, principal: Principal, *, name: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the caller's models."""
        rows, total = await self._db(
            self.registry.page, principal, name=name, offset=offset, limit=limit
        )
        return [self._model_view(m) for m in rows], total

    async def get_model(self, principal: Principal, model_id: str) -> dict[str, Any]:
        """One model."""
        return self._model_view(await self._db(self.registry.get, principal, model_id))

    async def patch_model(
        self, principal: Principal, model_id: str, patch: ModelSchemaPatch
    ) -> dict[str, Any]:
        """Change a model's schemas, labels or adapters."""
        return self._model_view(await self._db(self.registry.patch, principal, model_id, patch))

    async def delete_model(self, principal: Principal, model_id: str) -> None:
        """Delete a model (409 while a job uses it) and free it on the workers."""
        model = await self._db(self.registry.delete, principal, model_id)
        await self.router.unload(model.sha256)

    def _model_view(self, model: Any) -> dict[str, Any]:
        return model_view(model, self.router.loaded_on(model.sha256, self.runner.workers))

    # ------------------------------------------------------------ inference
    async def infer(
        self, principal: Principal, req: InferenceRequest, started: float
    ) -> dict[str, Any]:
        """A sync request."""
        return await self.inference.sync(principal, req, started=started)

    async def infer_async(self, principal: Principal, req: InferenceRequest) -> dict[str, Any]:
        """An async request (202)."""
        return await self.inference.submit(principal, req)

    async def batch(self, principal: Principal, req: BatchRequest) -> dict[str, Any]:
        """A batch (202)."""
        return await self.batches.submit(principal, req)

    async def _inference_job(self, principal: Principal, job_id: str) -> Job:
        job = await self._db(self.store.get_job, job_id)
        if job is None or job.type not in SERVING_TYPES or not principal.may_see(job.user_id):
            raise NotFound(f"no inference job {job_id}", details={"job_id": job_id})
        return job

    async def inference_job(
        self, principal: Principal, job_id: str, *, offset: int, limit: int
    ) -> dict[str, Any]:
        """An async request's answer, or a batch's progress and a page of results."""
        job = await self._inference_job(principal, job_id)
        view = async_view(job)
        if job.type == BATCH_TYPE:
            for key in ("result", "latency_ms", "compute_ms", "worker_id", "device"):
                view.pop(key, None)
            view["error"] = job.error
            view.update(await self.batches.view(job, offset, limit))
        return view

    async def cancel_inference(
        self, principal: Principal, job_id: str, reason: str
    ) -> dict[str, Any]:
        """Cancel an async request or a batch that has not ended."""
        job = await self._inference_job(principal, job_id)
        await self.cancel_job(job, reason)
        return await self.inference_job(principal, job_id, offset=0, limit=0)

    async def cancel_job(self, job: Job, reason: str) -> None:
        """Cancel a serving job (also reached through ``POST /jobs/{id}/cancel``).

        The job's own runner may be moving it between states at the same
        moment; the compare-and-set then fails and is tried again on the
        fresh state.
        """
        for _ in range(10):
            if JobState(job.state) in TERMINAL:
                raise CannotCancel(
                    f"job {job.id} already ended ({job.state})", details={"status": job.state}
                )
            try:
                await self.runner.transition(
                    job.id, JobState.CANCELLED, reason=reason, ended_at=utcnow()
                )
                break
            except Conflict:
                fresh = await self._db(self.store.get_job, job.id)
                if fresh is None:
                    raise NotFound(f"no job {job.id}") from None
                job = fresh
        else:
            raise Conflict(f"job {job.id} keeps changing state; try again")
        if job.type == BATCH_TYPE:
            await self.batches.stop_job(job.id)

    # ------------------------------------------------------------- projects
    async def create_project(self, principal: Principal, req: ProjectCreate) -> dict[str, Any]:
        """A new project (its model, if named, must be the caller's)."""
        if req.model_id is not None:
            await self._db(self.registry.get, principal, req.model_id)
        project = await self.projects.create(principal, req)
        return (await self.projects.views([project]))[0]

    async def list_projects(
        self, principal: Principal, *, status: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the caller's projects."""
        await self.records.flush()
        rows, total = await self.projects.page(principal, status=status, offset=offset, limit=limit)
        return await self.projects.views(rows), total

    async def get_project(self, principal: Principal, project_id: str) -> dict[str, Any]:
        """One project with its progress and headline analytics."""
        await self.records.flush()
        project = await self.projects.get(principal, project_id)
        view = (await self.projects.views([project]))[0]
        figures = await self.projects.analytics(project, None)
        view["metrics"] = {
            k: figures[k]
            for k in ("requests", "errors", "items", "latency_ms", "requests_per_second")
        }
        return view

    async def project_analytics(
        self, principal: Principal, project_id: str, bucket_s: float | None
    ) -> dict[str, Any]:
        """Latency percentiles, throughput over time, errors, per worker pool."""
        await self.records.flush()
        project = await self.projects.get(principal, project_id)
        return await self.projects.analytics(project, bucket_s)

    async def finish_project(
        self,
        principal: Principal,
        project_id: str,
        status: str,
        cancel_job: Callable[[Job, str], Awaitable[None]],
    ) -> dict[str, Any]:
        """Complete or cancel a project; cancelling also cancels its unfinished jobs."""
        project = await self.projects.finish(principal, project_id, status)
        if status == "cancelled":
            jobs = await self._db(self._project_jobs, project_id)
            for job in jobs:
                with contextlib.suppress(CannotCancel, NotFound):
                    await cancel_job(job, f"project {project_id} cancelled")
        return await self.get_project(principal, project.id)

    def _project_jobs(self, project_id: str) -> list[Job]:
        live = [s.value for s in ACTIVE | WAITING]
        with self.store.session() as s:
            return list(
                s.scalars(
                    sa.select(Job).where(Job.project_id == project_id, Job.state.in_(live))
                ).all()
            )


def _owner_principal(job: Job) -> Principal:
    """Background work runs with its owner's rights."""
    return Principal(user_id=job.user_id, scope="user")
