"""Shared fixtures: a real Dask cluster, real databases, a real Jupyter server.

One LocalCluster of worker processes serves the whole session (tests that
kill workers start their own). API tests run against SQLite and, when
``STRATALAB_TEST_PG_URL`` names a server (CI always does), PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tornado.httpclient import HTTPClientError

from stratalab.testing import local_cluster

pytest_plugins = ["pytest_jupyter.jupyter_server"]

PG_URL = os.environ.get("STRATALAB_TEST_PG_URL", "")
API = ("stratalab", "api", "v1")


def reset_postgres(url: str) -> None:
    """Drop every table so each test starts from an empty database."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    """A session-wide cluster of two single-thread worker processes."""
    with local_cluster(2) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'stratalab.db'}"
    if not PG_URL:
        pytest.skip("STRATALAB_TEST_PG_URL is not set (CI sets it)")
    reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Real ONNX and TorchScript files (see tests/jupyter_ext/modelfiles.py)."""
    from tests.jupyter_ext.modelfiles import build

    return build(tmp_path_factory.mktemp("models"))


@pytest.fixture
def stratalab_config() -> dict[str, Any]:
    """Per-test overrides of StrataLab traitlets."""
    return {}


@pytest.fixture
def jp_server_config(
    tmp_path: Path, dask_address: str, db_url: str, stratalab_config: dict[str, Any]
) -> dict[str, Any]:
    """A Jupyter server with the extension, on the shared cluster and a fresh database."""
    return {
        "ServerApp": {"jpserver_extensions": {"stratalab": True}},
        "StrataLab": {
            "data_dir": str(tmp_path / "data"),
            "db_url": db_url,
            "dask_address": dask_address,
            "write_server_info": False,
            "aging_interval_s": 3600.0,
            **stratalab_config,
        },
    }


@dataclass
class Response:
    """What a test needs of an answer."""

    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    def error_code(self) -> str:
        return str(self.json["error"]["code"])


def multipart(
    fields: dict[str, Any],
    file: bytes | None,
    *,
    filename: str = "model.onnx",
    field: str = "model",
) -> tuple[bytes, str]:
    """A multipart/form-data body: text fields (JSON-encoded unless str) and one file."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{text}\r\n'
        )
    out = "".join(parts).encode()
    if file is not None:
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + file
            + b"\r\n"
        )
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


class Api:
    """A small client for the API under test (jp_fetch underneath)."""

    def __init__(self, fetch: Callable[..., Awaitable[Any]], coordinator: Any) -> None:
        self._fetch = fetch
        self.coordinator = coordinator

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | str | None = None,
        key: str | None = None,
        token: bool = True,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float = 30,
    ) -> Response:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["X-API-Key"] = key
        if key is not None or not token:
            hdrs.setdefault("Authorization", "")
        if json_body is not None:
            body = json.dumps(json_body)
            hdrs.setdefault("Content-Type", "application/json")
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        try:
            resp = await self._fetch(
                *API,
                *path.strip("/").split("/"),
                method=method,
                body=body,
                headers=hdrs,
                params=params,
                request_timeout=timeout,
                allow_nonstandard_methods=True,
            )
        except HTTPClientError as exc:
            resp = exc.response
            if resp is None:
                raise
        text = resp.body.decode() if resp.body else ""
        return Response(resp.code, dict(resp.headers.get_all()), text)

    async def upload(
        self,
        model: bytes,
        fields: dict[str, Any] | None = None,
        *,
        filename: str = "model.onnx",
        key: str | None = None,
    ) -> Response:
        """``POST /models`` as a multipart form, the way curl -F sends it."""
        body, content_type = multipart(fields or {}, model, filename=filename)
        return await self(
            "POST", "models", body=body, key=key, headers={"Content-Type": content_type}
        )

    async def create_key(self, user: str, scope: str = "user") -> str:
        resp = await self("POST", "keys", json_body={"user_id": user, "scope": scope})
        assert resp.status == 201, resp.text
        return str(resp.json["key"])

    async def wait_job(
        self, job_id: str, states: set[str], *, key: str | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        """Poll a job until it reaches one of ``states`` (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            resp = await self("GET", f"jobs/{job_id}", key=key)
            job = resp.json
            if job.get("status") in states:
                return job
            await asyncio.sleep(0.1)
        raise AssertionError(f"job {job_id} stayed {job.get('status')}, wanted {states}: {job}")


@pytest.fixture
def api(jp_serverapp: Any, jp_fetch: Any, jp_asyncio_loop: asyncio.AbstractEventLoop) -> Api:
    """The API of a started StrataLab server."""
    ext = jp_serverapp.extension_manager.extension_points["stratalab"].app
    jp_asyncio_loop.run_until_complete(ext.coordinator.start())
    return Api(jp_fetch, ext.coordinator)
