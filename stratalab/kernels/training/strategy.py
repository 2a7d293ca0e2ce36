"""Aggregation strategies: the pluggable policy of the training loop.

The coordinator's round loop (architecture decision 12) is the same for every
strategy; only the answers to four questions change, and a strategy object
gives them:

1. ``configure_round``: which of the idle workers get a local-training task
   this round, with which options and seed;
2. ``ready``: given what has reported so far, may the loop aggregate now;
3. ``aggregate``: what the new global parameters are;
4. ``next_check_s``: how long the loop may block before asking ``ready`` again.

The loop, in outline::

    strategy.initialize(initial_params)
    for rnd in itertools.count(1):
        for a in strategy.configure_round(rnd, idle_workers):
            submit train_local(strategy.parameters, ..., seed=a.seed, **a.config) to a.worker
        received, failed = [], []
        while not strategy.ready(rnd, len(received), len(received) + in_flight, elapsed):
            wait for the next finished task, at most strategy.next_check_s(elapsed) seconds
            append it to received (as an Update) or failed (as a Failure)
        params = strategy.aggregate(rnd, received, failed)
        checkpoint(params)

Tasks that are still running when a round closes are *not* cancelled: their
updates are delivered to the round that is open when they arrive and are
treated as stale (``staleness = aggregating_round - update.round``).

The FedAvg implementations (``full_sync``, ``semi_sync``, ``async``) and the
``make_strategy`` factory live in ``fedavg.py``. Strategies hold no Dask
code, so a future ``torch.distributed`` DDP strategy
(one assignment per rank, ready when all report, aggregate returns rank 0's
identical parameters) fits the same loop unchanged.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stratalab.kernels.training.aggregate import Params, weighted_metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assignment:
    """One local-training task the loop should submit this round."""

    #: Dask worker address the task is pinned to (it may run elsewhere if that worker dies).
    worker: str
    #: Round in which the task was assigned; the task trains from that round's global params.
    round: int
    #: Seed for the task's shuffling and dropout, derived from the strategy seed.
    seed: int
    #: Keyword options for ``train_local`` (epochs or local_steps, lr, batch_size, ...).
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Update:
    """A finished local-training task, as the strategy sees it."""

    #: Worker that ran the task.
    worker: str
    #: Round the task was assigned in (the version of the global params it started from).
    round: int
    #: Parameters after local training.
    params: Params
    #: Number of training samples behind the update (the FedAvg weight).
    num_samples: int
    #: Scalar metrics the task reported (loss, accuracy, samples_per_s, ...).
    metrics: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_result(cls, assignment: Assignment, result: Mapping[str, Any]) -> Update:
        """Build an update from an assignment and the dict ``train_local`` returned."""
        metrics = {
            name: float(result[name])
            for name in ("loss", "accuracy", "samples_per_s", "steps")
            if name in result and result[name] is not None
        }
        return cls(
            worker=assignment.worker,
            round=assignment.round,
            params=list(result["params"]),
            num_samples=int(result["num_samples"]),
            metrics=metrics,
        )


@dataclass(frozen=True)
class Failure:
    """A local-training task that will not report (it raised, or its worker is gone for good)."""

    #: Worker the task was assigned to.
    worker: str
    #: Round the task was assigned in.
    round: int
    #: Short, client-safe description of what went wrong.
    reason: str


class AggregationStrategy(ABC):
    """Base class of the policies that drive a training job's rounds.

    A strategy is stateful: it holds the current global parameters, set by
    :meth:`initialize` and replaced by every :meth:`aggregate`. Checkpointing
    saves :attr:`parameters`; resuming calls :meth:`initialize` with them.
    """

    #: Name used by the API's ``sync_mode`` field.
    name: str = "abstract"

    def __init__(self) -> None:
        #: Current global parameters; ``None`` until :meth:`initialize`.
        self._params: Params | None = None

    def initialize(self, params: Sequence[np.ndarray]) -> None:
        """Set the global parameters the first round (or a resumed job) starts from."""
        self._params = [np.array(layer, copy=True) for layer in params]

    @property
    def parameters(self) -> Params:
        """The current global parameters."""
        if self._params is None:
            raise RuntimeError(f"{type(self).__name__}.initialize() was not called")
        return self._params

    @abstractmethod
    def configure_round(self, round: int, workers: Sequence[str]) -> list[Assignment]:
        """Choose the tasks to submit at the start of ``round``.

        Parameters
        ----------
        round
            1-based round number.
        workers
            Workers free to take a task now. The loop leaves out workers still
            running a task from an earlier round.
        """

    @abstractmethod
    def ready(self, round: int, reported: int, expected: int, elapsed_s: float) -> bool:
        """Tell the loop whether it may aggregate ``round`` now.

        Parameters
        ----------
        round
            The open round.
        reported
            Updates received since the last aggregation, from any round.
        expected
            ``reported`` plus tasks still in flight that can still report
            (tasks known to have failed are not counted).
        elapsed_s
            Seconds since the round's tasks were submitted.
        """

    @abstractmethod
    def aggregate(
        self, round: int, results: Sequence[Update], failures: Sequence[Failure]
    ) -> Params:
        """Fold the received updates into new global parameters and return them.

        With no results the global parameters are returned unchanged, so a
        round in which every task failed does not destroy the model.
        """

    def next_check_s(self, elapsed_s: float) -> float | None:
        """Longest the loop may wait for the next update before calling :meth:`ready`.

        ``None`` means "until the next update arrives"; strategies with a
        deadline return the time left to it.
        """
        return None

    def summarize(self, round: int, results: Sequence[Update]) -> dict[str, float]:
        """Round metrics for the job's history: sample-weighted loss/accuracy and totals."""
        summary = weighted_metrics([(u.metrics, float(u.num_samples)) for u in results])
        summary.pop("samples_per_s", None)
        summary.pop("steps", None)
        summary["num_updates"] = float(len(results))
        summary["num_samples"] = float(sum(u.num_samples for u in results))
        summary["samples_per_s"] = float(sum(u.metrics.get("samples_per_s", 0.0) for u in results))
        if results:
            summary["max_staleness"] = float(max(round - u.round for u in results))
        return summary

    def config(self) -> dict[str, Any]:
        """The strategy's settings, for the job record and for re-creating it on resume."""
        return {"sync_mode": self.name}


def task_seed(seed: int, round: int, index: int) -> int:
    """Derive a task's seed from the job seed, the round and the task's index.

    ``SeedSequence`` mixes the three so neighbouring tasks get unrelated
    streams, unlike ``seed + round + index``, where round 1 task 2 and
    round 2 task 1 would collide.
    """
    return int(np.random.SeedSequence([seed, round, index]).generate_state(1)[0])
