"""The FedAvg family: ``full_sync``, ``semi_sync`` and ``async`` strategies.

All three share assignment (every idle worker gets one task, seeded from the
job seed, round and task index) and differ only in when a round may close
and how updates are folded into the global model; the maths lives in
``aggregate.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from stratalab.errors import ValidationFailed
from stratalab.kernels.registry import construct
from stratalab.kernels.training.aggregate import (
    Params,
    merge_stale,
    staleness_weight,
    weighted_average,
)
from stratalab.kernels.training.strategy import (
    AggregationStrategy,
    Assignment,
    Failure,
    Update,
    task_seed,
)

logger = logging.getLogger(__name__)


class _FedAvgBase(AggregationStrategy):
    """Shared plumbing of the FedAvg variants: assignment and seeding."""

    def __init__(
        self,
        *,
        local_config: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if max_workers is not None and max_workers < 1:
            raise ValidationFailed(
                "max_workers must be at least 1", details={"max_workers": max_workers}
            )
        #: ``train_local`` options every assignment carries.
        self.local_config: dict[str, Any] = dict(local_config or {})
        #: Cap on tasks per round; ``None`` uses every idle worker.
        self.max_workers = max_workers
        #: Root of the per-task seeds, so a job re-run with the same seed is reproducible.
        self.seed = seed

    def configure_round(self, round: int, workers: Sequence[str]) -> list[Assignment]:
        """Give each idle worker (sorted, capped at ``max_workers``) one task."""
        chosen = sorted(set(workers))
        if self.max_workers is not None:
            chosen = chosen[: self.max_workers]
        return [
            Assignment(
                worker=worker,
                round=round,
                seed=task_seed(self.seed, round, index),
                config=dict(self.local_config),
            )
            for index, worker in enumerate(chosen)
        ]

    def _has_updates(
        self, round: int, results: Sequence[Update], failures: Sequence[Failure]
    ) -> bool:
        """Log the round's failures; return False (keep the model) when nothing arrived."""
        for failure in failures:
            logger.warning(
                "round %d: task of round %d on %s failed: %s",
                round,
                failure.round,
                failure.worker,
                failure.reason,
            )
        if not results:
            logger.warning("round %d: no updates, keeping the global parameters", round)
            return False
        return True

    def config(self) -> dict[str, Any]:
        """Settings shared by the FedAvg variants."""
        return {
            **super().config(),
            "local_config": dict(self.local_config),
            "max_workers": self.max_workers,
            "seed": self.seed,
        }


class FullSyncFedAvg(_FedAvgBase):
    """Synchronous FedAvg: a barrier per round, then the sample-weighted mean.

    The reference behaviour: every round waits for every task that can still
    report, so each update is fresh and the result is exactly FedAvg. The
    slowest worker sets the pace.
    """

    name = "full_sync"

    def ready(self, round: int, reported: int, expected: int, elapsed_s: float) -> bool:
        """Ready only when every task that can still report has reported."""
        return reported >= expected

    def aggregate(
        self, round: int, results: Sequence[Update], failures: Sequence[Failure]
    ) -> Params:
        """Replace the global parameters by the sample-weighted mean of the updates."""
        if self._has_updates(round, results, failures):
            self._params = weighted_average([(u.params, u.num_samples) for u in results])
        return self.parameters


