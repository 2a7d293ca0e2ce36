"""How each benchmark mode measures: the serving path under load, or a training job.

:class:`BenchmarkRuns` is what :class:`~stratalab.scheduler.benchmarks.BenchmarkService`
calls once a run's turn comes. It moves the job through ``PREPARING`` and
``RUNNING``, writes progress (and, for ``perf``, each step's figures as soon
as the step ends), and returns the ``result``; the service commits it with
``COMPLETED``. The load generators and the arithmetic are in
:mod:`~stratalab.scheduler.benchmark_load`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import numpy as np

from stratalab.errors import Conflict, NotFound
from stratalab.errors import ValidationFailed as Invalid
from stratalab.ids import as_utc
from stratalab.scheduler.benchmark_load import closed_loop, step_load, training_figures
from stratalab.scheduler.benchmark_schemas import (
    InferenceBenchmark,
    PerfBenchmark,
    TrainingBenchmark,
)
from stratalab.scheduler.db import Job, JobEvent, Model
from stratalab.scheduler.inference import raw_adapters
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.model_schemas import InferenceRequest, ProjectCreate
from stratalab.scheduler.serving_api import ServingApi
from stratalab.scheduler.states import TERMINAL, JobState
from stratalab.scheduler.training import TrainingService
from stratalab.scheduler.training_loop import TrainingFailed
from stratalab.scheduler.training_metrics import read_points
from stratalab.scheduler.training_schemas import TrainingRequest

_S = JobState
#: how often a training benchmark reads its training job.
POLL_S = 0.5
#: most values in a generated default input (batch_size x the model's input size).
MAX_DEFAULT_INPUT = 1_000_000


class BenchmarkRuns:
    """The measurements of the four modes, on the real serving and training paths."""

    def __init__(self, serving: ServingApi, training: TrainingService) -> None:
        self.serving = serving
        self.training = training
        self.store = training.store
        self.db = training.db
        self.runner = training.runner
        self.bus = training.bus

    def payload(self, model: Model, req: InferenceBenchmark | PerfBenchmark) -> Any:
        """The input every request sends (the request's, or generated); 422 if it does not fit."""
        inference = self.serving.inference
        payload = req.input
        if payload is None:
            payload = default_input(model, inference.signature(model).inputs, req.batch_size)
        inference.prepare(model, payload)
        return payload

    # --------------------------------------------------------------- serving
    async def served(
        self, job: Job, principal: Principal, req: InferenceBenchmark | PerfBenchmark
    ) -> dict[str, Any]:
        """Warm the model, then the closed loop (``inference``) or the steps (``perf``)."""
        inference = self.serving.inference
        model = await inference.model(principal, req.model_id)
        payload = self.payload(model, req)
        if isinstance(req, InferenceBenchmark):
            planned = req.requests
        else:
            planned = sum(max(1, round(r * req.duration)) for r in req.rps_steps)
        project = await inference.projects.create(
            principal,
            ProjectCreate(
                name=f"benchmark {job.name}"[:128],
                type="benchmark",
                model_id=model.id,
                total_tasks=planned,
                description=f"the requests of {req.mode} benchmark {job.id}",
            ),
        )
        await self.step(
            job.id, _S.PREPARING, "loading the model; one warm-up request", project_id=project.id
        )
        await inference.router.warm(model.sha256, model.format)
        body: dict[str, Any] = {"model_id": model.id, "input": payload, "project_id": project.id}
        if req.timeout_ms is not None:
            body["options"] = {"timeout": req.timeout_ms}
        request = InferenceRequest.model_validate(body)

        async def call() -> dict[str, Any]:
            return await inference.sync(principal, request)

        await call()  # whatever is still cold loads now, outside the figures
        await self.step(job.id, _S.RUNNING, f"sending {planned} requests")
        steps: list[dict[str, Any]] = []
        if isinstance(req, InferenceBenchmark):
            out = await closed_loop(call, requests=req.requests, concurrency=req.concurrency)
            steps.append({"step": 1, **out})
            summary = {k: v for k, v in out.items() if k != "workers"}
        else:
            for i, rps in enumerate(req.rps_steps, 1):
                out = await step_load(
                    call, rps=rps, duration=req.duration, max_concurrency=req.max_concurrency
                )
                steps.append({"step": i, **out})
                await self.progress(job, i, len(req.rps_steps), {"steps": steps})
            summary = perf_summary(steps)
        summary["requests_sent"] = sum(s.get("sent", s.get("requests", 0)) for s in steps)
        with contextlib.suppress(Conflict, NotFound):
            await inference.projects.finish(principal, project.id, "completed")
        return {"summary": summary, "steps": steps}

    # -------------------------------------------------------------- training
    async def trained(
        self, job: Job, principal: Principal, req: TrainingBenchmark
    ) -> dict[str, Any]:
        """Submit the training job, follow it, and read its rounds' figures."""
        submitted = await self.training.submit(principal, training_request(job.id, req))
        child_id = str(submitted["job_id"])
        job.progress = {"percent_complete": 0.0, "training_job_id": child_id}
        await self.db(self.store.update_job, job.id, progress=job.progress)
        await self.step(job.id, _S.PREPARING, f"training job {child_id} queued")
        await self.step(job.id, _S.RUNNING, f"training job {child_id} running")
        child = await self._follow(job, child_id)
        if child.state != _S.COMPLETED.value:
            raise TrainingFailed(f"training job {child_id} ended {child.state}: {child.error}")
        await self.training.sink.flush()
        rows = await self.db(read_points, self.store, child_id)
        points = [
            {"round": p.round, "ts": p.ts, "values": p.values or {}}
            for p in rows
            if p.worker is None
        ]
        timeline = await self.db(self.store.job_events, child_id)
        trained_at = first_entry(timeline, _S.TRAINING)
        placed = first_entry(timeline, _S.SCHEDULING)
        figs = training_figures(points, trained_at, req.target_accuracy)
        result = child.result or {}
        seen = int(result.get("samples_seen", 0))
        train_s = None
        if trained_at is not None and child.ended_at is not None:
            train_s = (as_utc(child.ended_at) - trained_at).total_seconds()
        summary = {
            "training_job_id": child_id,
            "device": "gpu" if req.mode == "gpu-training" else "cpu",
            "rounds": figs["rounds"],
            "samples_seen": seen,
            "samples_per_s": figs["samples_per_s"],
            "samples_per_s_overall": round(seen / train_s, 3) if train_s else None,
            "training_s": round(train_s, 3) if train_s is not None else None,
            "queue_wait_s": _seconds(as_utc(child.created_at), placed),
            "target_accuracy": req.target_accuracy,
            "time_to_accuracy_s": figs["time_to_accuracy_s"],
            "final_accuracy": (result.get("evaluation") or {}).get("accuracy"),
            "barrier_ms": figs["barrier_ms"],
            "devices": (child.progress or {}).get("assigned_devices"),
        }
        return {"summary": summary, "steps": figs["steps"], "training_job_id": child_id}

    async def _follow(self, job: Job, child_id: str) -> Job:
        """Poll the training job until it ends, mirroring its progress."""
        while True:
            child = await self.db(self.store.get_job, child_id)
            if child is None:
                raise NotFound(f"training job {child_id} is gone")
            if JobState(child.state) in TERMINAL:
                return child
            percent = float((child.progress or {}).get("percent_complete") or 0.0)
            progress = {"percent_complete": percent, "training_job_id": child_id}
            if progress != job.progress:
                job.progress = progress
                await self.db(self.store.update_job, job.id, progress=progress)
            await asyncio.sleep(POLL_S)

    # --------------------------------------------------------------- helpers
    async def step(self, job_id: str, to: JobState, reason: str, **kw: Any) -> None:
        """One state transition of the run (Conflict: it was cancelled meanwhile)."""
        await self.runner.transition(job_id, to, reason=reason, **kw)

    async def progress(self, job: Job, done: int, total: int, result: dict[str, Any]) -> None:
        """Store and publish how far a stepped run is, with the steps measured so far."""
        job.progress = {
            "step": done,
            "steps": total,
            "percent_complete": round(100 * done / total, 2),
        }
        await self.db(self.store.update_job, job.id, progress=job.progress, result=result)
        self.bus.publish(
            "jobs",
            {
                "job_id": job.id,
                "user_id": job.user_id,
                "status": _S.RUNNING.value,
                "progress": job.progress,
                "event": None,
            },
        )


def training_request(job_id: str, req: TrainingBenchmark) -> TrainingRequest:
    """The training job a training benchmark runs (nothing exported, no retries)."""
    gpu = req.mode == "gpu-training"
    return TrainingRequest.model_validate(
        {
            "name": f"bench-{req.name}"[:64],
            "model": req.model.model_dump(),
            "data_config": {"dataset_id": req.dataset_id, "batch_size": req.batch_size},
            "training_config": {
                "epochs": req.epochs,
                "learning_rate": req.learning_rate,
                "optimizer": req.optimizer,
                "sync_mode": req.sync_mode,
            },
            "resource_config": {
                "min_devices": req.min_devices,
                "max_devices": req.max_devices,
                "gpu": 1 if gpu else 0,
                "prefer_gpu": gpu,
            },
            "output_config": {"export": False},
            "max_retries": 0,
            "labels": {"benchmark_id": job_id},
        }
    )


def default_input(model: Model, inputs: list[Any], rows: int) -> Any:
    """Seeded random tensors of the model's input shapes (``rows`` where the batch is free)."""
    if not raw_adapters(model):
        raise Invalid(
            f"model {model.id} takes {model.preprocessing} input; give 'input'",
            details={"field": "input", "preprocessing": model.preprocessing},
        )
    rng = np.random.default_rng(0)
    tensors: dict[str, Any] = {}
    for spec in inputs:
        dtype = str(spec.dtype or "float32")
        if spec.shape is None or not dtype.startswith(("float", "int")):
            raise Invalid(
                f"input {spec.name} of model {model.id} is {spec.describe()}; give 'input'",
                details={"field": "input"},
            )
        shape = [(rows if i == 0 else 1) if d is None else int(d) for i, d in enumerate(spec.shape)]
        if int(np.prod(shape)) > MAX_DEFAULT_INPUT:
            raise Invalid(
                f"a default input of shape {shape} is too large; lower batch_size",
                details={"field": "batch_size", "shape": shape},
            )
        if dtype.startswith("int"):
            values = np.zeros(shape, dtype=np.int64)
        else:
            values = rng.standard_normal(shape).astype(np.float32)
        tensors[spec.name] = {"data": values.reshape(-1).tolist(), "shape": shape}
    if not tensors:
        raise Invalid(f"model {model.id} declares no inputs; give 'input'")
    return next(iter(tensors.values())) if len(tensors) == 1 else tensors


def perf_summary(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The best rate served, and the first step at which the server fell behind.

    A step falls behind when a request failed, a planned request could not
    be sent within the step (every slot busy), or less than 90 % of the
    offered rate was achieved.
    """
    best = max(steps, key=lambda s: s["achieved_rps"] or 0.0)
    behind = next(
        (
            s
            for s in steps
            if s["errors"] or s["unsent"] or (s["achieved_rps"] or 0.0) < 0.9 * s["offered_rps"]
        ),
        None,
    )
    return {
        "steps": len(steps),
        "max_achieved_rps": best["achieved_rps"],
        "at_offered_rps": best["offered_rps"],
        "saturated_at_rps": behind["offered_rps"] if behind is not None else None,
        "errors": sum(s["errors"] for s in steps),
        "p99_ms_by_step": [s["latency_ms"]["p99"] for s in steps],
    }


def first_entry(timeline: list[JobEvent], state: JobState) -> datetime | None:
    """When the job first entered ``state`` (UTC), or None."""
    for ev in timeline:
        if ev.to_state == state.value:
            return as_utc(ev.ts)
    return None


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if end is not None else None
