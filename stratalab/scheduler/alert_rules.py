"""Alert rules as data, and the pure bookkeeping that turns figures into alerts.

A rule says which figure it watches (``metric``), how it compares to a
``threshold``, how long the condition must hold (``duration_s``) and how bad
it is (``severity``). Rules are plain data so an operator changes them from
configuration (``--StrataLab.alert_rules``) without code. The figures are
:class:`Sample` objects, one per subject (a worker, a job, the whole
cluster); :class:`RuleTracker` decides, without any I/O, when an alert is
raised (the condition held for ``duration_s``) and when it resolves (the
condition cleared, or its subject went away). :mod:`.alerts` does the I/O.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

#: how bad an alert is, mildest first.
SEVERITIES = ("info", "warning", "critical")
#: what an alert goes through: raised, a person acknowledges it, the rule resolves it.
STATUSES = ("active", "acknowledged", "resolved")
#: statuses of an alert whose condition has not cleared yet.
OPEN = ("active", "acknowledged")
#: how a rule compares its figure with its threshold.
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
#: the figures the evaluator measures (see :mod:`.alerts`), with their meaning.
METRICS = {
    "workers_lost": "workers seen in the last worker window that are gone now (subject: cluster)",
    "worker_memory_fraction": "a worker's memory use over its limit, 0 to 1 (subject: worker id)",
    "queue_wait_s": "seconds the longest-waiting queued job has waited (subject: queue)",
    "job_failed": "1 for a job that failed within the failure window (subject: job id)",
    "failed_jobs": "jobs that failed within the failure window (subject: cluster)",
}


@dataclass(frozen=True)
class AlertRule:
    """One condition over one figure that, held long enough, raises an alert."""

    #: unique name; also the ``rule`` of the alerts it raises.
    name: str
    #: the figure watched (one of :data:`METRICS`).
    metric: str
    #: one of :data:`COMPARISONS`.
    comparison: str
    threshold: float
    #: seconds the condition must hold before the alert is raised (0: at once).
    duration_s: float = 0.0
    #: one of :data:`SEVERITIES`.
    severity: str = "warning"
    #: what the alert means, for people.
    description: str = ""
    #: a disabled rule raises nothing (and resolves what it raised before).
    enabled: bool = True

    def __post_init__(self) -> None:
        """Refuse a rule that could never work, naming the field."""
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= 64:
            raise ValueError("alert rule name must be 1 to 64 characters")
        if self.metric not in METRICS:
            raise ValueError(
                f"alert rule {self.name!r}: unknown metric {self.metric!r} "
                f"(one of {', '.join(METRICS)})"
            )
        if self.comparison not in COMPARISONS:
            raise ValueError(
                f"alert rule {self.name!r}: unknown comparison {self.comparison!r} "
                f"(one of {' '.join(COMPARISONS)})"
            )
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"alert rule {self.name!r}: severity must be one of {', '.join(SEVERITIES)}"
            )
        for name in ("threshold", "duration_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"alert rule {self.name!r}: {name} must be a number")
            if not math.isfinite(value):
                raise ValueError(f"alert rule {self.name!r}: {name} must be finite")
        if self.duration_s < 0:
            raise ValueError(f"alert rule {self.name!r}: duration_s must be 0 or more")

    def breached(self, value: float) -> bool:
        """Whether ``value`` meets the rule's condition."""
        return COMPARISONS[self.comparison](value, self.threshold)

    def as_dict(self) -> dict[str, Any]:
        """The rule as the API shows it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: the rules every server starts with; ``alert_rules`` changes them by name.
DEFAULT_RULES = (
    AlertRule(
        "worker_lost",
        "workers_lost",
        ">",
        0,
        severity="critical",
        description="A Dask worker left the cluster; its work is retried elsewhere.",
    ),
    AlertRule(
        "memory_high",
        "worker_memory_fraction",
        ">",
        0.9,
        duration_s=30.0,
        description="A worker has used more than 90 % of its memory limit for 30 s.",
    ),
    AlertRule(
        "queue_wait",
        "queue_wait_s",
        ">",
        600.0,
        description="A queued job has waited more than 10 minutes.",
    ),
    AlertRule(
        "job_failed",
        "job_failed",
        ">=",
        1,
        description="A job failed (no retries left).",
    ),
    AlertRule(
        "failed_jobs",
        "failed_jobs",
        ">=",
        10,
        severity="critical",
        description="10 or more jobs failed within the failure window.",
    ),
)


def merge_rules(
    defaults: Iterable[AlertRule], overrides: Iterable[Mapping[str, Any]]
) -> list[AlertRule]:
    """The defaults changed by ``overrides``: by ``name``, a known rule's fields, else a new rule.

    Raises :class:`ValueError` naming the rule and field for anything unusable,
    so a bad configuration stops the server at start, not silently later.
    """
    rules = {r.name: r for r in defaults}
    known = {f.name for f in fields(AlertRule)}
    for raw in overrides:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise ValueError(f"each alert rule needs a 'name': {raw!r}")
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"alert rule {raw['name']!r}: unknown fields {unknown}")
        try:
            if raw["name"] in rules:
                rules[raw["name"]] = replace(rules[raw["name"]], **raw)
            else:
                rules[raw["name"]] = AlertRule(**raw)
        except TypeError as exc:
            raise ValueError(f"alert rule {raw['name']!r}: {exc}") from None
    return list(rules.values())


@dataclass(frozen=True)
class Sample:
    """One measured figure about one subject."""

    metric: str
    #: what it is about: a worker id, a job id, "cluster", "queue".
    subject: str
    value: float
    #: the user whose work it concerns (None: the platform; admins only).
    user_id: str | None = None
    #: a sentence for the alert's message (default: the figure and the rule).
    text: str | None = None
    #: extra facts stored with the alert (lost worker ids, the job's error, ...).
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Raised:
    """A rule's condition held for its duration: raise an alert."""

    rule: AlertRule
    sample: Sample

    @property
    def message(self) -> str:
        """What the alert says."""
        r, s = self.rule, self.sample
        held = f" for {r.duration_s:g} s" if r.duration_s else ""
        figure = f"{r.metric} = {s.value:g} ({r.comparison} {r.threshold:g}{held})"
        return f"{s.text}; {figure}" if s.text else f"{r.name} on {s.subject}: {figure}"


