"""A Python client for the StrataLab REST API, for notebooks and scripts.

It talks to the server over HTTP only (httpx). Errors come back as
:class:`ApiError` carrying the server's code and trace id, never as an httpx
traceback, so a user sees "AUTH_INVALID: the API key is unknown or revoked"
rather than a stack of transport internals.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


class ApiError(Exception):
    """An error answer from the server (or no answer at all)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        trace_id: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        #: the API's error code (``NOT_FOUND``, ``AUTH_INVALID``, ...).
        self.code = code
        self.message = message
        #: HTTP status (None when the server could not be reached).
        self.status = status
        #: quote this to an operator: it finds the server-side log entry.
        self.trace_id = trace_id
        self.details = details


def discover(data_dir: str | Path | None = None) -> dict[str, Any]:
    """Find a running server: ``$STRATALAB_URL``, else a ``server.json``."""
    if os.environ.get("STRATALAB_URL"):
        return {
            "url": os.environ["STRATALAB_URL"],
            "admin_key": os.environ.get("STRATALAB_API_KEY"),
        }
    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir) / "server.json")
    if os.environ.get("STRATALAB_DATA_DIR"):
        candidates.append(Path(os.environ["STRATALAB_DATA_DIR"]) / "server.json")
    from jupyter_core.paths import jupyter_runtime_dir

    runtime = sorted(
        Path(jupyter_runtime_dir()).glob("stratalab-*.json"),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in [*candidates, *runtime]:
        if path.exists():
            info: dict[str, Any] = json.loads(path.read_text())
            return info
    raise ApiError("NOT_FOUND", "no running StrataLab server found; pass url= and api_key=")


class Client:
    """Talk to one StrataLab server.

    Parameters
    ----------
    url
        The API base (``http://host:port/stratalab/api/v1``); found
        automatically inside a StrataLab-enabled Jupyter server.
    api_key
        An ``X-API-Key`` secret; defaults to the discovered admin key.
    token
        A Jupyter token, as an alternative to an API key.
    timeout
        Seconds for each request.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        data_dir: str | Path | None = None,
    ) -> None:
        if url is None:
            info = discover(data_dir)
            url = str(info["url"])
            if api_key is None and token is None:
                api_key = info.get("admin_key")
                token = None if api_key else info.get("token")
        headers = {}
        if api_key:
            headers["X-API-Key"] = api_key
        elif token:
            headers["Authorization"] = f"token {token}"
        #: the API base URL.
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- transport
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call; returns the decoded JSON body, raises :class:`ApiError`."""
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                "SERVICE_UNAVAILABLE", f"cannot reach {self.url}: {type(exc).__name__}"
            ) from None
        return _decode(resp)

    def stream_events(self, path: str, **params: Any) -> Iterator[tuple[str, Any]]:
        """Yield ``(event, data)`` pairs from a Server-Sent Events route."""
        try:
            with self._http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _decode(resp)
                event, data = "message", []
                for line in resp.iter_lines():
                    if not line:
                        if data:
                            yield event, json.loads("\n".join(data))
                        event, data = "message", []
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        except httpx.TransportError as exc:
            raise ApiError(
                "SERVICE_UNAVAILABLE", f"stream from {self.url} broke: {type(exc).__name__}"
            ) from None

    # ------------------------------------------------------------------ API
    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return dict(self.request("GET", "/health"))

    def status(self) -> dict[str, Any]:
        """``GET /status``: Dask address, dashboard, uptime."""
        return dict(self.request("GET", "/status"))

    def submit(
        self, name: str, *, script: str | None = None, entrypoint: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Submit a task job; returns the ``POST /jobs`` answer."""
        body = {"name": name, "type": "task", **fields}
        if script is not None:
            body["script"] = script
        if entrypoint is not None:
            body["entrypoint"] = entrypoint
        return dict(self.request("POST", "/jobs", json=body))

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}`` (with its timeline)."""
        return dict(self.request("GET", f"/jobs/{job_id}"))

    def jobs(self, **params: Any) -> list[dict[str, Any]]:
        """Every job matching the filters (follows page tokens)."""
        items: list[dict[str, Any]] = []
        params = {"page_size": 200, **params}
        while True:
            page = self.request("GET", "/jobs", params=params)
            items.extend(page["items"])
            if not page.get("next_page_token"):
                return items
            params["page_token"] = page["next_page_token"]

    def cancel(self, job_id: str, reason: str | None = None) -> dict[str, Any]:
        """``POST /jobs/{id}/cancel``."""
        body = {"reason": reason} if reason else None
        return dict(self.request("POST", f"/jobs/{job_id}/cancel", json=body))

    def wait(self, job_id: str, timeout: float = 600, poll_s: float = 0.2) -> dict[str, Any]:
        """Poll until the job ends; returns the final job."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in _TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise ApiError("SERVICE_UNAVAILABLE", f"job {job_id} still {job['status']}")
            time.sleep(poll_s)

    def logs(
        self, job_id: str, *, follow: bool = True, tail: int = 100, level: str = "INFO"
    ) -> Iterator[dict[str, Any]]:
        """Log lines of a job; with ``follow``, until the job ends."""
        for event, data in self.stream_events(
            f"/jobs/{job_id}/logs", follow=str(follow).lower(), tail=tail, level=level
        ):
            if event == "log":
                yield data

    def queue(self) -> dict[str, Any]:
        """``GET /queue``."""
        return dict(self.request("GET", "/queue"))

    def workers(self) -> list[dict[str, Any]]:
        """``GET /workers``."""
        return list(self.request("GET", "/workers", params={"page_size": 1000})["items"])

    def create_key(self, user_id: str, *, scope: str = "user", name: str = "") -> dict[str, Any]:
        """``POST /keys`` (admins may create keys for any user)."""
        return dict(
            self.request("POST", "/keys", json={"user_id": user_id, "scope": scope, "name": name})
        )


def _decode(resp: httpx.Response) -> Any:
    if resp.status_code == 204 or not resp.content:
        if resp.status_code >= 400:
            raise ApiError("INTERNAL_ERROR", f"HTTP {resp.status_code}", status=resp.status_code)
        return None
    try:
        body = resp.json()
    except ValueError:
        raise ApiError(
            "INTERNAL_ERROR",
            f"HTTP {resp.status_code} with a non-JSON body",
            status=resp.status_code,
        ) from None
    if resp.status_code >= 400:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        raise ApiError(
            str(err.get("code", "INTERNAL_ERROR")),
            str(err.get("message", f"HTTP {resp.status_code}")),
            status=resp.status_code,
            trace_id=err.get("trace_id"),
            details=err.get("details"),
        )
    return body
