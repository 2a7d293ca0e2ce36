"""Helpers for tests of StrataLab and of code built on it (like distributed.utils_test)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from distributed import LocalCluster

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``probe`` until it returns something truthy; return that value.

    Raises :class:`TimeoutError` naming ``what`` after ``timeout`` seconds, so a
    test polls with a deadline instead of guessing a sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what or probe}")
        time.sleep(interval)


#: A trace id as the error envelope carries it.
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
#: Text that must never reach a client: tracebacks, SQL, driver names, file paths.
LEAKS = ("traceback", "sqlalchemy", "select ", "psycopg", 'file "', "sqlite3")


def assert_error(resp: Any, status: int | set[int], code: str | None) -> dict[str, Any]:
    """Assert ``resp`` is the error envelope with ``status`` and ``code``, leaking nothing.

    ``resp`` needs ``status``, ``headers``, ``text`` and ``json`` (the test
    harness's response). Returns the envelope's ``error`` object.
    """
    wanted = {status} if isinstance(status, int) else status
    assert resp.status in wanted, (resp.status, resp.text)
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json
    assert set(body) == {"error"}, body
    err: dict[str, Any] = body["error"]
    assert {"code", "message", "trace_id"} <= set(err) <= {"code", "message", "trace_id", "details"}
    if code is not None:
        assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    assert TRACE_ID.match(err["trace_id"]), err
    lowered = resp.text.lower()
    for leak in LEAKS:
        assert leak not in lowered, (leak, resp.text)
    return err


def local_cluster(n_workers: int = 2, **kwargs: Any) -> LocalCluster:
    """A small cluster of single-thread worker processes, sized for a 2-core test box."""
    options: dict[str, Any] = {
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "memory_limit": "2GiB",
        **kwargs,
    }
    return LocalCluster(n_workers=n_workers, **options)
