"""Tests of the FedAvg strategies: assignment, readiness, aggregation, and one shared loop."""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from stratalab.errors import ValidationFailed
from stratalab.kernels.training import (
    AggregationStrategy,
    Assignment,
    AsyncFedAvg,
    Failure,
    FullSyncFedAvg,
    SemiSyncFedAvg,
    Update,
    make_strategy,
)


def _update(value: float, *, round: int, num_samples: int = 1, worker: str = "w") -> Update:
    return Update(worker=worker, round=round, params=[np.array([value])], num_samples=num_samples)


def test_configure_round_gives_each_idle_worker_one_seeded_task() -> None:
    # Prepare
    strategy = FullSyncFedAvg(local_config={"epochs": 2, "lr": 0.1}, seed=7)

    # Execute
    first = strategy.configure_round(3, ["tcp://b", "tcp://a", "tcp://b"])
    again = FullSyncFedAvg(local_config={"epochs": 2, "lr": 0.1}, seed=7).configure_round(
        3, ["tcp://a", "tcp://b"]
    )

    # Assert: sorted, de-duplicated, reproducible seeds that differ per task
    assert [a.worker for a in first] == ["tcp://a", "tcp://b"]
    assert all(a.round == 3 and a.config == {"epochs": 2, "lr": 0.1} for a in first)
    assert [a.seed for a in first] == [a.seed for a in again]
    assert first[0].seed != first[1].seed


def test_configure_round_respects_max_workers_and_varies_seed_by_round() -> None:
    # Prepare
    strategy = AsyncFedAvg(max_workers=2)

    # Execute
    round_one = strategy.configure_round(1, ["c", "b", "a"])
    round_two = strategy.configure_round(2, ["c", "b", "a"])

    # Assert
    assert [a.worker for a in round_one] == ["a", "b"]
    assert round_one[0].seed != round_two[0].seed


def test_parameters_before_initialize_is_an_error() -> None:
    # Execute / Assert
    with pytest.raises(RuntimeError, match="initialize"):
        _ = FullSyncFedAvg().parameters


@pytest.mark.parametrize(
    ("reported", "expected", "ready"),
    [(0, 3, False), (2, 3, False), (3, 3, True), (0, 0, True)],
)
def test_full_sync_is_a_barrier(reported: int, expected: int, ready: bool) -> None:
    # Execute / Assert: elapsed time never matters to a barrier
    assert FullSyncFedAvg().ready(1, reported, expected, elapsed_s=1e9) is ready


def test_full_sync_aggregate_is_fedavg() -> None:
    # Prepare
    strategy = FullSyncFedAvg()
    strategy.initialize([np.array([100.0])])
    results = [_update(2.0, round=1, num_samples=1), _update(4.0, round=1, num_samples=3)]

    # Execute
    params = strategy.aggregate(1, results, [])

    # Assert: (2*1 + 4*3) / 4 = 3.5
    np.testing.assert_allclose(params[0], [3.5])
    np.testing.assert_allclose(strategy.parameters[0], [3.5])


def test_round_with_only_failures_keeps_the_model() -> None:
    # Prepare
    for strategy in (FullSyncFedAvg(), SemiSyncFedAvg(k=1, deadline_s=1), AsyncFedAvg()):
        strategy.initialize([np.array([1.0, 2.0])])

        # Execute
        params = strategy.aggregate(4, [], [Failure(worker="w", round=4, reason="worker died")])

        # Assert
        np.testing.assert_array_equal(params[0], [1.0, 2.0])


@pytest.mark.parametrize(
    ("reported", "expected", "elapsed", "ready"),
    [
        (1, 4, 0.0, False),  # one of four, before the deadline
        (2, 4, 0.0, True),  # k reached
        (1, 1, 0.0, True),  # everyone that can report did
        (1, 4, 5.0, True),  # deadline with something to aggregate
        (0, 4, 50.0, False),  # deadline but nothing to aggregate
    ],
)
def test_semi_sync_ready_after_k_or_deadline(
    reported: int, expected: int, elapsed: float, ready: bool
) -> None:
    # Prepare
    strategy = SemiSyncFedAvg(k=2, deadline_s=5.0)

    # Execute / Assert
    assert strategy.ready(1, reported, expected, elapsed) is ready


