"""OpenAPI operations of training, checkpoints, evaluations and reservations.

Kept beside ``openapi.py`` (which merges them) so each area's table stays short.
"""

from __future__ import annotations

from pydantic import BaseModel

from stratalab.scheduler import schemas as s
from stratalab.scheduler import training_schemas as t

_JOB = "/jobs/{job_id}"
_TRAIN = "/training/{job_id}"

#: (method, path, summary, request model, response model, success status, public)
TRAINING_OPERATIONS: list[
    tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None, int, bool]
] = [
    ("post", "/training", "Start a training job (DCP shape)", t.TrainingRequest, None, 202, False),
    ("get", _TRAIN, "A training job with progress", None, s.JobOut, 200, False),
    ("delete", _TRAIN, "Cancel a training job", s.CancelRequest, s.JobOut, 200, False),
    ("post", f"{_TRAIN}/pause", "Pause after the round", t.PauseRequest, s.JobOut, 202, False),
    ("post", f"{_TRAIN}/resume", "Resume from a checkpoint", t.ResumeRequest, s.JobOut, 200, False),
    ("post", f"{_JOB}/pause", "Pause after the round", t.PauseRequest, s.JobOut, 202, False),
    ("post", f"{_JOB}/resume", "Resume from a checkpoint", t.ResumeRequest, s.JobOut, 200, False),
    ("get", f"{_JOB}/metrics", "Round and step metrics (max_points)", None, None, 200, False),
    ("get", f"{_JOB}/metrics/stream", "SSE of new metrics (interval)", None, None, 200, False),
    ("get", f"{_JOB}/checkpoints", "A job's checkpoints", None, None, 200, False),
    ("get", "/checkpoints", "Checkpoints (job_id filters)", None, None, 200, False),
    ("get", "/checkpoints/{checkpoint_id}", "One checkpoint", None, None, 200, False),
    ("post", "/evaluations", "Evaluate a job or checkpoint", t.EvaluationCreate, None, 201, False),
    ("get", "/evaluations", "Evaluations (job_id filters)", None, None, 200, False),
    ("get", "/evaluations/{evaluation_id}", "One evaluation", None, None, 200, False),
    ("post", "/reservations", "Hold workers", t.ReservationCreate, None, 201, False),
    ("get", "/reservations", "Reservations", None, None, 200, False),
    ("delete", "/reservations/{reservation_id}", "Release a reservation", None, None, 204, False),
]
