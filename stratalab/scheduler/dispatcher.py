"""Which queued job runs next, and on which worker: pure decisions, no I/O.

Ordering: highest *aged* priority first, FIFO among equals. Aging lifts a
waiting job by one priority level per ``aging_interval_s`` seconds in the
queue, capped at 10::

    priority_aged = min(10, priority + seconds_waiting / aging_interval_s)

so a priority-1 job waits at most ``9 * aging_interval_s`` before it ties with
fresh priority-10 work, and no job starves. A job that does not fit on any
worker does not block smaller jobs behind it (backfill); it gets a "why
pending" reason naming the resource it waits for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: Highest priority (most urgent).
MAX_PRIORITY = 10
#: Lowest priority.
MIN_PRIORITY = 1


def aged_priority(priority: int, waited_s: float, aging_interval_s: float) -> float:
    """Effective priority after waiting ``waited_s`` seconds (see module doc)."""
    if aging_interval_s <= 0:
        return float(priority)
    return min(float(MAX_PRIORITY), priority + max(0.0, waited_s) / aging_interval_s)


@dataclass(frozen=True)
class Request:
    """What a job needs from one worker."""

    cpu: int = 1  #: worker threads (Dask ``nthreads``) the job occupies
    memory_gb: float = 0.0  #: memory the job expects to use
    gpu: int = 0  #: whole GPUs (Dask ``GPU`` resource)


@dataclass(frozen=True)
class QueuedJob:
    """The dispatcher's view of one waiting job."""

    id: str
    priority: int
    queued_at: float  #: epoch seconds when it entered the queue
    seq: int  #: submission order, the FIFO tie-breaker
    request: Request
    user_id: str = ""  #: owner, for per-user queue statistics


@dataclass
class WorkerSlot:
    """The dispatcher's view of one worker's capacity and use."""

    address: str
    nthreads: int
    memory_gb: float
    gpus: int
    accepting: bool = True  #: False while drained or closing
    used_cpu: int = 0
    used_memory_gb: float = 0.0
    used_gpus: int = 0

    def fits(self, r: Request) -> bool:
        """Whether ``r`` fits in what is free now."""
        return (
            self.accepting
            and self.nthreads - self.used_cpu >= r.cpu
            and self.memory_gb - self.used_memory_gb >= r.memory_gb
            and self.gpus - self.used_gpus >= r.gpu
        )

    def take(self, r: Request) -> None:
        """Account ``r`` as running here."""
        self.used_cpu += r.cpu
        self.used_memory_gb += r.memory_gb
        self.used_gpus += r.gpu


@dataclass
class Plan:
    """The outcome of one dispatch pass."""

    #: (job id, worker address) to start now, in order.
    placements: list[tuple[str, str]] = field(default_factory=list)
    #: why each job that stays queued waits.
    pending: dict[str, str] = field(default_factory=dict)
    #: aged priority of every queued job considered.
    aged: dict[str, float] = field(default_factory=dict)


def order(jobs: Iterable[QueuedJob], now: float, aging_interval_s: float) -> list[QueuedJob]:
    """Queued jobs in dispatch order (aged priority desc, then FIFO)."""
    return sorted(
        jobs, key=lambda j: (-aged_priority(j.priority, now - j.queued_at, aging_interval_s), j.seq)
    )


def _fmt(value: float) -> str:
    return f"{value:g}"


def explain(r: Request, workers: Sequence[WorkerSlot]) -> str:
    """Why ``r`` cannot start now, naming the scarce resource."""
    live = [w for w in workers if w.accepting]
    if not workers:
        return "waiting for a worker; 0 connected"
    if not live:
        return f"waiting for a worker; all {len(workers)} are drained"
    checks = (
        ("GPU", r.gpu, [(w.gpus - w.used_gpus, w.gpus) for w in live]),
        ("cpu", r.cpu, [(w.nthreads - w.used_cpu, w.nthreads) for w in live]),
        ("memory_gb", r.memory_gb, [(w.memory_gb - w.used_memory_gb, w.memory_gb) for w in live]),
    )
    for name, need, pairs in checks:
        if need and max(free for free, _ in pairs) < need:
            free = sum(max(f, 0) for f, _ in pairs)
            total = sum(t for _, t in pairs)
            never = "" if max(t for _, t in pairs) >= need else "; no worker has that many"
            return f"waiting for {name}={_fmt(need)}; {_fmt(free)} of {_fmt(total)} free{never}"
    return "waiting for one worker with all requested resources free at once"


def _best(r: Request, workers: Sequence[WorkerSlot]) -> WorkerSlot | None:
    """The fitting worker to use: GPU work on GPU workers, CPU work elsewhere first."""
    best: WorkerSlot | None = None
    best_key: tuple[int, int] = (0, 0)
    for w in workers:
        if not w.fits(r):
            continue
        wasted_gpus = w.gpus - w.used_gpus - r.gpu
        key = (-wasted_gpus, w.nthreads - w.used_cpu)
        if best is None or key > best_key:
            best, best_key = w, key
    return best


def plan(
    queued: Iterable[QueuedJob],
    workers: Sequence[WorkerSlot],
    now: float,
    aging_interval_s: float,
) -> Plan:
    """Decide which queued jobs start where; ``workers`` are updated in place.

    Cost is one sort plus O(1) per job once the cluster is full: the reason a
    request waits only changes when a placement changes free capacity, so it
    is computed once per distinct request between placements.
    """
    result = Plan()
    aged = {j.id: aged_priority(j.priority, now - j.queued_at, aging_interval_s) for j in queued}
    result.aged = aged
    jobs = sorted(queued, key=lambda j: (-aged[j.id], j.seq))
    reasons: dict[Request, str] = {}
    can_place = any(w.accepting for w in workers)
    for job in jobs:
        r = job.request
        if can_place and r not in reasons:
            target = _best(r, workers)
            if target is not None:
                target.take(r)
                result.placements.append((job.id, target.address))
                reasons.clear()
                can_place = any(
                    w.accepting and (w.used_cpu < w.nthreads or w.used_gpus < w.gpus)
                    for w in workers
                )
                continue
        reason = reasons.get(r)
        if reason is None:
            reason = reasons[r] = explain(r, workers)
        result.pending[job.id] = reason
    return result
