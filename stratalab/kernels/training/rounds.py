"""The Dask tasks of a training job: one local-training round, one evaluation.

Training is rounds of Dask tasks (architecture decision 12): each round the
coordinator submits :func:`run_training_round` once per assigned worker,
pinned to the worker whose shard cache holds the shards, aggregates the
returned parameters with its strategy, and checkpoints. These wrappers are
the only Dask-aware part of training: they load shards through the worker's
cache, pick the device, time the work, and publish step metrics on the
:data:`~stratalab.kernels.topics.METRICS` event topic while ``train_local``
runs. A spec is a plain dict, so the coordinator stores and resubmits it as is.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from distributed import get_worker

from stratalab.errors import ValidationFailed
from stratalab.kernels import topics
from stratalab.kernels.data.base import Arrays
from stratalab.kernels.data.cache import load_shard, load_validation
from stratalab.kernels.metering import Meter
from stratalab.kernels.training.architectures import build_model, prepare_inputs, set_params
from stratalab.kernels.training.local import evaluate, train_local

__all__ = [
    "MIN_EVENT_INTERVAL_S",
    "TRAIN_OPTIONS",
    "MetricThrottle",
    "run_evaluation",
    "run_training_round",
]

logger = logging.getLogger(__name__)

#: ``publish(topic, event)``: where a task's events go.
Publish = Callable[[str, dict[str, Any]], None]

#: Keys of a round's ``config``: the ``train_local`` options a job may set.
TRAIN_OPTIONS = ("epochs", "local_steps", "batch_size", "lr", "optimizer", "weight_decay")
#: At most one step-metrics event per task per this many seconds (plus the last
#: step): enough for a live chart, and bounded load on the scheduler however fast
#: the steps are.
MIN_EVENT_INTERVAL_S = 0.25


class MetricThrottle:
    """Passes on at most one event per ``interval`` seconds, and the last one.

    An event that arrives too soon is held; :meth:`flush` publishes it if no
    later event replaced it, so the final step of a round always reaches the
    dashboard.
    """

    def __init__(
        self,
        publish: Callable[[dict[str, Any]], None],
        *,
        interval: float = MIN_EVENT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._held: dict[str, Any] | None = None

    def offer(self, event: dict[str, Any]) -> None:
        """Publish ``event`` now, or hold it if the previous one was too recent."""
        now = self._clock()
        if self._last is None or now - self._last >= self._interval:
            self._last = now
            self._held = None
            self._publish(event)
        else:
            self._held = event

    def flush(self) -> None:
        """Publish the held event, if any."""
        if self._held is not None:
            event, self._held = self._held, None
            self._last = self._clock()
            self._publish(event)


def _worker_context(publish: Publish | None) -> tuple[str | None, Publish | None]:
    """The Dask worker's address and where events go (nowhere off a worker)."""
    try:
        worker = get_worker()
    except ValueError:
        worker = None
    address = worker.address if worker is not None else None
    if publish is None and worker is not None:
        publish = worker.log_event
    return address, publish


def _device(use_gpu: bool) -> str:
    """``"cuda"`` when asked for and present, else ``"cpu"``."""
    return "cuda" if use_gpu and torch.cuda.is_available() else "cpu"


def _concat(parts: Sequence[Arrays]) -> Arrays:
    """One ``(X, y)`` from several shards (no copy for a single shard)."""
    if len(parts) == 1:
        return parts[0]
    return (
        np.concatenate([x for x, _ in parts], axis=0),
        np.concatenate([y for _, y in parts], axis=0),
    )


def _first_rows(arrays: Arrays, limit: int | None, name: str) -> Arrays:
    """The first ``limit`` rows (all when ``limit`` is None)."""
    if limit is None:
        return arrays
    if isinstance(limit, bool) or int(limit) < 1:
        raise ValidationFailed(f"{name} must be a positive integer", details={name: limit})
    x, y = arrays
    return x[: int(limit)], y[: int(limit)]


def _train_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The round's ``train_local`` keyword options; ``None`` means the default."""
    unknown = sorted(set(config) - set(TRAIN_OPTIONS))
    if unknown:
        raise ValidationFailed(
            f"unknown training option(s): {', '.join(unknown)}",
            details={"unknown": unknown, "allowed": list(TRAIN_OPTIONS)},
        )
    return {key: value for key, value in config.items() if value is not None}


