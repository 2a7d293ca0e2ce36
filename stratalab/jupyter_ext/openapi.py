"""The OpenAPI document, generated from the pydantic models.

The operation table below names each route's request and response model;
the schemas come from pydantic, so the document cannot drift from what the
handlers validate.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import stratalab
from stratalab.jupyter_ext.openapi_alerts import ALERT_OPERATIONS
from stratalab.jupyter_ext.openapi_benchmarks import BENCHMARK_OPERATIONS
from stratalab.jupyter_ext.openapi_training import TRAINING_OPERATIONS
from stratalab.jupyter_ext.openapi_usage import USAGE_OPERATIONS
from stratalab.scheduler import benchmark_schemas as b
from stratalab.scheduler import dataset_schemas as d
from stratalab.scheduler import model_schemas as m
from stratalab.scheduler import observability_schemas as o
from stratalab.scheduler import schemas as s

_JOB = "/jobs/{job_id}"
_WORKER = "/workers/{worker_id}"
_MODEL = "/models/{model_id}"
_INFER = "/inference/{job_id}"
_PROJECT = "/projects/{project_id}"
_DATASET = "/datasets/{dataset_id}"

#: (method, path, summary, request model, response model, success status, public)
OPERATIONS: list[
    tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None, int, bool]
] = [
    ("get", "/health", "Liveness (no auth)", None, None, 200, True),
    ("get", "/health/detailed", "Database, Dask, queue and worker health", None, None, 200, False),
    (
        "get",
        "/health/dependencies",
        "Probe Dask, database, torch, ONNX Runtime, CUDA",
        None,
        None,
        200,
        False,
    ),
    ("get", "/status", "Dask address, dashboard link, uptime, version", None, None, 200, False),
    ("get", "/config", "Effective settings", None, None, 200, False),
    ("put", "/config", "Change runtime settings (admin)", s.ConfigUpdate, None, 200, False),
    ("get", "/openapi.json", "This document", None, None, 200, True),
    ("get", "/keys", "List API keys", None, None, 200, False),
    ("post", "/keys", "Create an API key", s.KeyCreate, s.KeyCreated, 201, False),
    ("delete", "/keys/{key_id}", "Revoke an API key", None, None, 204, False),
    (
        "get",
        "/jobs",
        "List jobs (status, type, user_id, order_by, page_size, page_token)",
        None,
        s.Page[s.JobOut],
        200,
        False,
    ),
    ("post", "/jobs", "Submit a job", s.JobSubmit, s.SubmitOut, 201, False),
    ("get", _JOB, "A job with its timeline", None, s.JobOut, 200, False),
    ("post", f"{_JOB}/cancel", "Cancel a job", s.CancelRequest, s.JobOut, 200, False),
    ("post", f"{_JOB}/retry", "Retry as a child job", s.RetryRequest, s.SubmitOut, 201, False),
    ("patch", f"{_JOB}/priority", "Change priority", s.PriorityUpdate, s.JobOut, 200, False),
    ("get", f"{_JOB}/events", "SSE: state transitions", None, s.TimelineEntry, 200, False),
    ("get", f"{_JOB}/logs", "SSE: log lines (follow, level, tail)", None, s.LogLine, 200, False),
    ("get", "/queue", "Queue depth, waits, outcomes", None, s.QueueOut, 200, False),
    ("get", "/workers", "List workers (status)", None, s.Page[s.WorkerOut], 200, False),
    ("get", _WORKER, "One worker", None, s.WorkerOut, 200, False),
    ("post", f"{_WORKER}/drain", "Drain a worker (admin)", s.DrainRequest, s.WorkerOut, 200, False),
    ("post", f"{_WORKER}/enable", "Enable a worker (admin)", None, s.WorkerOut, 200, False),
    ("get", "/cluster", "Capacity and allocation", None, None, 200, False),
    (
        "get",
        "/workers/stats",
        "Worker counts, capacity, use, task queues",
        None,
        o.WorkersStatsOut,
        200,
        False,
    ),
    (
        "get",
        f"{_WORKER}/logs",
        "The worker's own log, pulled from Dask (lines, level; admin)",
        None,
        o.WorkerLogsOut,
        200,
        False,
    ),
    (
        "get",
        "/dashboard",
        "Coordinator, workers, datasets, checkpoints, barriers, metrics, jobs, logs at once",
        None,
        o.DashboardOut,
        200,
        False,
    ),
    (
        "get",
        "/dashboard/stream",
        "SSE: snapshot every interval s (default 2), jobs/workers events live, lagged",
        None,
        o.DashboardOut,
        200,
        False,
    ),
    (
        "get",
        "/dashboard/throughput",
        "Inference requests per bucket (bucket_size s, window s, project_id)",
        None,
        o.ThroughputOut,
        200,
        False,
    ),
    (
        "get",
        "/metrics",
        "Checkpoint MB/s, coordinator requests/s, workers, barrier p99 ms, shard assignment ms",
        None,
        o.MetricsOut,
        200,
        False,
    ),
    (
        "get",
        "/metrics/live",
        "Per-service CPU, memory, queues (services, metrics, interval; SSE if asked)",
        None,
        o.LiveMetricsOut,
        200,
        False,
    ),
    ("get", "/metrics/prometheus", "Prometheus text exposition", None, None, 200, False),
    ("get", "/logs", "Newest log entries (limit, level, job_id)", None, o.LogsOut, 200, False),
    (
        "post",
        "/datasets",
        "Register a dataset from a source (JSON) or an upload (multipart: file field 'file')",
        d.DatasetCreate,
        d.DatasetOut,
        201,
        False,
    ),
    ("get", "/datasets", "List datasets (name, format)", None, s.Page[d.DatasetOut], 200, False),
    ("get", _DATASET, "One dataset", None, d.DatasetOut, 200, False),
    ("delete", _DATASET, "Delete a dataset (409 while a job uses it)", None, None, 204, False),
    (
        "get",
        f"{_DATASET}/shards",
        "Shards: rows and the worker each is placed on",
        None,
        s.Page[d.ShardOut],
        200,
        False,
    ),
    (
        "post",
        "/data/validate",
        "Run the registration checks without storing (JSON or multipart)",
        d.DatasetCreate,
        d.DatasetValidationOut,
        200,
        False,
    ),
    (
        "get",
        "/data/cache",
        "Shards in the workers' caches (node_id)",
        None,
        d.DataCacheOut,
        200,
        False,
    ),
    (
        "post",
        "/models",
        "Upload an ONNX or TorchScript model (multipart: file field 'model')",
        m.ModelUploadFields,
        m.ModelOut,
        201,
        False,
    ),
    ("get", "/models", "List models (name)", None, s.Page[m.ModelOut], 200, False),
    ("get", _MODEL, "One model", None, m.ModelOut, 200, False),
    ("delete", _MODEL, "Delete a model (409 while in use)", None, None, 204, False),
    (
        "patch",
        f"{_MODEL}/schema",
        "Change schemas, labels, adapters",
        m.ModelSchemaPatch,
        m.ModelOut,
        200,
        False,
    ),
    (
        "post",
        "/inference",
        "Inference: sync (200) or async (202; ?async=true, X-Async, body async)",
        m.InferenceRequest,
        m.InferenceSyncOut,
        200,
        False,
    ),
    (
        "post",
        "/inference/batch",
        "Batch inference sharded over the workers (202)",
        m.BatchRequest,
        m.InferenceAccepted,
        202,
        False,
    ),
    (
        "get",
        _INFER,
        "Async answer or batch progress and results (offset, limit)",
        None,
        m.InferenceJobOut,
        200,
        False,
    ),
    ("delete", _INFER, "Cancel an async request or a batch", None, m.InferenceJobOut, 200, False),
    ("post", "/projects", "Create a project", m.ProjectCreate, m.ProjectOut, 201, False),
    ("get", "/projects", "List projects (status)", None, s.Page[m.ProjectOut], 200, False),
    ("get", _PROJECT, "A project with its metrics", None, m.ProjectOut, 200, False),
    (
        "get",
        f"{_PROJECT}/analytics",
        "Latency percentiles, throughput, per worker pool (bucket_size)",
        None,
        None,
        200,
        False,
    ),
    ("post", f"{_PROJECT}/complete", "Mark a project complete", None, m.ProjectOut, 200, False),
    (
        "post",
        f"{_PROJECT}/cancel",
        "Cancel a project and its jobs",
        None,
        m.ProjectOut,
        200,
        False,
    ),
]
OPERATIONS += TRAINING_OPERATIONS
OPERATIONS += ALERT_OPERATIONS
OPERATIONS += USAGE_OPERATIONS
OPERATIONS += BENCHMARK_OPERATIONS

#: POST bodies that may not be left out.
_REQUIRED_BODIES = {
    s.JobSubmit,
    m.InferenceRequest,
    m.BatchRequest,
    m.ProjectCreate,
    d.DatasetCreate,
    b.BenchmarkCreate,
}
#: request models sent as multipart/form-data with a file field.
_MULTIPART = {m.ModelUploadFields: "model"}
#: request models sent as JSON, or as multipart/form-data with an optional file field.
_JSON_OR_MULTIPART = {d.DatasetCreate: "file"}

_ERRORS = {
    "400": "Bad request",
    "401": "Authentication required or invalid",
    "404": "Not found (or another user's)",
    "409": "Conflict with the current state",
    "413": "Body too large",
    "422": "Validation error",
    "429": "Rate limited",
    "503": "Service unavailable",
}


@cache
def _schemas() -> tuple[dict[str, Any], dict[type[BaseModel], dict[str, Any]]]:
    """Component schemas, and each model's ``$ref`` under pydantic's own names."""
    models = {m for op in OPERATIONS for m in (op[3], op[4]) if m is not None}
    models.add(s.ErrorEnvelope)
    refs, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    return dict(defs.get("$defs", {})), {model: ref for (model, _), ref in refs.items()}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return dict(_schemas()[1][model])


def _form(req: type[BaseModel], file_field: str, *, required: bool) -> dict[str, Any]:
    """A multipart/form-data body: the model's fields as form fields, plus the file."""
    part: dict[str, Any] = {
        "type": "object",
        "properties": {file_field: {"type": "string", "format": "binary"}},
    }
    if required:
        part["required"] = [file_field]
    return {"schema": {"allOf": [_ref(req), part]}}


