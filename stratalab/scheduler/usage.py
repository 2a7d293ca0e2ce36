"""Usage records: what each piece of work cost, as the workers measured it.

Every task attempt, training update, evaluation and served request leaves
a :class:`~stratalab.scheduler.db.UsageRecord` (the ground truth of usage,
billing and efficiency). The numbers come from the workers: CPU and GPU
milliseconds and energy from :mod:`stratalab.kernels.metering` and the
task kernel, compute milliseconds of the forward pass from the serving
plugin. Nothing is estimated here: a figure a worker did not send is 0
(CPU, GPU) or ``None`` (energy).

Rows are queued in memory and written in one transaction per interval
(a :class:`~stratalab.scheduler.records.RecordSink`). Served requests are
many and small, so they are rolled up first: one row per user, project,
job, kind, worker, device and outcome per interval, instead of one per
request. Every row is either all successes or all failures
(``errors == 0`` or ``errors == tasks``), which lets the internal routes
report the two apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from stratalab.scheduler.cluster import WorkerInfo
from stratalab.scheduler.db import UsageRecord
from stratalab.scheduler.records import RecordSink
from stratalab.scheduler.store import Store

if TYPE_CHECKING:
    from stratalab.scheduler.runner import ActiveJob

logger = logging.getLogger(__name__)

DbCall = Callable[..., Awaitable[Any]]
WorkersCall = Callable[[], Mapping[str, WorkerInfo]]

#: the kinds of work usage tells apart.
KINDS = ("task", "training", "evaluation", "inference", "batch")
#: inference request kinds (``InferenceRecord.kind``) -> usage kind.
SERVING_KINDS = {"sync": "inference", "async": "inference", "batch": "batch"}


class RunInfo(Protocol):
    """What usage needs to know of a training run."""

    job_id: str
    user_id: str
    project_id: str | None


def _number(value: Any) -> float:
    """A measured figure, or 0 when the worker sent none."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if math.isfinite(out) and out >= 0 else 0.0  # NaN, inf, negative: not measured


def _energy(value: Any) -> float | None:
    """Joules a worker measured, or None (never 0 for 'not measured')."""
    if value is None:
        return None
    joules = _number(value)
    return joules if joules > 0 or value == 0 else None