@dataclass(frozen=True)
class Resolved:
    """A raised alert's condition cleared (``value``) or its subject went away (None)."""

    rule_name: str
    subject: str
    value: float | None


Key = tuple[str, str]


class RuleTracker:
    """Which (rule, subject) pairs breach, since when, and which have an alert raised.

    Pure: :meth:`evaluate` takes the figures and the time and returns what to
    raise and resolve, so every rule's behaviour is tested without a cluster.
    """

    def __init__(self) -> None:
        #: when each breaching (rule, subject) started breaching (not yet raised).
        self.pending: dict[Key, float] = {}
        #: (rule, subject) pairs with an open alert.
        self.firing: set[Key] = set()

    def adopt(self, keys: Iterable[Key]) -> None:
        """Open alerts found in the store at start: not raised again while they hold."""
        self.firing.update(keys)

    def evaluate(
        self,
        rules: Iterable[AlertRule],
        samples: Iterable[Sample],
        now: float,
        *,
        measured: Iterable[str] | None = None,
    ) -> list[Raised | Resolved]:
        """What changed: alerts to raise and to resolve, at time ``now`` (seconds).

        ``measured`` names the metrics this pass actually measured (default:
        those of ``samples``); a rule whose metric could not be measured
        (its source failed) keeps its state rather than resolving.
        """
        by_metric: dict[str, list[Sample]] = {}
        for s in samples:
            by_metric.setdefault(s.metric, []).append(s)
        seen_metrics = set(by_metric) if measured is None else set(measured)
        active = {r.name: r for r in rules if r.enabled}
        out: list[Raised | Resolved] = []
        for rule in active.values():
            if rule.metric not in seen_metrics:
                continue
            present: set[str] = set()
            for sample in by_metric.get(rule.metric, ()):
                key = (rule.name, sample.subject)
                present.add(sample.subject)
                if rule.breached(sample.value):
                    since = self.pending.setdefault(key, now)
                    if key not in self.firing and now - since >= rule.duration_s:
                        self.firing.add(key)
                        del self.pending[key]
                        out.append(Raised(rule, sample))
                else:
                    self.pending.pop(key, None)
                    if key in self.firing:
                        self.firing.discard(key)
                        out.append(Resolved(rule.name, sample.subject, sample.value))
            for key in [k for k in self.pending if k[0] == rule.name and k[1] not in present]:
                del self.pending[key]
            for key in sorted(k for k in self.firing if k[0] == rule.name and k[1] not in present):
                self.firing.discard(key)
                out.append(Resolved(key[0], key[1], None))
        for key in sorted(k for k in self.firing if k[0] not in active):
            self.firing.discard(key)  # the rule was removed or disabled
            out.append(Resolved(key[0], key[1], None))
        for key in [k for k in self.pending if k[0] not in active]:
            del self.pending[key]
        return out


