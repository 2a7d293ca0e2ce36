"""Request and response models of ``/alerts`` (validation and the OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratalab.scheduler.schemas import Strict


class AlertAcknowledge(Strict):
    """``POST /alerts/{id}/acknowledge``: who saw it is the caller; why goes in ``comment``."""

    comment: str | None = Field(None, max_length=2000, description="What is being done about it.")


class AlertOut(BaseModel):
    """One alert: what a rule saw, about what, and what people did about it."""

    model_config = ConfigDict(extra="allow")

    id: str
    rule: str = Field(description="The rule that raised it (worker_lost, job_failed, ...).")
    severity: str = Field(description="info, warning or critical.")
    status: str = Field(description="active, acknowledged or resolved.")
    message: str
    metric: str | None
    value: float | None = Field(description="The figure when the alert was raised.")
    threshold: float | None
    subject: str | None = Field(description="What it is about: a worker id, a job id, cluster.")
    job_id: str | None = Field(description="The job, for alerts about one job.")
    user_id: str | None = Field(description="Whose work it concerns; null: the platform.")
    details: dict[str, Any]
    started_at: str
    updated_at: str
    resolved_at: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None
    comment: str | None


class AlertRuleOut(BaseModel):
    """One rule: ``metric`` ``comparison`` ``threshold`` held ``duration_s`` raises an alert."""

    name: str
    metric: str
    comparison: str
    threshold: float
    duration_s: float
    severity: str
    description: str
    enabled: bool


class AlertRulesOut(BaseModel):
    """``GET /alerts/rules``: the rules in force and the evaluator's settings."""

    items: list[AlertRuleOut]
    interval_s: float
    failed_window_s: float
    worker_window_s: float