def run_training_round(spec: dict[str, Any], publish: Publish | None = None) -> dict[str, Any]:
    """Train one worker's shards for one round: the Dask task the round loop submits.

    Parameters
    ----------
    spec
        ``job_id``, ``attempt``, ``round``; ``dataset`` (a shard-cache
        descriptor, see :mod:`stratalab.kernels.data.cache`); ``shards`` (the
        shard indices to train on, concatenated in order); ``model_spec``;
        ``params`` (the global parameters, or ``None`` to initialise from
        ``seed``); ``config`` (``train_local`` options, keys in
        :data:`TRAIN_OPTIONS`); ``seed``; ``use_gpu``; optionally
        ``report_every`` (steps between metric reports, default 10) and
        ``max_samples`` (use only the first rows, for quick rounds).
    publish
        Receives ``(topic, event)`` for every metrics event. Given explicitly
        it wins; otherwise events go to the Dask worker's ``log_event``, or
        nowhere when this runs outside a worker.

    Returns
    -------
    dict
        What ``train_local`` returns (``params``, ``num_samples``, ``loss``,
        ``accuracy``, ``samples_per_s``, ``steps``) plus ``worker`` (address,
        or ``None`` off a worker), ``device`` (``"cpu"``/``"cuda"``),
        ``compute_s`` (wall seconds of the whole task, loading included),
        ``shards``, and ``cpu_ms``, ``gpu_ms``, ``energy_j`` of the training
        itself (:class:`~stratalab.kernels.metering.Meter`; ``energy_j`` is
        ``None`` where the machine cannot measure it).

    Raises
    ------
    ValidationFailed
        If the spec asks for no shards, an unknown option, or anything
        ``train_local`` refuses.
    """
    started = time.perf_counter()
    address, target = _worker_context(publish)
    device = _device(bool(spec.get("use_gpu", False)))
    shards = [int(index) for index in spec["shards"]]
    if not shards:
        raise ValidationFailed("a training round needs at least one shard")
    options = _train_options(spec.get("config") or {})
    report_every = spec.get("report_every")
    report_every = 10 if report_every is None else int(report_every)
    if report_every < 1:
        raise ValidationFailed(
            "report_every must be a positive integer", details={"report_every": report_every}
        )
    features, labels = _first_rows(
        _concat([load_shard(spec["dataset"], index) for index in shards]),
        spec.get("max_samples"),
        "max_samples",
    )

    on_step = None
    throttle = None
    if target is not None:
        emit = target  # bound for the closure below: mypy cannot narrow across it
        job = {
            "job_id": str(spec["job_id"]),
            "attempt": int(spec["attempt"]),
            "round": int(spec["round"]),
        }

        def send(event: dict[str, Any]) -> None:
            try:
                emit(topics.METRICS, event)
            except Exception:  # a lost chart point must not fail a training round
                logger.warning("could not publish a training metrics event", exc_info=True)

        throttle = MetricThrottle(send)
        on_step = _step_reporter(
            throttle,
            {**job, "worker": address},
            rows=len(labels),
            batch_size=int(options.get("batch_size", 32)),
        )

    with Meter(device) as meter:  # what usage and billing count (see kernels/metering.py)
        result = train_local(
            spec.get("params"),
            spec["model_spec"],
            (features, labels),
            seed=int(spec["seed"]),
            device=device,
            on_step=on_step,
            report_every=report_every,
            **options,
        )
    if throttle is not None:
        throttle.flush()
    result.update(
        worker=address,
        device=device,
        compute_s=time.perf_counter() - started,
        shards=shards,
        **meter.usage(),
    )
    return result


def _step_reporter(
    throttle: MetricThrottle, header: dict[str, Any], *, rows: int, batch_size: int
) -> Callable[[int, dict[str, float]], None]:
    """The ``on_step`` callback: turn train_local's progress into METRICS events.

    Throughput counts the samples of the steps so far (a pass over ``rows``
    takes ``ceil(rows / batch_size)`` steps, the last batch possibly short)
    against the time since the first callback was created.
    """
    batches_per_pass = max(1, math.ceil(rows / batch_size))
    began = time.perf_counter()

    def on_step(step: int, metrics: dict[str, float]) -> None:
        passes, position = divmod(step, batches_per_pass)
        seen = passes * rows + min(position * batch_size, rows)
        elapsed = max(time.perf_counter() - began, 1e-9)
        event = {
            **header,
            "step": step,
            "loss": float(metrics["loss"]),
            "accuracy": float(metrics["accuracy"]),
            "samples_per_s": seen / elapsed,
            "ts": time.time(),
        }
        throttle.offer(event)

    return on_step


