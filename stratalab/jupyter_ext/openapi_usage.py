"""OpenAPI operations of the usage, billing and efficiency routes (merged into ``OPERATIONS``).

The internal routes are marked public here because they take neither an API
key nor a Jupyter token: their credential is the ``X-Internal-Token``
header, named in their summaries.
"""

from __future__ import annotations

from pydantic import BaseModel

from stratalab.scheduler import usage_schemas as u

_INTERNAL = "X-Internal-Token header; from (required) and to: YYYY-MM-DDTHH UTC, last 72 h"

#: (method, path, summary, request model, response model, success status, public)
USAGE_OPERATIONS: list[
    tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None, int, bool]
] = [
    ("get", "/usage", "The caller's usage and cost (hours, 1-720)", None, u.UsageOut, 200, False),
    (
        "get",
        "/usage/hourly",
        "The caller's usage per hour with activity (hours, 1-72)",
        None,
        u.UsageHourlyOut,
        200,
        False,
    ),
    (
        "get",
        "/usage/projects/{project_id}",
        "A project's usage since it began, or over hours (owner or admin)",
        None,
        u.ProjectUsageOut,
        200,
        False,
    ),
    ("get", "/admin/usage", "Every user's usage (admin)", None, u.AdminUsageOut, 200, False),
    (
        "get",
        "/internal/uuid-usage",
        f"Successful tasks per user and hour ({_INTERNAL})",
        None,
        u.UuidUsageOut,
        200,
        True,
    ),
    (
        "get",
        "/internal/uuid-usage/errors",
        f"Failed tasks per user and hour ({_INTERNAL})",
        None,
        u.UuidUsageOut,
        200,
        True,
    ),
    (
        "get",
        "/efficiency",
        "Items per CPU/GPU second and energy per item, per kind (hours, pool)",
        None,
        u.EfficiencyOut,
        200,
        False,
    ),
    (
        "get",
        "/efficiency/comparison",
        "GPU and CPU worker pools side by side (hours)",
        None,
        u.ComparisonOut,
        200,
        False,
    ),
    (
        "get",
        "/efficiency/chart/{chart}",
        "Chart data: tta, scaling (job_id, limit), power, throughput (hours)",
        None,
        u.ChartOut,
        200,
        False,
    ),
    (
        "get",
        "/efficiency/active",
        "Running jobs with current rates (limit)",
        None,
        u.ActiveOut,
        200,
        False,
    ),
    (
        "get",
        "/efficiency/job/{job_id}",
        "One job's CPU/GPU time, items, rates and energy",
        None,
        u.JobEfficiencyOut,
        200,
        False,
    ),
]