# ---------------------------------------------------------------- figures
class WorkerLossWatch:
    """Workers seen lately that are gone now: the ``workers_lost`` figure.

    A worker counts as lost for ``window_s`` after it was last seen, so a
    cluster that stays smaller becomes the new normal once the window passes.
    """

    def __init__(self, window_s: float = 300.0) -> None:
        self.window_s = window_s
        #: last time each worker id was seen (seconds).
        self.last_seen: dict[str, float] = {}

    def observe(self, worker_ids: Iterable[str], now: float) -> Sample:
        """Record the workers present at ``now``; the sample of those lost."""
        present = set(worker_ids)
        for wid in present:
            self.last_seen[wid] = now
        for wid in [w for w, t in self.last_seen.items() if now - t > self.window_s]:
            del self.last_seen[wid]
        lost = sorted(set(self.last_seen) - present)
        text = f"worker {', '.join(lost)} left the cluster" if lost else None
        return Sample(
            "workers_lost",
            "cluster",
            float(len(lost)),
            text=text,
            details={"lost": lost, "workers": len(present)},
        )


def memory_samples(usage: Iterable[tuple[str, float | None, int]]) -> list[Sample]:
    """``worker_memory_fraction`` per worker from (id, bytes used, byte limit)."""
    out = []
    for wid, used, limit in usage:
        if used is None or limit <= 0:
            continue  # no heartbeat yet, or no limit to compare with
        out.append(
            Sample(
                "worker_memory_fraction",
                wid,
                round(float(used) / limit, 4),
                text=f"worker {wid} uses {float(used) / limit:.0%} of its memory limit",
                details={"memory_bytes": int(used), "memory_limit_bytes": limit},
            )
        )
    return out


def queue_wait_sample(queued_since: Iterable[float], now: float) -> Sample:
    """``queue_wait_s``: how long the longest-waiting queued job has waited (0 if none)."""
    times = list(queued_since)
    wait = max(0.0, now - min(times)) if times else 0.0
    text = f"a queued job has waited {wait:.0f} s" if times else None
    return Sample(
        "queue_wait_s", "queue", round(wait, 3), text=text, details={"queued": len(times)}
    )


@dataclass(frozen=True)
class FailedJob:
    """A job that ended FAILED (what the failure figures need of it)."""

    job_id: str
    user_id: str
    name: str
    error: str | None
    ended_at: float  #: epoch seconds


def failure_samples(failed: Iterable[FailedJob]) -> list[Sample]:
    """``job_failed`` per failed job (owned by its user) and the ``failed_jobs`` count."""
    jobs = list(failed)
    out = [
        Sample(
            "job_failed",
            j.job_id,
            1.0,
            user_id=j.user_id,
            text=f"job {j.job_id} ({j.name}) failed"
            + (f": {_first_line(j.error)}" if j.error else ""),
            details={"job_id": j.job_id, "job_name": j.name},
        )
        for j in jobs
    ]
    out.append(
        Sample(
            "failed_jobs",
            "cluster",
            float(len(jobs)),
            text=f"{len(jobs)} jobs failed recently" if jobs else None,
            details={"job_ids": [j.job_id for j in jobs][:20]},
        )
    )
    return out


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
