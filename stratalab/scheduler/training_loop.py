"""The life of one training job while it holds workers (architecture decision 12).

A :class:`TrainingRun` takes a job from ``SCHEDULING`` through ``PREPARING``
(shards and model loaded on the workers), rounds of ``TRAINING`` with
``CHECKPOINTING`` between them, to ``EVALUATING``, ``EXPORTING`` and
``COMPLETED``. Each round submits one local-training task per worker, pinned
to the worker that caches its shards but allowed elsewhere if that worker
dies, so a killed worker costs at most the round in flight. Pause and
preemption take effect between rounds, after a checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from distributed import Future

from stratalab.errors import StrataLabError
from stratalab.ids import utcnow
from stratalab.kernels.training.fedavg import make_strategy
from stratalab.kernels.training.rounds import (
    prepare_worker,
    run_evaluation,
    run_training_round,
)
from stratalab.kernels.training.strategy import (
    AggregationStrategy,
    Assignment,
    Failure,
    Update,
)
from stratalab.scheduler.datasets import assign_shards
from stratalab.scheduler.db import Job
from stratalab.scheduler.placement import HashRing
from stratalab.scheduler.states import JobState

if TYPE_CHECKING:
    from stratalab.scheduler.training import TrainingService

logger = logging.getLogger(__name__)
_S = JobState


class TrainingFailed(StrataLabError):
    """A round in which every task failed: the job cannot make progress."""

    code = "TRAINING_FAILED"
    status = 500


class TrainingRun:
    """One training job and the workers it holds."""

    def __init__(self, svc: TrainingService, job: Job, workers: list[str]) -> None:
        self.svc = svc
        self.job_id = job.id
        self.user_id = job.user_id
        self.project_id = job.project_id
        self.priority = job.priority
        #: when it started holding workers (tie-break among equal priorities).
        self.started = time.time()
        self.spec: dict[str, Any] = dict(job.spec or {})
        #: workers held now, and the share the last planning pass gave the job.
        self.workers = list(workers)
        self.target = list(workers)
        self.attempt = job.attempt
        #: set by a pause request: whether to checkpoint first.
        self.pause: bool | None = None
        self.preempt = False
        self.cancel_reason: str | None = None
        self.task: asyncio.Task[None] | None = None
        self._pending: dict[asyncio.Task[Any], tuple[Future, Assignment]] = {}
        self.state: dict[str, Any] = {}
        self.descriptor: dict[str, Any] = {}
        self.last_checkpoint_round = -1

    # ------------------------------------------------------------------ main
    async def run(self) -> None:
        """Run to the end, a pause, a preemption or a failure."""
        svc = self.svc
        try:
            job = await svc.transition(
                self.job_id,
                _S.SCHEDULING,
                reason=f"allocated {len(self.workers)} worker(s): {svc.worker_ids(self.workers)}",
                expect={_S.QUEUED},
                worker=self.workers[0],
                attempt=Job.attempt + 1,
            )
            self.attempt = job.attempt
            svc.sink.attempts[self.job_id] = job.attempt
            strategy = await self._prepare()
            outcome = await self._train(strategy)
            if outcome == "done":
                await self._finish(strategy)
        except asyncio.CancelledError:
            if self.cancel_reason is None:
                raise  # the server is stopping: the job stays as stored and resumes on start
        except Exception as exc:  # any failure ends this attempt
            reason = (
                exc.message if isinstance(exc, StrataLabError) else f"{type(exc).__name__}: {exc}"
            )
            logger.warning(
                "training job %s failed: %s",
                self.job_id,
                reason,
                exc_info=not isinstance(exc, StrataLabError),
            )
            await svc.fail_or_retry(self.job_id, reason)
        finally:
            await self._drop_pending()
            svc.released(self)

    # --------------------------------------------------------------- prepare
    async def _prepare(self) -> AggregationStrategy:
        svc = self.svc
        await svc.transition(
            self.job_id, _S.PREPARING, reason="loading dataset shards and the model on the workers"
        )
        self.descriptor = await svc.specs.descriptor(self.spec["dataset_id"])
        restored = await svc.db(
            svc.checkpoints.restore, self.job_id, str(self.spec.get("resume_checkpoint") or "")
        )
        if restored is not None:
            ckpt, params, state = restored
            self.state = dict(state)
            self.last_checkpoint_round = ckpt.round
            svc.syslog(
                self.job_id,
                self.attempt,
                f"resuming from checkpoint {ckpt.id} (round {ckpt.round})",
            )
        else:
            params = await asyncio.to_thread(svc.specs.initial_params, self.spec)
            self.state = {
                "round": 0,
                "samples_seen": 0,
                "steps": 0,
                "best_loss": None,
                "best_val_accuracy": None,
            }
        await self._warm()
        strategy = self._strategy()
        strategy.initialize(params)
        await svc.transition(
            self.job_id,
            _S.TRAINING,
            reason=f"training on {len(self.workers)} worker(s)",
            started_at=utcnow(),
        )
        return strategy

    def _strategy(self) -> AggregationStrategy:
        cfg = self.spec["training_config"]
        local: dict[str, Any] = {
            "batch_size": self.spec["batch_size"],
            "lr": cfg["learning_rate"],
            "optimizer": cfg["optimizer"],
            "weight_decay": cfg["weight_decay"],
        }
        if cfg.get("local_steps"):
            local["local_steps"] = cfg["local_steps"]
        options: dict[str, Any] = {"local_config": local, "seed": cfg["seed"]}
        mode = cfg["sync_mode"]
        if mode == "semi_sync":
            k = cfg.get("semi_sync_k") or max(1, len(self.workers) - 1)
            options.update(
                k=k,
                deadline_s=cfg["deadline_s"],
                alpha=cfg["staleness_alpha"],
                mixing=cfg["mixing"],
            )
        elif mode == "async":
            options.update(alpha=cfg["staleness_alpha"], mixing=cfg["mixing"])
        return make_strategy(mode, **options)

    def shard_map(self, workers: list[str]) -> dict[str, list[int]]:
        """Shards per worker: the dataset's hash ring restricted to the job's workers."""
        n = int(self.descriptor["num_shards"])
        placement, _ = assign_shards(HashRing(workers), str(self.descriptor["id"]), range(n))
        out: dict[str, list[int]] = {}
        for index, worker in sorted(placement.items()):
            out.setdefault(worker, []).append(index)
        return out

    async def _warm(self) -> None:
        """PREPARING: every worker caches its shards and builds the model once."""
        client = self.svc.client()
        futures = [
            client.submit(
                prepare_worker,
                self.descriptor,
                shards,
                self.spec["model_spec"],
                workers=[w],
                allow_other_workers=True,
                pure=False,
            )
            for w, shards in self.shard_map(self.workers).items()
        ]
        rows = sum(r["rows"] for r in await client.gather(futures))
        self.svc.syslog(
            self.job_id, self.attempt, f"{rows} training rows cached on {len(futures)} worker(s)"
        )

    # ---------------------------------------------------------------- rounds
    async def _train(self, strategy: AggregationStrategy) -> str:
        cfg = self.spec["training_config"]
        total = int(self.spec["total_samples"])
        while self.state["samples_seen"] < total:
            stopped = await self._between_rounds(strategy)
            if stopped:
                return stopped
            rnd = int(self.state["round"]) + 1
            received, failed, barrier_ms = await self._round(strategy, rnd)
            if not received:
                if failed and not self._pending:
                    raise TrainingFailed(
                        f"round {rnd}: every task failed; first error: {failed[0].reason}"
                    )
                continue
            strategy.aggregate(rnd, received, failed)
            summary = strategy.summarize(rnd, received)
            self.state["round"] = rnd
            self.state["samples_seen"] += int(summary["num_samples"])
            self.state["steps"] += int(sum(u.metrics.get("steps", 0) for u in received))
            values: dict[str, float] = {
                k: summary[k]
                for k in ("loss", "accuracy", "samples_per_s", "max_staleness")
                if k in summary
            }
            values["barrier_ms"] = barrier_ms
            values["workers"] = float(len(received))
            if self.descriptor.get("validation_rows"):
                val = await self._evaluate(strategy.parameters, "validation")
                values["val_loss"], values["val_accuracy"] = val["loss"], val["accuracy"]
            await self._record(rnd, values)
            target = cfg.get("target_accuracy")
            reached = (
                target is not None
                and values.get("val_accuracy", values.get("accuracy", 0.0)) >= target
            )
            if rnd % int(cfg["checkpoint_every"]) == 0 or reached:
                await self._checkpoint(strategy, "round", back_to=_S.TRAINING)
            if reached:
                self.svc.syslog(
                    self.job_id, self.attempt, f"target accuracy {target} reached in round {rnd}"
                )
                break
        return "done"

    async def _round(
        self, strategy: AggregationStrategy, rnd: int
    ) -> tuple[list[Update], list[Failure], float]:
        """Submit this round's tasks and wait until the strategy may aggregate."""
        client = self.svc.client()
        shards = self.shard_map(self.workers)
        busy = {a.worker for _, a in self._pending.values()}
        params = strategy.parameters
        for a in strategy.configure_round(rnd, [w for w in shards if w not in busy]):
            spec = {
                "job_id": self.job_id,
                "attempt": self.attempt,
                "round": rnd,
                "dataset": self.descriptor,
                "shards": shards[a.worker],
                "model_spec": self.spec["model_spec"],
                "params": params,
                "config": dict(a.config),
                "seed": a.seed,
                "use_gpu": bool(self.spec["resources"].get("gpu")),
            }
            res = (
                {"GPU": self.spec["resources"]["gpu"]}
                if self.spec["resources"].get("gpu")
                else None
            )
            future = client.submit(
                run_training_round,
                spec,
                workers=[a.worker],
                allow_other_workers=True,
                resources=res,
                pure=False,
            )
            self._pending[asyncio.ensure_future(_settle(future))] = (future, a)
        received: list[Update] = []
        failed: list[Failure] = []
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            expected = len(received) + len(self._pending)
            if strategy.ready(rnd, len(received), expected, elapsed) or not self._pending:
                break
            done, _ = await asyncio.wait(
                list(self._pending),
                timeout=strategy.next_check_s(elapsed),
                return_when=asyncio.FIRST_COMPLETED,
            )
            for t in done:
                _, a = self._pending.pop(t)
                result, error = t.result()
                if self.svc.usage is not None:  # measured on the worker (kernels/metering.py)
                    self.svc.usage.training_result(self, a.worker, result)
                if result is not None:
                    received.append(Update.from_result(a, result))
                else:
                    failed.append(Failure(a.worker, a.round, error or "failed"))
        return received, failed, (time.monotonic() - started) * 1000

    async def _evaluate(self, params: list[np.ndarray], split: str) -> dict[str, Any]:
        client = self.svc.client()
        spec = {
            "dataset": self.descriptor,
            "split": split,
            "model_spec": self.spec["model_spec"],
            "params": params,
            "use_gpu": bool(self.spec["resources"].get("gpu")),
        }
        future = client.submit(
            run_evaluation, spec, workers=self.workers[:1], allow_other_workers=True, pure=False
        )
        result: dict[str, Any] = await future
        if self.svc.usage is not None:
            self.svc.usage.evaluation_result(self, result)
        return result

    async def _record(self, rnd: int, values: dict[str, float]) -> None:
        """A global metrics point and the job's progress block."""
        svc = self.svc
        st = self.state
        loss = values.get("loss")
        if loss is not None and (st["best_loss"] is None or loss < st["best_loss"]):
            st["best_loss"] = loss
        acc = values.get("val_accuracy")
        if acc is not None and (st["best_val_accuracy"] is None or acc > st["best_val_accuracy"]):
            st["best_val_accuracy"] = acc
        svc.sink.add(self.job_id, rnd, int(st["steps"]), values, None)
        total = int(self.spec["total_samples"])
        train_rows = max(1, int(self.spec["train_rows"]))
        batch = int(self.spec["batch_size"])
        progress = {
            "current_round": rnd,
            "current_epoch": int(st["samples_seen"] // train_rows),
            "total_epochs": int(self.spec["training_config"]["epochs"]),
            "batches_completed": int(st["steps"]),
            "total_batches": int(-(-total // batch)),
            "samples_seen": int(st["samples_seen"]),
            "total_samples": total,
            "percent_complete": round(min(100.0, 100.0 * st["samples_seen"] / total), 2),
            "current_loss": values.get("loss"),
            "best_loss": st["best_loss"],
            "current_accuracy": values.get("accuracy"),
            "val_accuracy": acc,
            "best_val_accuracy": st["best_val_accuracy"],
            "samples_per_s": values.get("samples_per_s"),
            "assigned_devices": svc.worker_ids(self.workers),
        }
        await svc.db(svc.store.update_job, self.job_id, progress=progress)
        svc.bus.publish(
            "jobs",
            {
                "job_id": self.job_id,
                "user_id": self.user_id,
                "status": _S.TRAINING.value,
                "progress": progress,
                "event": None,
            },
        )

    async def _checkpoint(
        self, strategy: AggregationStrategy, reason: str, *, back_to: JobState | None
    ) -> None:
        """CHECKPOINTING: save the global state, then go on in ``back_to`` (if given)."""
        svc = self.svc
        rnd = int(self.state["round"])
        if rnd == self.last_checkpoint_round and reason == "round":
            return
        await svc.transition(
            self.job_id, _S.CHECKPOINTING, reason=f"{reason} checkpoint of round {rnd}"
        )
        state = {**self.state, "strategy": strategy.config()}
        # encoding and fsync can take a while for a big model: not on the store's thread
        written = await asyncio.to_thread(svc.checkpoints.write, strategy.parameters, state)
        ckpt = await svc.db(
            svc.checkpoints.record,
            written,
            job_id=self.job_id,
            user_id=self.user_id,
            round=rnd,
            reason=reason,
            metrics={k: v for k, v in self.state.items() if isinstance(v, int | float)},
        )
        self.last_checkpoint_round = rnd
        svc.syslog(
            self.job_id,
            self.attempt,
            f"checkpoint {ckpt.id}: {ckpt.size} bytes at {ckpt.mb_per_s:.1f} MB/s",
        )
        if back_to is not None:
            await svc.transition(self.job_id, back_to, reason=f"checkpoint {ckpt.id} written")

    async def _between_rounds(self, strategy: AggregationStrategy) -> str | None:
        """Apply a pause, a preemption or a new share of workers; returns why it stopped."""
        svc = self.svc
        if self.pause is not None or self.preempt:
            if self._pending:
                await asyncio.wait(list(self._pending))  # let stragglers finish: nothing is lost
            if self.pause is not None:
                if self.pause:
                    await self._checkpoint(strategy, "pause", back_to=None)
                await svc.transition(self.job_id, _S.PAUSED, reason="paused by user")
                return "paused"
            await self._checkpoint(strategy, "preempt", back_to=None)
            await svc.transition(self.job_id, _S.PREEMPTED, reason="preempted by more urgent work")
            await svc.requeue(
                self.job_id, "re-queued after preemption; resumes from its checkpoint"
            )
            return "preempted"
        live = svc.live_workers()
        self.workers = [w for w in self.workers if w in live]
        wanted = [w for w in self.target if w in live]
        if wanted:
            free = svc.free_workers(self)
            self.workers = [w for w in self.workers if w in wanted] + [
                w for w in wanted if w not in self.workers and w in free
            ]
        if not self.workers:
            raise TrainingFailed("every worker of the job was lost")
        return None

    # ----------------------------------------------------------------- finish
    async def _finish(self, strategy: AggregationStrategy) -> None:
        """EVALUATING, EXPORTING, COMPLETED."""
        svc = self.svc
        if self.last_checkpoint_round != int(self.state["round"]):
            await self._checkpoint(strategy, "final", back_to=None)
        await svc.transition(self.job_id, _S.EVALUATING, reason="final evaluation")
        split = "validation" if self.descriptor.get("validation_rows") else "train"
        evaluation = await self._evaluate(strategy.parameters, split)
        evaluation["split"] = split
        result: dict[str, Any] = {
            "rounds": int(self.state["round"]),
            "samples_seen": int(self.state["samples_seen"]),
            "evaluation": evaluation,
        }
        model_id = None
        if self.spec["output_config"]["export"]:
            await svc.transition(
                self.job_id,
                _S.EXPORTING,
                reason="exporting ONNX and TorchScript to the model registry",
            )
            exported = await svc.specs.export(
                self.job_id, self.user_id, self.spec, strategy.parameters
            )
            result.update(exported)
            model_id = exported["model_id"]
        await svc.transition(
            self.job_id,
            _S.COMPLETED,
            reason=f"accuracy {evaluation['accuracy']:.4f} on the {split} split",
            ended_at=utcnow(),
            result=result,
            model_id=model_id,
            error=None,
        )

    async def _drop_pending(self) -> None:
        if not self._pending:
            return
        futures = [f for f, _ in self._pending.values()]
        for t in self._pending:
            t.cancel()
        self._pending.clear()
        with contextlib.suppress(Exception):
            await self.svc.client().cancel(futures, force=True)


async def _settle(future: Future) -> tuple[dict[str, Any] | None, str | None]:
    """A training task's result, or a short reason it failed."""
    try:
        return await future, None
    except asyncio.CancelledError:
        raise
    except StrataLabError as exc:
        return None, exc.message
    except Exception as exc:  # noqa: BLE001 - whatever the task raised on the worker
        return None, f"{type(exc).__name__}: {exc}"
