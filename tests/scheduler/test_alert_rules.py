"""The pure side of alerts: rules, their evaluation over time, and the figures."""

from __future__ import annotations

import pytest

from stratalab.scheduler.alert_rules import (
    DEFAULT_RULES,
    AlertRule,
    FailedJob,
    Raised,
    Resolved,
    RuleTracker,
    Sample,
    WorkerLossWatch,
    failure_samples,
    memory_samples,
    merge_rules,
    queue_wait_sample,
)

MEM = AlertRule(
    "memory_high", "worker_memory_fraction", ">", 0.9, duration_s=30, severity="warning"
)


def mem(subject: str, value: float) -> Sample:
    return Sample("worker_memory_fraction", subject, value)


@pytest.mark.parametrize(
    ("comparison", "value", "breached"),
    [(">", 1.0, True), (">", 0.5, False), (">=", 0.5, True), ("<", 0.4, True), ("==", 0.5, True)],
)
def test_a_rule_compares_its_figure_with_its_threshold(comparison, value, breached):
    rule = AlertRule("r", "queue_wait_s", comparison, 0.5)

    assert rule.breached(value) is breached


def test_a_condition_must_hold_for_the_rules_duration_before_it_raises():
    tracker = RuleTracker()

    first = tracker.evaluate([MEM], [mem("wrk_a", 0.95)], now=100.0)
    early = tracker.evaluate([MEM], [mem("wrk_a", 0.96)], now=129.0)
    held = tracker.evaluate([MEM], [mem("wrk_a", 0.97)], now=130.0)
    again = tracker.evaluate([MEM], [mem("wrk_a", 0.97)], now=200.0)

    assert first == [] and early == []
    assert len(held) == 1 and isinstance(held[0], Raised)
    assert held[0].sample.value == 0.97 and held[0].rule is MEM
    assert held[0].message == "memory_high on wrk_a: worker_memory_fraction = 0.97 (> 0.9 for 30 s)"
    assert again == []  # one alert per (rule, subject) while it holds


def test_a_dip_below_the_threshold_restarts_the_duration():
    tracker = RuleTracker()

    tracker.evaluate([MEM], [mem("wrk_a", 0.95)], now=0.0)
    tracker.evaluate([MEM], [mem("wrk_a", 0.5)], now=20.0)
    after_dip = tracker.evaluate([MEM], [mem("wrk_a", 0.95)], now=40.0)
    held = tracker.evaluate([MEM], [mem("wrk_a", 0.95)], now=70.0)

    assert after_dip == []
    assert [type(c) for c in held] == [Raised]


def test_an_alert_resolves_when_its_condition_clears_or_its_subject_goes():
    rule = AlertRule("hot", "worker_memory_fraction", ">", 0.9)
    tracker = RuleTracker()
    tracker.evaluate([rule], [mem("wrk_a", 0.95), mem("wrk_b", 0.99)], now=0.0)

    cleared = tracker.evaluate([rule], [mem("wrk_a", 0.2), mem("wrk_b", 0.99)], now=5.0)
    gone = tracker.evaluate([rule], [], now=10.0, measured={"worker_memory_fraction"})

    assert cleared == [Resolved("hot", "wrk_a", 0.2)]
    assert gone == [Resolved("hot", "wrk_b", None)]
    assert tracker.firing == set()


def test_a_metric_that_could_not_be_measured_keeps_its_alerts():
    rule = AlertRule("failed", "job_failed", ">=", 1)
    tracker = RuleTracker()
    tracker.evaluate([rule], [Sample("job_failed", "job_1", 1.0, user_id="ann")], now=0.0)

    unmeasured = tracker.evaluate([rule], [], now=5.0, measured=set())

    assert unmeasured == []
    assert tracker.firing == {("failed", "job_1")}


def test_a_disabled_rule_resolves_what_it_raised_and_adopted_alerts_are_not_raised_again():
    rule = AlertRule("lost", "workers_lost", ">", 0)
    tracker = RuleTracker()
    tracker.adopt([("lost", "cluster")])

    still = tracker.evaluate([rule], [Sample("workers_lost", "cluster", 1.0)], now=0.0)
    disabled = tracker.evaluate(
        [AlertRule("lost", "workers_lost", ">", 0, enabled=False)],
        [Sample("workers_lost", "cluster", 1.0)],
        now=1.0,
    )

    assert still == []
    assert disabled == [Resolved("lost", "cluster", None)]


def test_configuration_changes_default_rules_by_name_and_adds_new_ones():
    rules = merge_rules(
        DEFAULT_RULES,
        [
            {"name": "memory_high", "threshold": 0.8, "severity": "critical"},
            {"name": "slow_queue", "metric": "queue_wait_s", "comparison": ">", "threshold": 60},
        ],
    )
    by_name = {r.name: r for r in rules}

    assert by_name["memory_high"].threshold == 0.8
    assert by_name["memory_high"].severity == "critical"
    assert by_name["memory_high"].duration_s == 30  # untouched fields keep their defaults
    assert by_name["slow_queue"].metric == "queue_wait_s"
    assert {"worker_lost", "memory_high", "queue_wait", "job_failed", "failed_jobs"} <= set(by_name)


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"threshold": 1}, "name"),
        ({"name": "x", "metric": "nope", "comparison": ">", "threshold": 1}, "unknown metric"),
        ({"name": "memory_high", "comparison": "~"}, "unknown comparison"),
        ({"name": "memory_high", "severity": "fatal"}, "severity"),
        ({"name": "memory_high", "threshold": "high"}, "threshold must be a number"),
        ({"name": "memory_high", "duration_s": -1}, "duration_s"),
        ({"name": "memory_high", "colour": "red"}, "unknown fields"),
        ({"name": "new_rule", "metric": "queue_wait_s"}, "new_rule"),
    ],
)
def test_a_bad_rule_in_the_configuration_is_refused_by_name(override, complaint):
    with pytest.raises(ValueError, match=complaint):
        merge_rules(DEFAULT_RULES, [override])


def test_a_worker_seen_lately_and_gone_now_counts_as_lost_until_the_window_passes():
    watch = WorkerLossWatch(window_s=60)

    full = watch.observe(["wrk_a", "wrk_b"], now=0.0)
    lost = watch.observe(["wrk_a"], now=10.0)
    later = watch.observe(["wrk_a"], now=100.0)

    assert full.value == 0
    assert lost.value == 1 and lost.details["lost"] == ["wrk_b"] and "wrk_b" in (lost.text or "")
    assert later.value == 0  # a smaller cluster is the new normal after the window


def test_memory_queue_and_failure_figures():
    memory = memory_samples([("wrk_a", 950.0, 1000), ("wrk_b", None, 1000), ("wrk_c", 5.0, 0)])
    empty_queue = queue_wait_sample([], now=50.0)
    waiting = queue_wait_sample([10.0, 30.0], now=50.0)
    failures = failure_samples(
        [
            FailedJob("job_1", "ann", "train", "Traceback...\nboom", 1.0),
            FailedJob("job_2", "bob", "t", None, 2.0),
        ]
    )

    assert [(s.subject, s.value) for s in memory] == [("wrk_a", 0.95)]
    assert empty_queue.value == 0 and waiting.value == 40.0
    per_job = {s.subject: s for s in failures if s.metric == "job_failed"}
    assert per_job["job_1"].user_id == "ann" and per_job["job_1"].details["job_id"] == "job_1"
    assert "Traceback..." in (per_job["job_1"].text or "") and "boom" not in (
        per_job["job_1"].text or ""
    )
    (count,) = [s for s in failures if s.metric == "failed_jobs"]
    assert count.value == 2 and count.user_id is None
