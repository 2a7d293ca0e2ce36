"""Response models of the usage, billing and efficiency routes (for the OpenAPI document).

The answers are built by :mod:`.usage_report` and :mod:`.efficiency`; these
models describe them, field by field, so the generated document says what
each figure means: milliseconds measured on the workers, ``null`` energy
where no RAPL or NVML counter exists, hours written ``YYYY-MM-DDTHH`` (UTC).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_HOUR = r"^\d{4}-\d{2}-\d{2}T\d{2}$"


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class Window(_Out):
    """The time window an answer covers."""

    hours: int = Field(description="length of the window in hours")
    from_: str = Field(alias="from", description="start, ISO 8601 UTC")
    to: str = Field(description="end (now), ISO 8601 UTC")


class Prices(_Out):
    """The configured price table (``price_*`` settings)."""

    currency: str
    cpu_hour: float
    gpu_hour: float
    inference_per_1k_items: float = Field(description="charged on inference and batch items")


class UsageFigures(_Out):
    """Sums over usage records."""

    cpu_ms: float = Field(description="CPU milliseconds measured on the workers")
    gpu_ms: float = Field(description="GPU milliseconds measured on the workers")
    cpu_hours: float
    gpu_hours: float
    tasks: int = Field(description="task attempts, training updates, evaluations, requests, shards")
    items: int = Field(description="samples trained or evaluated, inference items served")
    errors: int = Field(description="tasks that failed")
    energy_j: float | None = Field(description="joules where RAPL/NVML measured them, else null")
    cost: float = Field(description="cpu_hours*cpu_hour + gpu_hours*gpu_hour + item price")


class UsageOut(_Out):
    """``GET /usage``."""

    user_id: str
    window: Window
    totals: UsageFigures
    by_kind: dict[str, UsageFigures] = Field(
        description="task, training, evaluation, inference, batch (kinds with activity)"
    )
    prices: Prices


class HourUsage(_Out):
    """One hour with activity."""

    hour: str = Field(pattern=_HOUR, description="YYYY-MM-DDTHH, UTC")
    start: str
    totals: UsageFigures
    by_kind: dict[str, UsageFigures]


class UsageHourlyOut(_Out):
    """``GET /usage/hourly``: only hours with activity, oldest first."""

    user_id: str
    window: Window
    data: list[HourUsage]
    prices: Prices


class ProjectUsageOut(_Out):
    """``GET /usage/projects/{id}``: since the project began unless ``hours`` is given."""

    project_id: str
    user_id: str
    window: Window
    totals: UsageFigures
    by_kind: dict[str, UsageFigures]
    prices: Prices


class UserUsage(_Out):
    """One user's figures in the admin view."""

    user_id: str
    totals: UsageFigures
    by_kind: dict[str, UsageFigures]


class AdminUsageOut(_Out):
    """``GET /admin/usage``: most expensive user first."""

    window: Window
    totals: UsageFigures
    users: list[UserUsage]
    prices: Prices


class UuidUsage(_Out):
    """One user's hour (successful or failed tasks only, by route)."""

    uuid: str = Field(description="the user id")
    hour: str = Field(pattern=_HOUR)
    cpu_ms: int
    gpu_ms: int
    cpu_tasks: int = Field(description="tasks that used no GPU time")
    gpu_tasks: int = Field(description="tasks with GPU time")


class UuidUsageOut(_Out):
    """``GET /internal/uuid-usage[/errors]?from=YYYY-MM-DDTHH&to=YYYY-MM-DDTHH``."""

    from_: str = Field(alias="from", pattern=_HOUR, description="moved up into the window")
    to: str = Field(pattern=_HOUR)
    window_hours: int = Field(description="the rolling window (72): older hours are not kept")
    data: list[UuidUsage] = Field(description="only user-hours with activity")


class EfficiencyFigures(_Out):
    """Rates over usage records; null where there is nothing to divide by."""

    cpu_ms: float
    gpu_ms: float
    items: int
    tasks: int
    errors: int
    error_rate: float | None
    items_per_cpu_s: float | None
    items_per_gpu_s: float | None
    energy_j: float | None = Field(description="null where no worker measured energy")
    joules_per_item: float | None


class PowerStatus(_Out):
    """Whether the workers can measure energy, asked of the workers themselves."""

    power_source: str = Field(description="rapl, nvml, rapl+nvml, or unavailable")
    power_reason: str | None = Field(description="why energy is unavailable (else null)")
    workers: dict[str, str | None] = Field(description="each worker's source")


class EfficiencyOut(PowerStatus):
    """``GET /efficiency``."""

    window: Window
    pool: str | None
    totals: EfficiencyFigures
    by_kind: dict[str, EfficiencyFigures]
    power: dict[str, Any] | None = Field(description="energy and joules per item, or null")


class PoolFigures(EfficiencyFigures):
    """One worker pool's figures."""

    by_kind: dict[str, EfficiencyFigures]


class ComparisonOut(PowerStatus):
    """``GET /efficiency/comparison``: gpu and cpu worker pools side by side."""

    window: Window
    pools: dict[str, PoolFigures]


class ChartOut(_Out):
    """``GET /efficiency/chart/{type}``; which fields appear depends on the type."""

    type: str = Field(description="tta, scaling, power or throughput")
    window: Window | None = None
    series: list[dict[str, Any]] | None = Field(
        None, description="tta: per job {job_id, target_accuracy, time_to_target_s, points}"
    )
    points: list[dict[str, Any]] | None = None
    job_ids: list[str] | None = None
    available: bool | None = Field(None, description="power: false when nothing measured")
    reason: str | None = None
    power_source: str | None = None


class ActiveOut(_Out):
    """``GET /efficiency/active``."""

    items: list[dict[str, Any]] = Field(
        description="job_id, type, status, elapsed_s, round, samples_per_s, items_per_s"
    )
    total: int
    window_s: float = Field(description="seconds of recent usage behind items_per_s")


class JobEfficiencyOut(EfficiencyFigures, PowerStatus):
    """``GET /efficiency/job/{id}``; training jobs add rounds, samples/s and TTA."""

    job_id: str
    type: str
    status: str
    duration_s: float
    by_kind: dict[str, EfficiencyFigures]
    rounds: int | None = None
    samples_per_s: float | None = None
    best_val_accuracy: float | None = None
    time_to_target_s: float | None = None
    scaling: list[dict[str, Any]] | None = None
