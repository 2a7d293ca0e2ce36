"""The one exception a notebook user catches: :class:`ApiError`.

Every failure of the client, whether the server answered with the error
envelope, answered with something else, or could not be reached at all,
becomes an :class:`ApiError` with the API's error code. A user sees
``AUTH_INVALID: the API key is unknown or revoked``, never a stack of httpx
internals.
"""

from __future__ import annotations

from typing import Any

import httpx

#: HTTP statuses that mean "the server is there but not serving".
_UNAVAILABLE = {502, 503, 504}


class ApiError(Exception):
    """An error answer from the server (or no answer at all).

    Parameters
    ----------
    code
        The API error code (``NOT_FOUND``, ``AUTH_INVALID``, ``SERVICE_UNAVAILABLE``, ...).
    message
        What went wrong, safe to show.
    status
        The HTTP status; None when the server could not be reached.
    trace_id
        The id of the server-side log entry; quote it to an operator.
    details
        Machine-readable extras (field errors, limits).
    """

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
        #: what went wrong, safe to show.
        self.message = message
        #: HTTP status (None when the server could not be reached).
        self.status = status
        #: quote this to an operator: it finds the server-side log entry.
        self.trace_id = trace_id
        #: machine-readable extras from the envelope.
        self.details = details


class WaitTimeout(ApiError, TimeoutError):
    """A wait gave up before the job ended (the job itself goes on)."""

    def __init__(self, message: str) -> None:
        super().__init__("TIMEOUT", message)


def unreachable(url: str, exc: Exception) -> ApiError:
    """The error for a request that got no HTTP answer (refused, DNS, timeout, bad URL)."""
    reason = str(exc).strip() or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        reason = f"no answer in time ({type(exc).__name__})"
    return ApiError("SERVICE_UNAVAILABLE", f"cannot reach StrataLab at {url}: {reason}")


def _code_for_status(status: int) -> str:
    if status == 401:
        return "AUTH_REQUIRED"
    if status == 403:
        return "FORBIDDEN"
    if status == 404:
        return "NOT_FOUND"
    if status == 413:
        return "PAYLOAD_TOO_LARGE"
    if status == 429:
        return "RATE_LIMITED"
    if status in _UNAVAILABLE:
        return "SERVICE_UNAVAILABLE"
    if status < 500:
        return "BAD_REQUEST"
    return "INTERNAL_ERROR"


def decode(resp: httpx.Response) -> Any:
    """The JSON body of a success; an :class:`ApiError` for anything else."""
    status = resp.status_code
    if status == 204 or not resp.content:
        if status >= 400:
            raise ApiError(_code_for_status(status), f"HTTP {status}", status=status)
        return None
    try:
        body = resp.json()
    except ValueError:
        if status < 400:
            raise ApiError(
                "INTERNAL_ERROR", f"HTTP {status} with a non-JSON body", status=status
            ) from None
        hint = " (is this a StrataLab API URL?)" if status == 404 else ""
        raise ApiError(
            _code_for_status(status), f"HTTP {status} from {resp.request.url}{hint}", status=status
        ) from None
    if status >= 400:
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        raise ApiError(
            str(err.get("code") or _code_for_status(status)),
            str(err.get("message") or f"HTTP {status}"),
            status=status,
            trace_id=err.get("trace_id") or resp.headers.get("X-Trace-Id"),
            details=err.get("details"),
        )
    return body