def run_evaluation(spec: dict[str, Any]) -> dict[str, Any]:
    """Evaluate parameters on a dataset split: the Dask task behind evaluations.

    Parameters
    ----------
    spec
        ``dataset`` (a shard-cache descriptor); ``split``: ``"validation"``
        (the held-out rows) or ``"train"`` (every training shard, in order);
        ``model_spec``; ``params``; ``use_gpu``; optionally ``num_samples``
        (only the first rows) and ``batch_size`` (default 1024).

    Returns
    -------
    dict
        What ``evaluate`` returns (``loss``, ``accuracy``, ``num_samples``,
        ``per_class``) plus ``latency_ms``, ``worker``, ``device`` and the
        :class:`~stratalab.kernels.metering.Meter` figures (``cpu_ms``,
        ``gpu_ms``, ``energy_j``).
        ``latency_ms`` is the mean forward time per sample: a separate,
        forward-only pass over the same rows in the same batches, timed as a
        whole (GPU synchronised) and divided by the rows, so it measures the
        network and not the metric bookkeeping.

    Raises
    ------
    ValidationFailed
        If the split is unknown or the data do not fit the model.
    """
    address, _ = _worker_context(None)
    device = _device(bool(spec.get("use_gpu", False)))
    descriptor = spec["dataset"]
    split = spec.get("split", "validation")
    if split == "validation":
        arrays = load_validation(descriptor)
    elif split == "train":
        shards = range(int(descriptor["num_shards"]))
        arrays = _concat([load_shard(descriptor, index) for index in shards])
    else:
        raise ValidationFailed(
            f"unknown split {split!r}", details={"split": split, "allowed": ["validation", "train"]}
        )
    features, labels = _first_rows(arrays, spec.get("num_samples"), "num_samples")
    batch_size = int(spec.get("batch_size") or 1024)
    if batch_size < 1:
        raise ValidationFailed("batch_size must be positive", details={"batch_size": batch_size})
    with Meter(device) as meter:
        params, model_spec = spec["params"], spec["model_spec"]
        report = evaluate(
            params, model_spec, features, labels, batch_size=batch_size, device=device
        )
        latency = _forward_seconds(model_spec, params, features, batch_size, device)
    report.update(
        latency_ms=latency * 1000.0 / report["num_samples"],
        worker=address,
        device=device,
        **meter.usage(),
    )
    return report


def _forward_seconds(
    model_spec: Mapping[str, Any],
    params: Sequence[np.ndarray],
    features: np.ndarray,
    batch_size: int,
    device: str,
) -> float:
    """Wall seconds of forward passes over ``features`` in batches, in eval mode."""
    inputs = prepare_inputs(model_spec, features)
    with torch.random.fork_rng(devices=[]):
        model = build_model(model_spec)
    set_params(model, params)
    model.to(device).eval()
    with torch.no_grad():
        model(inputs[:1].to(device))  # warm-up: first-call allocation is not latency
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for start in range(0, len(inputs), batch_size):
            model(inputs[start : start + batch_size].to(device))
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started


def prepare_worker(
    dataset: Mapping[str, Any], shards: Sequence[int], model_spec: Mapping[str, Any]
) -> dict[str, Any]:
    """The PREPARING step on one worker: cache its shards and build the model once.

    Building the model and taking one optimizer step here (importing torch,
    loading a TorchScript file) keeps that one-off cost out of the first
    training round, and a model that cannot take the data fails the job
    before any round runs.
    """
    started = time.perf_counter()
    parts = [load_shard(dataset, int(s)) for s in shards]
    features, labels = _concat(parts)
    # one real step on two rows: torch's first optimizer step imports and sets up
    # much of torch (about a second on a small CPU), which belongs here, not in round 1
    train_local(None, model_spec, (features[:2], labels[:2]), local_steps=1, batch_size=2)
    return {
        "rows": int(sum(len(p[1]) for p in parts)),
        "seconds": time.perf_counter() - started,
    }
