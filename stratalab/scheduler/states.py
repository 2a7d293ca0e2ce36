"""The job state machine: which state may follow which, and why.

The 13 states of the ScaiMind seed are kept with their meaning, plus
``RUNNING`` for work that is neither training nor evaluation (a script task, a
batch-inference shard): calling a shell script ``TRAINING`` would misname it.
Every transition is checked here so that no code path can skip a state.
"""

from __future__ import annotations

from enum import Enum

from stratalab.errors import Conflict


class JobState(str, Enum):
    """Where a job is in its life."""

    PENDING = "PENDING"  #: accepted and stored, not yet queued
    QUEUED = "QUEUED"  #: waiting for capacity
    SCHEDULING = "SCHEDULING"  #: placed on a worker, submitted to Dask
    PREPARING = "PREPARING"  #: the worker is loading data/model or creating the workdir
    RUNNING = "RUNNING"  #: a script task or batch shard is executing
    TRAINING = "TRAINING"  #: training rounds are executing
    CHECKPOINTING = "CHECKPOINTING"  #: a checkpoint is being written
    PAUSED = "PAUSED"  #: stopped by the user after a checkpoint; resumable
    EVALUATING = "EVALUATING"  #: evaluating a model or checkpoint
    EXPORTING = "EXPORTING"  #: exporting the trained model to the registry
    COMPLETED = "COMPLETED"  #: finished successfully
    FAILED = "FAILED"  #: finished with an error, retries spent
    CANCELLED = "CANCELLED"  #: stopped by the user
    PREEMPTED = "PREEMPTED"  #: stopped for more urgent work; re-queued by itself


#: States a job never leaves.
TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})

#: States in which a job holds capacity on a worker.
ACTIVE = frozenset(
    {
        JobState.SCHEDULING,
        JobState.PREPARING,
        JobState.RUNNING,
        JobState.TRAINING,
        JobState.CHECKPOINTING,
        JobState.EVALUATING,
        JobState.EXPORTING,
    }
)

#: States in which a job waits for the dispatcher.
WAITING = frozenset({JobState.PENDING, JobState.QUEUED})

_S = JobState
_ENDINGS = {_S.FAILED, _S.CANCELLED}
_REQUEUE = {_S.QUEUED}  # worker lost, drained, or reconciled after a restart

#: Allowed transitions, ``from -> {to, ...}``.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.PENDING: frozenset({_S.QUEUED} | _ENDINGS),
    _S.QUEUED: frozenset({_S.SCHEDULING} | _ENDINGS),
    _S.SCHEDULING: frozenset({_S.PREPARING} | _REQUEUE | _ENDINGS),
    _S.PREPARING: frozenset(
        {_S.RUNNING, _S.TRAINING, _S.EVALUATING, _S.COMPLETED} | _REQUEUE | _ENDINGS
    ),
    _S.RUNNING: frozenset({_S.COMPLETED, _S.PREEMPTED} | _REQUEUE | _ENDINGS),
    _S.TRAINING: frozenset(
        {_S.CHECKPOINTING, _S.EVALUATING, _S.EXPORTING, _S.COMPLETED, _S.PREEMPTED, _S.PAUSED}
        | _REQUEUE
        | _ENDINGS
    ),
    _S.CHECKPOINTING: frozenset(
        {_S.TRAINING, _S.PAUSED, _S.PREEMPTED, _S.EVALUATING, _S.EXPORTING, _S.COMPLETED}
        | _REQUEUE
        | _ENDINGS
    ),
    _S.PAUSED: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.EVALUATING: frozenset(
        {_S.TRAINING, _S.EXPORTING, _S.COMPLETED, _S.PREEMPTED} | _REQUEUE | _ENDINGS
    ),
    _S.EXPORTING: frozenset({_S.COMPLETED} | _REQUEUE | _ENDINGS),
    _S.PREEMPTED: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def can_transition(src: JobState, dst: JobState) -> bool:
    """Whether ``dst`` may follow ``src``."""
    return dst in TRANSITIONS[src]


def check_transition(src: JobState, dst: JobState) -> None:
    """Raise :class:`Conflict` when ``dst`` may not follow ``src``."""
    if not can_transition(src, dst):
        raise Conflict(
            f"a job in state {src.value} cannot move to {dst.value}",
            details={"from": src.value, "to": dst.value},
        )