def test_semi_sync_next_check_is_time_to_deadline() -> None:
    # Prepare
    strategy = SemiSyncFedAvg(k=2, deadline_s=5.0)

    # Execute / Assert
    assert strategy.next_check_s(1.5) == pytest.approx(3.5)
    assert strategy.next_check_s(9.0) == 0.0
    assert FullSyncFedAvg().next_check_s(9.0) is None


def test_semi_sync_averages_fresh_updates_then_mixes_late_ones() -> None:
    # Prepare: alpha=1 so a staleness-1 update gets 0.5 * 1/2 = 0.25
    strategy = SemiSyncFedAvg(k=2, deadline_s=5.0, alpha=1.0, mixing=0.5)
    strategy.initialize([np.array([100.0])])
    fresh = [_update(2.0, round=2, num_samples=1), _update(4.0, round=2, num_samples=3)]
    late = _update(7.5, round=1, num_samples=1000)

    # Execute
    params = strategy.aggregate(2, [late, *fresh], [])

    # Assert: fresh mean 3.5, then 3.5 * 0.75 + 7.5 * 0.25 = 4.5
    np.testing.assert_allclose(params[0], [4.5])


def test_semi_sync_with_only_late_updates_moves_the_global_model_part_way() -> None:
    # Prepare: staleness 3 with alpha 0.5 gives weight 0.5 * 0.5 = 0.25
    strategy = SemiSyncFedAvg(k=1, deadline_s=1.0, alpha=0.5, mixing=0.5)
    strategy.initialize([np.array([0.0])])

    # Execute
    params = strategy.aggregate(4, [_update(8.0, round=1)], [])

    # Assert
    np.testing.assert_allclose(params[0], [2.0])


def test_async_merges_each_update_with_its_staleness() -> None:
    # Prepare
    strategy = AsyncFedAvg(alpha=1.0, mixing=0.5)
    strategy.initialize([np.array([0.0])])

    # Execute: a fresh update, then one that started two versions ago
    after_fresh = strategy.aggregate(1, [_update(8.0, round=1)], [])[0].copy()
    after_stale = strategy.aggregate(3, [_update(8.0, round=1)], [])[0].copy()

    # Assert: 0 + (8 - 0) * 0.5 = 4; then weight 0.5 / 3: 4 + (8 - 4) / 6
    np.testing.assert_allclose(after_fresh, [4.0])
    np.testing.assert_allclose(after_stale, [4.0 + 4.0 / 6.0])


def test_async_is_ready_with_one_update() -> None:
    # Prepare
    strategy = AsyncFedAvg()

    # Execute / Assert
    assert strategy.ready(5, 1, 8, 0.0)
    assert not strategy.ready(5, 0, 8, 1e6)
    assert strategy.ready(5, 0, 0, 0.0)


def test_make_strategy_builds_each_sync_mode() -> None:
    # Execute
    full = make_strategy("full_sync")
    semi = make_strategy("semi_sync", k=2, deadline_s=3.0, seed=4)
    asynchronous = make_strategy("async", mixing=0.9)

    # Assert
    assert isinstance(full, FullSyncFedAvg)
    assert isinstance(semi, SemiSyncFedAvg)
    assert semi.config()["k"] == 2 and semi.config()["sync_mode"] == "semi_sync"
    assert isinstance(asynchronous, AsyncFedAvg)
    assert asynchronous.config()["mixing"] == 0.9


@pytest.mark.parametrize(
    ("mode", "options", "message"),
    [
        ("bulk_sync", {}, "unknown sync_mode"),
        ("full_sync", {"k": 2}, "invalid options"),
        ("semi_sync", {"deadline_s": 1.0}, "invalid options"),
        ("semi_sync", {"k": 0, "deadline_s": 1.0}, "k >= 1"),
        ("semi_sync", {"k": 1, "deadline_s": 0}, "deadline_s"),
        ("async", {"mixing": 0.0}, "mixing"),
        ("async", {"max_workers": 0}, "max_workers"),
    ],
)
def test_make_strategy_rejects_bad_requests(mode: str, options: dict, message: str) -> None:
    # Execute / Assert
    with pytest.raises(ValidationFailed, match=message) as caught:
        make_strategy(mode, **options)
    assert caught.value.code == "VALIDATION_ERROR"


