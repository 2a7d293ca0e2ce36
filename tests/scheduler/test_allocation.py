"""The training allocator, checked by hand: minimums, weights, caps, preemption, reservations."""

from __future__ import annotations

from stratalab.scheduler.allocation import Demand, plan_allocation, share_by_weight

W4 = ["w1", "w2", "w3", "w4"]
NO_GPU = {w: 0 for w in W4}


def test_spare_workers_follow_job_weight_within_caps() -> None:
    assert share_by_weight({"a": 3.0, "b": 1.0}, {"a": None, "b": None}, 4) == {"a": 3, "b": 1}
    # a capped job's unused share goes to the other job
    assert share_by_weight({"a": 3.0, "b": 1.0}, {"a": 1, "b": None}, 4) == {"a": 1, "b": 3}
    assert share_by_weight({"a": 1.0}, {"a": 0}, 3) == {"a": 0}


def test_one_job_takes_every_worker_up_to_its_maximum() -> None:
    out = plan_allocation([Demand("a", 5, 100.0, 1, 3)], W4, NO_GPU)
    assert len(out.targets["a"]) == 3
    assert not out.preempt and not out.pending


def test_a_job_whose_minimum_does_not_fit_waits_with_a_reason() -> None:
    out = plan_allocation([Demand("a", 5, 1.0, 5, None)], W4, NO_GPU)
    assert out.targets == {}
    assert "needs 5 worker(s)" in out.pending["a"] and "4 eligible" in out.pending["a"]


def test_a_new_job_takes_workers_from_an_over_allocated_one() -> None:
    running = Demand("a", 5, 1.0, 1, None, held=tuple(W4), running=True, order=1)
    new = Demand("b", 5, 1.0, 1, None, order=2)
    out = plan_allocation([running, new], W4, NO_GPU)
    assert len(out.targets["a"]) == 2 and len(out.targets["b"]) == 2
    assert set(out.targets["a"]) <= set(W4) and not set(out.targets["a"]) & set(out.targets["b"])
    assert out.preempt == []


def test_an_urgent_job_preempts_a_lower_one_but_equals_do_not() -> None:
    low = Demand("low", 3, 1.0, 4, None, held=tuple(W4), running=True, order=1)
    urgent = Demand("urgent", 8, 1.0, 2, None, order=2)
    out = plan_allocation([low, urgent], W4, NO_GPU)
    assert out.preempt == ["low"]
    assert len(out.targets["urgent"]) == 4
    same = Demand("same", 3, 1.0, 2, None, order=2)
    out = plan_allocation([low, same], W4, NO_GPU)
    assert out.preempt == [] and "same" in out.pending


def test_gpu_jobs_only_get_gpu_workers() -> None:
    gpus = {"w1": 1, "w2": 0, "w3": 1, "w4": 0}
    out = plan_allocation([Demand("g", 5, 1.0, 1, None, gpu=1)], W4, gpus)
    assert set(out.targets["g"]) == {"w1", "w3"}
    out = plan_allocation([Demand("g", 5, 1.0, 3, None, gpu=1)], W4, gpus)
    assert "with 1 GPU(s)" in out.pending["g"]


def test_reserved_workers_serve_only_the_job_that_claims_them() -> None:
    claimer = Demand("c", 5, 1.0, 1, None, reserved=("w1",))
    other = Demand("o", 9, 1.0, 1, None)
    out = plan_allocation([claimer, other], W4, NO_GPU)
    assert "w1" in out.targets["c"]
    assert "w1" not in out.targets["o"]
