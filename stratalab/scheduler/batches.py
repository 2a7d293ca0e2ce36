"""Batch inference jobs: inputs on disk, shards as Dask tasks, results per shard.

``POST /inference/batch`` writes the inputs as one file per shard and commits
the job and its shards before answering 202. Shards then run as Dask tasks
on every worker (``run_batch_shard``), each writing its results file; a shard
finished is a row marked ``done``, so after a restart only unfinished shards
run again, and Dask re-runs a shard whose worker was killed.

How inputs are laid out on disk is :mod:`~stratalab.scheduler.batch_inputs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from distributed import Client, Future

from stratalab.errors import Conflict, ServiceUnavailable, StrataLabError
from stratalab.ids import new_id, utcnow
from stratalab.kernels.serving.batch import VALID_KEY, run_batch_shard, split_items
from stratalab.scheduler.batch_inputs import write_inputs
from stratalab.scheduler.db import BatchShard, Job, Model
from stratalab.scheduler.inference import InferenceService, raw_adapters, raw_outputs
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.model_schemas import BatchRequest, ProjectCreate
from stratalab.scheduler.states import TERMINAL, JobState

logger = logging.getLogger(__name__)

_S = JobState
AcceptCall = Callable[[Job], Awaitable[None]]
#: job type of a batch.
BATCH_TYPE = "batch_inference"
#: retries of one shard on top of Dask's own re-run after a lost worker.
SHARD_RETRIES = 1


class BatchRunner:
    """Accepts, runs, cancels and reports batch inference jobs."""

    def __init__(
        self,
        *,
        inference: InferenceService,
        root: Path,
        store_root: str,
        accept: AcceptCall,
    ) -> None:
        self.inference = inference
        self.root = root
        self.store_root = store_root
        self._accept = accept
        self.client: Client | None = None
        self._futures: dict[str, list[Future]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def _db(self) -> Callable[..., Awaitable[Any]]:
        return self.inference._db

    @property
    def store(self) -> Any:
        return self.inference.runner.store

    # ------------------------------------------------------------- accept
    async def submit(self, principal: Principal, req: BatchRequest) -> dict[str, Any]:
        """Check, write and commit a batch, then start it; the 202 body."""
        inf = self.inference
        model = await inf.model(principal, req.model_id)
        if req.project_id is not None:
            await inf.projects.require_active(principal, req.project_id)
        job_id = new_id("batch")
        n_workers = max(1, len(inf.router.live()))
        layout = await asyncio.to_thread(self._write_inputs, job_id, model, req, n_workers)
        project_id = req.project_id
        if project_id is None:
            project = await inf.projects.create(
                principal,
                ProjectCreate(
                    name=(req.name or f"batch {model.name}")[:128],
                    type="batch",
                    model_id=model.id,
                    total_tasks=layout["items"],
                    description=f"created for batch {job_id}",
                ),
            )
            project_id = project.id
        now = utcnow()
        shards = [
            BatchShard(job_id=job_id, idx=i, start=start, count=count, state="pending")
            for i, (start, count) in enumerate(layout["shards"])
        ]
        job = Job(
            id=job_id,
            user_id=principal.user_id,
            name=(req.name or f"batch-{model.name}")[:64],
            type=BATCH_TYPE,
            state=_S.QUEUED.value,
            priority=5,
            created_at=now,
            queued_at=now,
            updated_at=now,
            spec={
                "mode": layout["mode"],
                "rows_per_item": layout["rows_per_item"],
                "items": layout["items"],
                "params": req.params,
                "options": req.options.model_dump(),
            },
            resources={},
            metadata_={},
            max_retries=0,
            retry_count=0,
            attempt=0,
            project_id=project_id,
            model_id=model.id,
        )
        await self._db(self._insert_shards, shards)
        await self._accept(job)
        self.start(job_id, principal)
        return {
            "job_id": job_id,
            "project_id": project_id,
            "status": "queued",
            "message": f"batch of {layout['items']} items in {len(shards)} shards queued",
            "poll_url": f"/stratalab/api/v1/inference/{job_id}",
            "total_tasks": layout["items"],
            "total_shards": len(shards),
        }

    def _write_inputs(
        self, job_id: str, model: Model, req: BatchRequest, n_workers: int
    ) -> dict[str, Any]:
        """Validate the inputs and write one file per shard (blocking)."""
        return write_inputs(
            self.root / job_id,
            self.inference.signature(model),
            model,
            req,
            n_workers=n_workers,
        )

    def _insert_shards(self, shards: list[BatchShard]) -> None:
        with self.store.session() as s:
            s.add_all(shards)

    # ---------------------------------------------------------------- run
    def start(self, job_id: str, principal: Principal) -> None:
        """Run (or resume) a batch in the background."""
        task = asyncio.ensure_future(self._run(job_id, principal))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    async def _run(self, job_id: str, principal: Principal) -> None:
        runner = self.inference.runner
        job = await self._db(self.store.get_job, job_id)
        if job is None or JobState(job.state) in TERMINAL:
            return
        try:
            model = await self.inference.model(principal, str(job.model_id))
            shards = await self._db(self._shards, job_id)
            todo = [s for s in shards if s.state != "done"]
            live = self.inference.router.live()
            if JobState(job.state) == _S.QUEUED:
                await runner.transition(
                    job_id,
                    _S.SCHEDULING,
                    reason=f"{len(todo)} shards over {len(live)} workers",
                    started_at=utcnow(),
                )
                await runner.transition(
                    job_id, _S.PREPARING, reason="loading the model on the workers"
                )
                await self.inference.router.warm(model.sha256, model.format, everywhere=True)
                await runner.transition(job_id, _S.RUNNING, reason="shards running")
            outcome = await self._run_shards(job, model, todo, principal)
        except Conflict:
            return  # cancelled while starting
        except StrataLabError as exc:
            with contextlib.suppress(Conflict):
                await runner.transition(
                    job_id,
                    _S.FAILED,
                    reason=f"{exc.code}: {exc.message}",
                    ended_at=utcnow(),
                    error=exc.message,
                )
            return
        if outcome is None:
            return  # cancelled
        done, failed_items, failed_shards = outcome
        with contextlib.suppress(Conflict):
            if failed_shards == len(shards):
                await runner.transition(
                    job_id,
                    _S.FAILED,
                    reason="every shard failed",
                    ended_at=utcnow(),
                    error="every shard failed",
                )
            else:
                await runner.transition(
                    job_id,
                    _S.COMPLETED,
                    reason=f"{done} items succeeded, {failed_items} failed",
                    ended_at=utcnow(),
                    result={"succeeded": done, "failed": failed_items},
                )

    async def _run_shards(
        self, job: Job, model: Model, todo: list[BatchShard], principal: Principal
    ) -> tuple[int, int, int] | None:
        """Submit the shards, record each as it ends; ``None`` when cancelled."""
        client = self._client()
        spec = job.spec or {}
        folder = self.root / job.id
        array_mode = spec.get("mode") == "array"
        post = not raw_outputs(model)
        base = {
            "sha256": model.sha256,
            "fmt": model.format,
            "store_root": self.store_root,
            "rows_per_item": int(spec.get("rows_per_item", 1)),
            "prefer_gpu": bool((spec.get("options") or {}).get("prefer_gpu", False)),
            "preprocessing": None if raw_adapters(model) else model.preprocessing,
            "postprocessing": model.postprocessing,
            "params": self.inference.params(model, dict(spec.get("params") or {})),
            "input_schema": None if array_mode else model.input_schema,
        }
        suffix = ".npz" if array_mode and not post else ".json"
        futures: dict[Future, tuple[BatchShard, float]] = {}
        for shard in todo:
            shard_spec = {
                **base,
                "input_path": str(folder / f"in-{shard.idx}.{'npy' if array_mode else 'json'}"),
                "offset": shard.start,
                "output_path": str(folder / f"out-{shard.idx}{suffix}"),
            }
            fut = client.submit(
                run_batch_shard,
                shard_spec,
                key=f"stratalab-{job.id}-shard-{shard.idx}",
                pure=False,
                retries=SHARD_RETRIES,
            )
            futures[fut] = (shard, time.time())
        self._futures[job.id] = list(futures)
        waiters = {asyncio.ensure_future(_settle(f)): f for f in futures}
        try:
            for waiter in asyncio.as_completed(list(waiters)):
                fut, result, error = await waiter
                shard, submitted = futures[fut]
                if error == "cancelled":
                    return None
                await self._shard_done(
                    job,
                    model,
                    shard,
                    submitted=submitted,
                    result=result,
                    error=error,
                    principal=principal,
                )
        finally:
            self._futures.pop(job.id, None)
        shards = await self._db(self._shards, job.id)
        done = sum(s.succeeded for s in shards)
        failed_items = sum(s.failed + (s.count if s.state == "failed" else 0) for s in shards)
        return done, failed_items, sum(1 for s in shards if s.state == "failed")

    async def _shard_done(
        self,
        job: Job,
        model: Model,
        shard: BatchShard,
        *,
        submitted: float,
        result: dict[str, Any] | None,
        error: str | None,
        principal: Principal,
    ) -> None:
        """Commit one shard's outcome, record it, publish progress."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        if result is not None:
            values.update(
                state="done",
                worker=result.get("worker"),
                succeeded=int(result["succeeded"]),
                failed=int(result["failed"]),
                compute_ms=float(result["compute_ms"]),
                errors=list(result["errors"])[:1000],
            )
        else:
            values.update(
                state="failed",
                failed=shard.count,
                errors=[{"index": shard.start, "code": "INTERNAL_ERROR", "message": error}],
            )
        await self._db(self._update_shard, job.id, shard.idx, values)
        worker = self.inference.router.live().get(str(values.get("worker") or ""))
        latency_ms = (time.time() - submitted) * 1000.0
        common = {
            "ts": submitted,
            "user_id": principal.user_id,
            "project_id": job.project_id,
            "model_id": model.id,
            "request_id": job.id,
            "kind": "batch",
            "latency_ms": latency_ms,
            "worker": values.get("worker"),
            "device": (result or {}).get("device"),
            "pool": ("gpu" if worker.gpus else "cpu") if worker else None,
        }
        if values.get("succeeded"):
            self.inference.records.add(
                **common,
                error_code=None,
                compute_ms=values["compute_ms"],
                items=values["succeeded"],
            )
        if values.get("failed"):
            code = values["errors"][0]["code"] if values["errors"] else "INTERNAL_ERROR"
            self.inference.records.add(
                **common, error_code=code, compute_ms=0.0, items=values["failed"]
            )
        self.inference.runner.bus.publish(
            "jobs",
            {
                "job_id": job.id,
                "user_id": job.user_id,
                "status": _S.RUNNING.value,
                "event": None,
                "shard": {"index": shard.idx, "state": values["state"]},
            },
        )

    def _update_shard(self, job_id: str, idx: int, values: dict[str, Any]) -> None:
        with self.store.session() as s:
            s.execute(
                sa.update(BatchShard)
                .where(BatchShard.job_id == job_id, BatchShard.idx == idx)
                .values(**values)
            )

    def _shards(self, job_id: str) -> list[BatchShard]:
        with self.store.session() as s:
            return list(
                s.scalars(
                    sa.select(BatchShard)
                    .where(BatchShard.job_id == job_id)
                    .order_by(BatchShard.idx)
                ).all()
            )

    # ------------------------------------------------------------- cancel
    async def stop_job(self, job_id: str) -> None:
        """After a cancel: stop its running shards; finished ones keep their results."""
        futures = self._futures.pop(job_id, [])
        if futures and self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.cancel(futures, force=True)
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()

    async def resume(self, jobs: list[Job], principal_for: Callable[[Job], Principal]) -> None:
        """After a restart: carry on with the shards that had not finished."""
        for job in jobs:
            if JobState(job.state) in (_S.SCHEDULING, _S.PREPARING):
                await self.inference.runner.transition(
                    job.id, _S.QUEUED, reason="the server restarted before the shards ran"
                )
            self.start(job.id, principal_for(job))

    async def stop(self) -> None:
        """Stop following batches; they resume on the next start."""
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------ results
    async def view(self, job: Job, offset: int, limit: int) -> dict[str, Any]:
        """Progress, a page of results (``None`` where not run yet) and item errors."""
        shards = await self._db(self._shards, job.id)
        spec = job.spec or {}
        total = int(spec.get("items", sum(s.count for s in shards)))
        items = await asyncio.to_thread(self._results, job, shards, offset, limit)
        completed = sum(s.succeeded for s in shards)
        failed = sum(s.failed for s in shards)
        errors = [e for s in shards for e in (s.errors or [])][:100]
        return {
            "progress": {
                "total_tasks": total,
                "completed_tasks": completed,
                "failed_tasks": failed,
                "total_shards": len(shards),
                "completed_shards": sum(1 for s in shards if s.state == "done"),
                "failed_shards": sum(1 for s in shards if s.state == "failed"),
                "percent": round(100.0 * (completed + failed) / total, 2) if total else 100.0,
            },
            "results": {"offset": offset, "limit": limit, "items": items},
            "errors": errors,
        }

    def _results(self, job: Job, shards: list[BatchShard], offset: int, limit: int) -> list[Any]:
        rows_per_item = int((job.spec or {}).get("rows_per_item", 1))
        end = min(offset + limit, int((job.spec or {}).get("items", 0)))
        out: list[Any] = [None] * max(0, end - offset)
        for shard in shards:
            lo, hi = max(offset, shard.start), min(end, shard.start + shard.count)
            if lo >= hi or shard.state != "done":
                continue
            values = _read_shard(self.root / job.id, shard.idx, rows_per_item)
            for i in range(lo, hi):
                out[i - offset] = values[i - shard.start]
        return out

    def _client(self) -> Client:
        if self.client is None:
            raise ServiceUnavailable("the Dask cluster is not connected yet")
        return self.client


async def _settle(future: Future) -> tuple[Future, dict[str, Any] | None, str | None]:
    """A shard's result or its error text, never an exception."""
    try:
        return future, await future, None
    except asyncio.CancelledError:
        return future, None, "cancelled"
    except Exception as exc:  # noqa: BLE001 - whatever the shard raised on its worker
        return future, None, f"{type(exc).__name__}: {exc}"[:2000]


def _read_shard(folder: Path, idx: int, rows_per_item: int) -> list[Any]:
    """One finished shard's per-item results, as the API returns them."""
    npz = folder / f"out-{idx}.npz"
    if npz.exists():
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != VALID_KEY}
            valid = data[VALID_KEY]
        return split_items(arrays, valid, rows_per_item)
    return list(json.loads((folder / f"out-{idx}.json").read_text()))