def test_update_from_result_and_summary() -> None:
    # Prepare
    assignment = Assignment(worker="tcp://a", round=2, seed=1)
    results = [
        Update.from_result(
            assignment,
            {
                "params": [np.zeros(1)],
                "num_samples": 30,
                "loss": 1.0,
                "accuracy": 0.5,
                "samples_per_s": 100.0,
                "steps": 3,
            },
        ),
        Update(
            worker="tcp://b",
            round=1,
            params=[np.zeros(1)],
            num_samples=10,
            metrics={"loss": 5.0, "accuracy": 0.1, "samples_per_s": 50.0},
        ),
    ]

    # Execute
    summary = FullSyncFedAvg().summarize(2, results)

    # Assert: loss (1*30 + 5*10)/40 = 2, accuracy (0.5*30 + 0.1*10)/40 = 0.4
    assert results[0].worker == "tcp://a" and results[0].round == 2
    assert summary["loss"] == pytest.approx(2.0)
    assert summary["accuracy"] == pytest.approx(0.4)
    assert summary["num_samples"] == 40 and summary["num_updates"] == 2
    assert summary["samples_per_s"] == pytest.approx(150.0)
    assert summary["max_staleness"] == 1


def run_loop(
    strategy: AggregationStrategy, durations: dict[str, float], rounds: int
) -> list[list[Update]]:
    """The coordinator's round loop in simulated time, the same for every strategy.

    A task "trains" by returning the global value it started from plus one.
    """
    strategy.initialize([np.array([0.0])])
    clock = 0.0
    pending: list[
        tuple[float, int, Assignment, float]
    ] = []  # (finish, tiebreak, task, start value)
    busy: set[str] = set()
    history: list[list[Update]] = []
    counter = 0
    for rnd in range(1, rounds + 1):
        idle = [w for w in durations if w not in busy]
        for task in strategy.configure_round(rnd, idle):
            counter += 1
            start_value = float(strategy.parameters[0][0])
            heapq.heappush(pending, (clock + durations[task.worker], counter, task, start_value))
            busy.add(task.worker)
        opened = clock
        received: list[Update] = []
        while not strategy.ready(rnd, len(received), len(received) + len(pending), clock - opened):
            wait = strategy.next_check_s(clock - opened)
            if pending and (wait is None or pending[0][0] <= clock + wait):
                finish, _, task, start_value = heapq.heappop(pending)
                clock = finish
                busy.discard(task.worker)
                received.append(
                    Update(
                        worker=task.worker,
                        round=task.round,
                        params=[np.array([start_value + 1.0])],
                        num_samples=1,
                    )
                )
            else:
                assert wait is not None, "the loop would wait forever"
                clock += wait
        strategy.aggregate(rnd, received, [])
        history.append(received)
    return history


def test_the_same_loop_drives_every_strategy() -> None:
    # Prepare: two fast workers and one three times slower
    durations = {"fast-1": 1.0, "fast-2": 1.0, "slow": 3.0}

    # Execute
    full = run_loop(FullSyncFedAvg(), durations, rounds=3)
    semi = run_loop(SemiSyncFedAvg(k=2, deadline_s=10.0), durations, rounds=3)
    asynchronous = run_loop(AsyncFedAvg(), durations, rounds=6)

    # Assert: the barrier waits for everyone, every update fresh
    assert [len(r) for r in full] == [3, 3, 3]
    assert all(u.round == i + 1 for i, r in enumerate(full) for u in r)
    # semi-sync closes rounds on the two fast workers; the slow one arrives late
    assert [len(r) for r in semi[:2]] == [2, 2]
    late = [u for i, r in enumerate(semi) for u in r if u.round < i + 1]
    assert late and all(u.worker == "slow" for u in late)
    # async aggregates one update at a time
    assert all(len(r) == 1 for r in asynchronous)
    assert any(
        u.worker == "slow" and u.round < i + 1 for i, r in enumerate(asynchronous) for u in r
    )