class UsageRecorder:
    """Turns worker results into usage rows and writes them in batches."""

    def __init__(
        self,
        store: Store,
        db: DbCall,
        *,
        workers: WorkersCall,
        flush_interval_s: float = 0.5,
    ) -> None:
        #: the batched writer of ``usage_records``.
        self.sink = RecordSink(store, db, flush_interval_s=flush_interval_s, table=UsageRecord)
        self._workers = workers
        #: served requests rolled up since the last flush, by row key.
        self._rollup: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the flush loop."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop the loop and write what is left."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.sink.flush_interval_s)
            try:
                await self.flush()
            except Exception:
                logger.exception("usage flush failed; rows stay queued")

    async def flush(self) -> None:
        """Write every queued row (rolled-up requests included); readers call this first."""
        self._drain_rollup()
        await self.sink.flush()

    # ------------------------------------------------------------- recording
    def pool(self, worker: str | None) -> str | None:
        """``gpu`` or ``cpu``: the pool of a worker address (None if unknown)."""
        info = self._workers().get(worker or "")
        if info is None:
            return None
        return "gpu" if info.gpus else "cpu"

    def add(
        self,
        *,
        user_id: str,
        kind: str,
        job_id: str | None = None,
        project_id: str | None = None,
        worker: str | None = None,
        cpu_ms: Any = 0.0,
        gpu_ms: Any = 0.0,
        items: int = 0,
        failed: bool = False,
        energy_j: Any = None,
    ) -> None:
        """Queue one row for one task (attempt, update, evaluation) that ended now."""
        self.sink.add(
            ts=time.time(),
            user_id=user_id,
            project_id=project_id,
            job_id=job_id,
            kind=kind,
            cpu_ms=_number(cpu_ms),
            gpu_ms=_number(gpu_ms),
            tasks=1,
            items=max(0, int(items)),
            errors=1 if failed else 0,
            worker=worker,
            pool=self.pool(worker),
            energy_j=_energy(energy_j),
        )

    def task_ended(
        self, active: ActiveJob, result: Mapping[str, Any] | None, *, failed: bool
    ) -> None:
        """A task attempt ended: what its process tree used (nothing if the worker died)."""
        res = result or {}
        self.add(
            user_id=active.user_id,
            kind="task",
            job_id=active.job_id,
            project_id=active.project_id,
            worker=str(res.get("worker") or active.address),
            cpu_ms=res.get("cpu_ms"),
            gpu_ms=res.get("gpu_ms"),
            failed=failed,
            energy_j=res.get("energy_j"),
        )

    def work_done(
        self,
        kind: str,
        *,
        job_id: str | None,
        user_id: str,
        project_id: str | None,
        worker: str | None,
        result: Mapping[str, Any] | None,
        items_key: str = "num_samples",
    ) -> None:
        """A training update or an evaluation: its measured figures, or a failure."""
        res = result or {}
        self.add(
            user_id=user_id,
            kind=kind,
            job_id=job_id,
            project_id=project_id,
            worker=str(res.get("worker") or worker or "") or None,
            cpu_ms=res.get("cpu_ms"),
            gpu_ms=res.get("gpu_ms"),
            items=int(_number(res.get(items_key))),
            failed=result is None,
            energy_j=res.get("energy_j"),
        )

    def training_result(self, run: RunInfo, worker: str, result: Mapping[str, Any] | None) -> None:
        """One local-training task of a round: its update's figures, or a failure."""
        self.work_done(
            "training",
            job_id=run.job_id,
            user_id=run.user_id,
            project_id=run.project_id,
            worker=worker,
            result=result,
        )

    def evaluation_result(self, run: RunInfo, result: Mapping[str, Any]) -> None:
        """A validation pass of a training run (per round, and the final one)."""
        self.work_done(
            "evaluation",
            job_id=run.job_id,
            user_id=run.user_id,
            project_id=run.project_id,
            worker=None,
            result=result,
        )

    def on_request_record(self, record: Mapping[str, Any]) -> None:
        """Roll one served request (an ``InferenceRecord``'s columns) into this interval's rows.

        The forward pass's compute milliseconds, measured on the worker, count
        as GPU time on a CUDA device and as CPU time otherwise.
        """
        kind = SERVING_KINDS.get(str(record.get("kind")), "inference")
        failed = record.get("error_code") is not None
        cuda = record.get("device") == "cuda"
        # sync requests each have their own id: per-request rows would defeat the roll-up
        job_id = (
            record.get("request_id") if kind == "batch" or record.get("kind") == "async" else None
        )
        key = (
            record.get("user_id"),
            record.get("project_id"),
            job_id,
            kind,
            record.get("worker"),
            record.get("pool"),
            cuda,
            failed,
        )
        row = self._rollup.get(key)
        if row is None:
            row = self._rollup[key] = {"compute_ms": 0.0, "tasks": 0, "items": 0}
        row["compute_ms"] += _number(record.get("compute_ms"))
        row["tasks"] += 1
        row["items"] += 0 if failed else max(0, int(record.get("items") or 0))

    def _drain_rollup(self) -> None:
        rollup, self._rollup = self._rollup, {}
        now = time.time()
        for (user, project, job, kind, worker, pool, cuda, failed), row in rollup.items():
            self.sink.add(
                ts=now,
                user_id=user,
                project_id=project,
                job_id=job,
                kind=kind,
                cpu_ms=0.0 if cuda else row["compute_ms"],
                gpu_ms=row["compute_ms"] if cuda else 0.0,
                tasks=row["tasks"],
                items=row["items"],
                errors=row["tasks"] if failed else 0,
                worker=worker,
                pool=pool,
                energy_j=None,
            )
