"""Which training job gets which workers: a pure function, so it can be tested by hand.

Rules (the DCP and FetchML seeds):

* Jobs are served in priority order (running before queued at equal
  priority, then oldest first). A job is admitted only if its
  ``min_devices`` fit in the workers the jobs before it leave.
* A running job that no longer fits is *preempted*: a more urgent job (or a
  reservation, which removes workers from the pool) took its place. At equal
  priority nobody preempts anybody.
* Workers left after every admitted job has its minimum are shared in
  proportion to job weight (``total_samples * epochs``), capped at
  ``max_devices``, by largest remainder.
* A running job keeps the workers it holds where it can (its shards are
  cached there); a job over its new share gives workers back between rounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Demand:
    """What one training job asks for and holds."""

    job_id: str
    priority: int
    #: ``total_samples * epochs``: a heavier job gets a larger share of spare workers.
    weight: float
    min_devices: int
    max_devices: int | None
    #: GPUs each of its tasks needs (0: any worker).
    gpu: int = 0
    #: workers it holds now (empty for a queued job).
    held: tuple[str, ...] = ()
    running: bool = False
    #: tie-break among equal priorities (queue time, seconds).
    order: float = 0.0
    #: workers reserved for this job (a claimed reservation), usable by no one else.
    reserved: tuple[str, ...] = ()


@dataclass
class Allocation:
    """The outcome of one planning pass."""

    #: the workers each admitted job should hold.
    targets: dict[str, list[str]] = field(default_factory=dict)
    #: running jobs that must stop (checkpoint, PREEMPTED, re-queued).
    preempt: list[str] = field(default_factory=list)
    #: queued jobs left waiting, with the reason.
    pending: dict[str, str] = field(default_factory=dict)


def _eligible(demand: Demand, pool: Sequence[str], gpus: Mapping[str, int]) -> list[str]:
    """Workers of ``pool`` (plus its reservation) this job can run on."""
    candidates = list(dict.fromkeys([*demand.reserved, *pool]))
    if demand.gpu:
        candidates = [w for w in candidates if gpus.get(w, 0) >= demand.gpu]
    return candidates


def share_by_weight(
    weights: Mapping[str, float], caps: Mapping[str, int | None], spare: int
) -> dict[str, int]:
    """Split ``spare`` workers in proportion to weight, capped, by largest remainder.

    Repeats while a capped job leaves workers unused, so spare capacity goes
    to the jobs that can still take it.
    """
    extra = dict.fromkeys(weights, 0)
    open_jobs = {j for j in weights if caps.get(j) is None or (caps[j] or 0) > 0}
    while spare > 0 and open_jobs:
        total = sum(max(weights[j], 1e-12) for j in open_jobs)
        quotas = {j: spare * max(weights[j], 1e-12) / total for j in open_jobs}
        given = {j: math.floor(q) for j, q in quotas.items()}
        left = spare - sum(given.values())
        for j in sorted(open_jobs, key=lambda j: (quotas[j] - given[j], j), reverse=True)[:left]:
            given[j] += 1
        handed = 0
        for j in sorted(open_jobs):
            cap = caps.get(j)
            room = given[j] if cap is None else min(given[j], cap - extra[j])
            extra[j] += room
            handed += room
            if cap is not None and extra[j] >= cap:
                open_jobs.discard(j)
        if handed == 0:
            break
        spare -= handed
    return extra


def plan_allocation(
    demands: Sequence[Demand], workers: Sequence[str], gpus: Mapping[str, int]
) -> Allocation:
    """Decide which job holds which worker.

    Parameters
    ----------
    demands
        Every running and queued training job.
    workers
        Workers training may use (live, not drained, not held by a reservation
        that no job here claims).
    gpus
        GPUs per worker address.
    """
    out = Allocation()
    reserved_all = {w for d in demands for w in d.reserved}
    pool = [w for w in sorted(workers) if w not in reserved_all]
    ordered = sorted(demands, key=lambda d: (-d.priority, not d.running, d.order, d.job_id))
    admitted: list[Demand] = []
    used = 0
    for d in ordered:
        eligible = _eligible(d, pool, gpus)
        free = len(eligible) - used + sum(1 for w in d.reserved if w in eligible)
        if d.min_devices <= free and d.min_devices <= len(eligible):
            admitted.append(d)
            used += max(0, d.min_devices - len(d.reserved))
        elif d.running:
            out.preempt.append(d.job_id)
        else:
            out.pending[d.job_id] = (
                f"needs {d.min_devices} worker(s)"
                + (f" with {d.gpu} GPU(s)" if d.gpu else "")
                + f"; {len(eligible)} eligible, {max(0, len(eligible) - used)} free"
            )
    caps = {
        d.job_id: None if d.max_devices is None else d.max_devices - d.min_devices for d in admitted
    }
    extra = share_by_weight({d.job_id: d.weight for d in admitted}, caps, max(0, len(pool) - used))
    counts = {d.job_id: d.min_devices + extra[d.job_id] for d in admitted}
    taken: set[str] = set()
    # running jobs keep what they hold first, so their cached shards stay useful
    for d in admitted:
        keep = [w for w in d.held if w in _eligible(d, pool, gpus) and w not in taken]
        out.targets[d.job_id] = keep[: counts[d.job_id]]
        taken.update(out.targets[d.job_id])
    for d in admitted:
        target = out.targets[d.job_id]
        for w in _eligible(d, pool, gpus):
            if len(target) >= counts[d.job_id]:
                break
            if w not in taken:
                target.append(w)
                taken.add(w)
        if len(target) < d.min_devices and not d.running:
            out.pending[d.job_id] = f"needs {d.min_devices} worker(s); {len(target)} free now"
            taken.difference_update(target)
            del out.targets[d.job_id]
    return out
