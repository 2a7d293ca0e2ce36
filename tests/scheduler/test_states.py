"""The job state machine."""

from __future__ import annotations

import pytest

from stratalab.errors import Conflict
from stratalab.scheduler.states import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    JobState,
    can_transition,
    check_transition,
)

SCAIMIND = {
    "PENDING",
    "QUEUED",
    "SCHEDULING",
    "PREPARING",
    "TRAINING",
    "CHECKPOINTING",
    "PAUSED",
    "EVALUATING",
    "EXPORTING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "PREEMPTED",
}


def test_all_thirteen_seed_states_exist_plus_running():
    assert {s.value for s in JobState} == SCAIMIND | {"RUNNING"}


def test_every_state_has_a_transition_entry_and_terminals_are_final():
    assert set(TRANSITIONS) == set(JobState)
    for state in TERMINAL:
        assert TRANSITIONS[state] == frozenset()


def test_every_non_terminal_state_can_end():
    for state in set(JobState) - TERMINAL:
        assert can_transition(state, JobState.CANCELLED), state


def test_every_state_is_reachable_from_pending():
    seen, frontier = {JobState.PENDING}, [JobState.PENDING]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(JobState)


def test_active_jobs_can_be_requeued_after_a_lost_worker():
    for state in ACTIVE:
        assert can_transition(state, JobState.QUEUED), state


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (JobState.COMPLETED, JobState.QUEUED),
        (JobState.QUEUED, JobState.RUNNING),
        (JobState.PENDING, JobState.COMPLETED),
        (JobState.PAUSED, JobState.RUNNING),
    ],
)
def test_illegal_transitions_raise_conflict(src, dst):
    with pytest.raises(Conflict) as info:
        check_transition(src, dst)
    assert info.value.details == {"from": src.value, "to": dst.value}