class SemiSyncFedAvg(_FedAvgBase):
    """FedAvg that closes a round after ``k`` updates or ``deadline_s`` seconds.

    Stragglers keep running; when their update arrives in a later round it is
    mixed into that round's result with weight
    ``mixing * staleness_weight(staleness, alpha=alpha)``, so slow workers
    still contribute without holding everyone else back.

    Parameters
    ----------
    k
        Updates that close a round early (capped at the tasks that can report).
    deadline_s
        Seconds after which a round closes with whatever arrived (at least one).
    alpha
        Staleness decay exponent (see :func:`staleness_weight`).
    mixing
        Base mixing weight of a late update, in ``(0, 1]``.
    local_config, max_workers, seed
        As for every FedAvg variant.
    """

    name = "semi_sync"

    def __init__(
        self,
        k: int,
        deadline_s: float,
        *,
        alpha: float = 0.5,
        mixing: float = 0.5,
        local_config: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(local_config=local_config, max_workers=max_workers, seed=seed)
        if k < 1:
            raise ValidationFailed("semi_sync needs k >= 1", details={"k": k})
        if not deadline_s > 0:
            raise ValidationFailed(
                "semi_sync needs deadline_s > 0", details={"deadline_s": deadline_s}
            )
        _check_mixing(mixing, alpha)
        #: Updates that close a round before the deadline.
        self.k = k
        #: Seconds after which a round closes with what arrived.
        self.deadline_s = float(deadline_s)
        #: Staleness decay exponent.
        self.alpha = alpha
        #: Base mixing weight of a late update.
        self.mixing = mixing

    def ready(self, round: int, reported: int, expected: int, elapsed_s: float) -> bool:
        """Ready after ``k`` updates, when nothing more can come, or at the deadline."""
        if reported >= expected or reported >= self.k:
            return True
        return elapsed_s >= self.deadline_s and reported >= 1

    def next_check_s(self, elapsed_s: float) -> float | None:
        """Wake the loop at the deadline even if no update arrives."""
        return max(0.0, self.deadline_s - elapsed_s)

    def aggregate(
        self, round: int, results: Sequence[Update], failures: Sequence[Failure]
    ) -> Params:
        """FedAvg the round's fresh updates, then mix in late ones, oldest first."""
        if not self._has_updates(round, results, failures):
            return self.parameters
        fresh = [u for u in results if u.round >= round]
        stale = sorted((u for u in results if u.round < round), key=lambda u: u.round)
        if fresh:
            self._params = weighted_average([(u.params, u.num_samples) for u in fresh])
        for update in stale:
            staleness = round - update.round
            weight = self.mixing * staleness_weight(staleness, alpha=self.alpha)
            logger.debug(
                "round %d: merging update from round %d with weight %.3f",
                round,
                update.round,
                weight,
            )
            self._params = merge_stale(self.parameters, update.params, weight)
        return self.parameters

    def config(self) -> dict[str, Any]:
        """Settings including ``k``, ``deadline_s``, ``alpha`` and ``mixing``."""
        return {
            **super().config(),
            "k": self.k,
            "deadline_s": self.deadline_s,
            "alpha": self.alpha,
            "mixing": self.mixing,
        }


class AsyncFedAvg(_FedAvgBase):
    """Asynchronous FedAvg (FedAsync): every update is merged as soon as it arrives.

    Each "round" is one version of the global model: the loop aggregates as
    soon as one update is in and immediately gives the freed worker a new
    task. An update that started from round ``r`` and is merged in round
    ``t`` has staleness ``t - r`` and is mixed with weight
    ``mixing * staleness_weight(t - r, alpha=alpha)``.

    Parameters
    ----------
    alpha
        Staleness decay exponent (see :func:`staleness_weight`).
    mixing
        Mixing weight of a fresh update, in ``(0, 1]``.
    local_config, max_workers, seed
        As for every FedAvg variant.
    """

    name = "async"

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        mixing: float = 0.5,
        local_config: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(local_config=local_config, max_workers=max_workers, seed=seed)
        _check_mixing(mixing, alpha)
        #: Staleness decay exponent.
        self.alpha = alpha
        #: Mixing weight of a fresh update.
        self.mixing = mixing

    def ready(self, round: int, reported: int, expected: int, elapsed_s: float) -> bool:
        """Ready as soon as one update is in (or nothing can come)."""
        return reported >= 1 or expected <= 0

    def aggregate(
        self, round: int, results: Sequence[Update], failures: Sequence[Failure]
    ) -> Params:
        """Merge each update in arrival order, weighted by its staleness."""
        if not self._has_updates(round, results, failures):
            return self.parameters
        for update in results:
            staleness = max(0, round - update.round)
            weight = self.mixing * staleness_weight(staleness, alpha=self.alpha)
            self._params = merge_stale(self.parameters, update.params, weight)
        return self.parameters

    def config(self) -> dict[str, Any]:
        """Settings including ``alpha`` and ``mixing``."""
        return {**super().config(), "alpha": self.alpha, "mixing": self.mixing}


def _check_mixing(mixing: float, alpha: float) -> None:
    """Reject mixing weights outside (0, 1] and negative decay exponents."""
    if not 0.0 < mixing <= 1.0:
        raise ValidationFailed("mixing must be in (0, 1]", details={"mixing": mixing})
    if alpha < 0:
        raise ValidationFailed("alpha must be >= 0", details={"alpha": alpha})


#: Strategy classes by the API's ``sync_mode`` value.
STRATEGIES: dict[str, type[AggregationStrategy]] = {
    FullSyncFedAvg.name: FullSyncFedAvg,
    SemiSyncFedAvg.name: SemiSyncFedAvg,
    AsyncFedAvg.name: AsyncFedAvg,
}


def make_strategy(sync_mode: str, **options: Any) -> AggregationStrategy:
    """Create the strategy a training job asked for by name.

    Parameters
    ----------
    sync_mode
        ``"full_sync"``, ``"semi_sync"`` or ``"async"``.
    **options
        Constructor options of that strategy (``k``, ``deadline_s``, ``alpha``,
        ``mixing``, ``local_config``, ``max_workers``, ``seed``).

    Raises
    ------
    ValidationFailed
        If the mode is unknown or an option is not accepted by it.
    """
    return construct(STRATEGIES, sync_mode, options, what="sync_mode", field="sync_mode")