def openapi_document(base_url: str = "/") -> dict[str, Any]:
    """The OpenAPI 3.1 document for the routes under ``base_url``."""
    paths: dict[str, Any] = {}
    error = {"application/json": {"schema": _ref(s.ErrorEnvelope)}}
    for method, path, summary, req, resp, status, public in OPERATIONS:
        op: dict[str, Any] = {"summary": summary, "responses": {}}
        ok: dict[str, Any] = {"description": "OK"}
        if resp is not None:
            ok["content"] = {"application/json": {"schema": _ref(resp)}}
        op["responses"][str(status)] = ok
        for code, text in _ERRORS.items():
            op["responses"][code] = {"description": text, "content": error}
        if req is not None and req in _MULTIPART:
            op["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": _form(req, _MULTIPART[req], required=True)},
            }
        elif req is not None:
            op["requestBody"] = {
                "required": method != "post" or req in _REQUIRED_BODIES,
                "content": {"application/json": {"schema": _ref(req)}},
            }
            if req in _JSON_OR_MULTIPART:
                op["requestBody"]["content"]["multipart/form-data"] = _form(
                    req, _JSON_OR_MULTIPART[req], required=False
                )
        if public:
            op["security"] = []
        params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "StrataLab API",
            "version": stratalab.__version__,
            "description": "Datasets, training, inference and monitoring on Dask, "
            "from Jupyter. Errors use the envelope "
            "{error: {code, message, details?, trace_id}}.",
        },
        "servers": [{"url": base_url.rstrip("/") + "/stratalab/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": _schemas()[0],
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "JupyterToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "token <jupyter token>",
                },
            },
        },
        "security": [{"ApiKey": []}, {"JupyterToken": []}],
    }
