"""The system routes: health, dependency probes, status, configuration, OpenAPI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
import sqlalchemy as sa
import torch
from openapi_spec_validator import validate

import stratalab
from stratalab.scheduler.config import CoordinatorConfig
from stratalab.scheduler.store import Store
from stratalab.testing import assert_error


def _settings_rows(store: Any) -> dict[str, Any]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT key, value FROM settings")).all()
    return {k: (json.loads(v) if isinstance(v, str) else v) for k, v in rows}


async def settings_rows(api: Any) -> dict[str, Any]:
    """The ``settings`` table, read with plain SQL."""
    return await api.coordinator.db(_settings_rows, api.coordinator.store)


# ---------------------------------------------------------------- health
async def test_health_answers_without_credentials(api):
    resp = await api("GET", "health", token=False)

    assert resp.status == 200, resp.text
    assert resp.json["status"] == "ok"
    assert resp.json["version"] == stratalab.__version__
    assert resp.json["uptime_s"] >= 0


async def test_health_detailed_probes_database_and_dask(api, db_url):
    anonymous = await api("GET", "health/detailed", token=False)
    resp = await api("GET", "health/detailed")

    assert_error(anonymous, 401, "AUTH_REQUIRED")
    assert resp.status == 200, resp.text
    body = resp.json
    assert body["status"] == "ok"
    database, dask = body["components"]["database"], body["components"]["dask"]
    assert database["status"] == "ok"
    assert database["dialect"] == sa.make_url(db_url).get_backend_name()
    assert database["latency_ms"] >= 0
    assert dask["status"] == "ok" and dask["workers"] >= 1
    assert body["workers"]["total"] >= 1 and body["workers"]["drained"] == 0
    assert body["queue"] == {"queued": 0, "running": 0}


async def test_health_dependencies_are_real_probes(api, dask_address):
    resp = await api("GET", "health/dependencies", timeout=60)

    assert resp.status == 200, resp.text
    assert resp.json["status"] == "ok"
    deps = resp.json["dependencies"]
    assert deps["database"]["status"] == "ok"
    assert deps["dask"]["status"] == "ok"
    assert deps["dask"]["workers"] >= 1
    assert deps["dask"]["address"] == dask_address
    assert deps["torch"]["status"] == "ok"
    assert deps["torch"]["version"] == torch.__version__
    assert deps["onnxruntime"]["status"] == "ok"
    assert deps["onnxruntime"]["version"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in deps["onnxruntime"]["providers"]
    if torch.cuda.is_available():
        assert deps["cuda"]["status"] == "ok"
    else:
        assert deps["cuda"]["status"] == "absent"
        assert deps["cuda"]["local_cuda_available"] is False
        assert deps["cuda"]["cluster_gpus"] == 0


async def test_status_reports_dask_uptime_version(api, dask_address, db_url):
    resp = await api("GET", "status")

    assert resp.status == 200, resp.text
    body = resp.json
    assert body["dask_address"] == dask_address
    assert body["embedded_cluster"] is False
    assert body["version"] == stratalab.__version__
    assert body["uptime_s"] >= 0
    assert body["database"] == sa.make_url(db_url).get_backend_name()
    assert body["workers"] >= 1
    assert body["queued_jobs"] == 0 and body["running_jobs"] == 0


# ---------------------------------------------------------------- config
async def test_get_config_hides_credentials(api, db_url):
    user = await api.create_key("alice")

    resp = await api("GET", "config", key=user)
    status = await api("GET", "status")
    detailed = await api("GET", "health/detailed")

    assert resp.status == 200, resp.text
    body = resp.json
    assert set(body["runtime_tunable"]) == {
        "rate_limit_per_minute",
        "aging_interval_s",
        "default_max_retries",
        "max_upload_mb",
        "inference_timeout_s",
        "max_batch_json_mb",
    }
    assert body["max_json_kb"] == 1024
    assert "admin_key" not in body
    url = sa.make_url(db_url)
    if url.password:
        assert body["db_url"].startswith(f"{url.drivername}://{url.username}:***@{url.host}")
        assert f":{url.password}@" not in body["db_url"]
        for r in (resp, status, detailed):
            assert f"{url.username}:{url.password}@" not in r.text
    else:
        assert body["db_url"] == db_url


def test_public_config_redacts_a_password_in_the_query_string(tmp_path: Path):
    url = "postgresql+psycopg://db.example:5432/strata?user=strata&password=hunter2"
    config = CoordinatorConfig(data_dir=tmp_path, db_url=url)

    shown = config.public()["db_url"]

    assert "hunter2" not in shown


async def test_admin_put_config_applies_and_persists(api, db_url):
    resp = await api(
        "PUT", "config", json_body={"rate_limit_per_minute": 1234, "aging_interval_s": 30}
    )

    assert resp.status == 200, resp.text
    assert resp.json["rate_limit_per_minute"] == 1234
    assert resp.json["aging_interval_s"] == 30
    after = await api("GET", "config")
    assert after.json["rate_limit_per_minute"] == 1234
    assert after.headers["X-Ratelimit-Limit"] == "1234"  # the limiter uses it at once
    assert api.coordinator.runner.aging_interval_s == 30
    assert await settings_rows(api) == {"rate_limit_per_minute": 1234, "aging_interval_s": 30}
    fresh = Store(db_url)  # what a restarted server would read
    try:
        assert fresh.settings() == {"rate_limit_per_minute": 1234, "aging_interval_s": 30}
    finally:
        fresh.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"rate_limit_per_minute": -1}, "rate_limit_per_minute", id="negative"),
        pytest.param({"rate_limit_per_minute": "fast"}, "rate_limit_per_minute", id="string"),
        pytest.param({"aging_interval_s": 0}, "aging_interval_s", id="aging-0"),
        pytest.param({"default_max_retries": 21}, "default_max_retries", id="retries-21"),
        pytest.param({"max_json_kb": 4}, "max_json_kb", id="not-tunable"),
        pytest.param({"db_url": "sqlite://"}, "db_url", id="credentials-not-tunable"),
    ],
)
async def test_put_config_rejects_invalid_values(api, body, field):
    before = (await api("GET", "config")).json

    resp = await api("PUT", "config", json_body=body)

    err = assert_error(resp, 422, "VALIDATION_ERROR")
    assert field in [e["field"] for e in err["details"]["errors"]]
    assert (await api("GET", "config")).json == before
    assert await settings_rows(api) == {}


# --------------------------------------------------------------- OpenAPI
async def test_openapi_lists_jobs_with_the_submit_schema(api):
    resp = await api("GET", "openapi.json", token=False)

    assert resp.status == 200, resp.text
    doc = resp.json
    assert doc["openapi"].startswith("3.1")
    post = doc["paths"]["/jobs"]["post"]
    schema_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref == "#/components/schemas/JobSubmit"
    assert "201" in post["responses"] and "422" in post["responses"]
    submit = doc["components"]["schemas"]["JobSubmit"]
    assert submit["required"] == ["name"]
    assert submit["additionalProperties"] is False
    assert submit["properties"]["name"]["pattern"] == "^[a-zA-Z0-9_-]{1,64}$"
    priority = submit["properties"]["priority"]
    assert (priority["minimum"], priority["maximum"]) == (1, 10)
    assert {"script", "entrypoint", "args", "gpu"} <= set(submit["properties"])
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert {"/jobs/{job_id}", "/workers", "/queue", "/config"} <= set(doc["paths"])


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_openapi_document_is_valid_openapi_3_1(api):
    doc = (await api("GET", "openapi.json", token=False)).json

    schemas = doc["components"]["schemas"]
    dangling = sorted(
        {r for r in _refs(doc) if r.removeprefix("#/components/schemas/") not in schemas}
    )
    assert dangling == []
    validate(doc)
