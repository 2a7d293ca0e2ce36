"""One exception hierarchy for every StrataLab layer.

Each error carries the API error code and HTTP status it maps to, so the web
layer turns any of them into the error envelope in one place, and the core
never needs to know about HTTP beyond this table.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError


class StrataLabError(Exception):
    """Base class: an error that is safe to show to the caller."""

    #: API error code (see ``shared/design/api.md``).
    code: ClassVar[str] = "INTERNAL_ERROR"
    #: HTTP status the web layer answers with.
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        #: Human-readable message; never contains a traceback or SQL.
        self.message = message
        #: Machine-readable extra information (field errors, limits, ...).
        self.details = details


class BadRequest(StrataLabError):
    """The request cannot be parsed (malformed JSON, bad query parameter)."""

    code = "BAD_REQUEST"
    status = 400


class ValidationFailed(StrataLabError):
    """The request parsed but a field has the wrong type or value."""

    code = "VALIDATION_ERROR"
    status = 422


class AuthRequired(StrataLabError):
    """No credentials were sent."""

    code = "AUTH_REQUIRED"
    status = 401


class AuthInvalid(StrataLabError):
    """Credentials were sent but are unknown, revoked or malformed."""

    code = "AUTH_INVALID"
    status = 401


class Forbidden(StrataLabError):
    """The caller is known but lacks the scope for this action."""

    code = "FORBIDDEN"
    status = 403


class NotFound(StrataLabError):
    """The object does not exist, or belongs to another user."""

    code = "NOT_FOUND"
    status = 404


class Conflict(StrataLabError):
    """The object's current state does not allow this action."""

    code = "CONFLICT"
    status = 409


class CannotCancel(Conflict):
    """The job already reached a terminal state."""

    code = "CANNOT_CANCEL"


class CannotPause(Conflict):
    """The job is not in a state that can be paused."""

    code = "CANNOT_PAUSE"


class NoDevices(StrataLabError):
    """No worker can serve this request now."""

    code = "NO_DEVICES"
    status = 503


class NoTrainingDevices(StrataLabError):
    """No worker of the cluster could ever run this training job."""

    code = "NO_TRAINING_DEVICES"
    status = 409


class NoModel(StrataLabError):
    """The model is unknown or was deleted."""

    code = "NO_MODEL"
    status = 404


class PayloadTooLarge(StrataLabError):
    """The body is over the configured limit."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413


class RateLimited(StrataLabError):
    """The API key spent its request budget; retry after ``retry_after`` s."""

    code = "RATE_LIMITED"
    status = 429

    def __init__(self, message: str, *, retry_after: float, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        #: Seconds until one more request is allowed.
        self.retry_after = retry_after


class ServiceUnavailable(StrataLabError):
    """A dependency (Dask, the database) is down; the request may be retried."""

    code = "SERVICE_UNAVAILABLE"
    status = 503


class GatewayTimeout(StrataLabError):
    """The work did not finish within the caller's timeout."""

    code = "SERVICE_UNAVAILABLE"
    status = 504


#: HTTP status of a bare tornado error mapped to the envelope's code.
STATUS_CODES: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "AUTH_REQUIRED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "BAD_REQUEST",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
    504: "SERVICE_UNAVAILABLE",
}


def validation_details(exc: ValidationError) -> dict[str, Any]:
    """Field errors of a pydantic failure, without echoing large inputs back."""
    errors = [
        {
            "field": ".".join(str(p) for p in e["loc"]) or "(body)",
            "message": e["msg"],
            "type": e["type"],
        }
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return {"errors": errors}
