"""What every StrataLab route shares: who is calling, parsing, errors, limits.

Handlers stay thin: they call :meth:`ApiHandler.principal` (authenticated and
rate-limited), :meth:`ApiHandler.body` (size-checked, pydantic-validated) and
one coordinator method, then :meth:`ApiHandler.reply`. Every failure, ours or
tornado's, leaves as the error envelope with a trace id; the traceback goes
to the server log only.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import uuid
from typing import Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel, ValidationError
from tornado import web

from stratalab.errors import (
    STATUS_CODES,
    AuthRequired,
    BadRequest,
    PayloadTooLarge,
    RateLimited,
    StrataLabError,
    ValidationFailed,
    validation_details,
)
from stratalab.scheduler.coordinator import Coordinator
from stratalab.scheduler.keys import Principal

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

API_PREFIX = "/stratalab/api/v1"
#: deepest offset a page token may carry (beyond it a list is not being paged, it is attacked).
MAX_OFFSET = 10_000_000
#: deepest JSON nesting a body may have.
MAX_JSON_DEPTH = 64
_METHODS = ("get", "post", "put", "patch", "delete")


def encode_page_token(offset: int) -> str:
    """An opaque token for the next page."""
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    """The offset inside a page token; :class:`BadRequest` if it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        offset = json.loads(raw)["o"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadRequest("page_token is not valid", details={"field": "page_token"}) from None
    if not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise BadRequest("page_token is not valid", details={"field": "page_token"})
    return offset


def _check_strings(value: Any, depth: int = 0) -> None:
    """Refuse NUL characters (no database stores them) and absurd nesting."""
    if depth > MAX_JSON_DEPTH:
        raise BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationFailed("strings must not contain NUL (\\u0000) characters")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_strings(k, depth + 1)
            _check_strings(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            if type(v) is float or type(v) is int:
                continue  # tensors are long lists of numbers: skip the call per element
            _check_strings(v, depth + 1)


class ApiHandler(APIHandler):
    """Base of every StrataLab route."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Let our own auth run: jupyter_server must not redirect API calls to a login page."""
        super().__init_subclass__(**kwargs)
        for name in _METHODS:
            fn = cls.__dict__.get(name)
            if fn is not None:
                # the literal name JupyterHandler.prepare reads (no class-private mangling)
                setattr(fn, "__allow_unauthenticated", True)

    _principal: Principal | None = None
    _api_key: str | None = None

    @property
    def coordinator(self) -> Coordinator:
        """The coordinator the extension put in the settings."""
        coordinator: Coordinator = self.settings["stratalab.coordinator"]
        return coordinator

    # ------------------------------------------------------------------ auth
    async def prepare(self) -> None:  # type: ignore[override]
        """Authenticate (API key or Jupyter identity), rate-limit, check the body size."""
        self._trace_id = uuid.uuid4().hex
        #: headers every answer carries, errors included (send_error clears the rest).
        self._sticky_headers = {"X-Trace-Id": self._trace_id}
        self.set_header("X-Trace-Id", self._trace_id)
        self._api_key = self.request.headers.get("X-API-Key")
        await super().prepare()
        if self.auth_required:
            await self.coordinator.wait_ready()
            self._principal = await self._authenticate()
            self._rate_limit(self._principal)
            self._check_body_size()

    #: routes that answer without credentials set this to False.
    auth_required = True

    async def _authenticate(self) -> Principal:
        if self._api_key is not None:
            keys = self.coordinator.keys
            known = keys.cached(self._api_key)
            return known or await self.coordinator.db(keys.verify, self._api_key)
        if self.current_user is not None:
            return Principal(user_id=self.coordinator.config.owner, scope="admin")
        raise AuthRequired("send an X-API-Key header or a Jupyter token")

    def check_xsrf_cookie(self) -> None:
        """Cookie-authenticated browsers need XSRF; API keys and tokens do not."""
        if self._api_key is not None:
            return
        if getattr(self, "_jupyter_current_user", None) is None:
            return  # unauthenticated: our prepare answers 401
        super().check_xsrf_cookie()

    def principal(self) -> Principal:
        """The authenticated caller."""
        if self._principal is None:
            raise AuthRequired("authentication required")
        return self._principal

    def _rate_limit(self, principal: Principal) -> None:
        key = principal.key_id or f"user:{principal.user_id}"
        verdict = self.coordinator.limiter.check(key)
        if verdict.limit:
            self._sticky_headers.update(
                {
                    "X-RateLimit-Limit": str(verdict.limit),
                    "X-RateLimit-Remaining": str(verdict.remaining),
                    "X-RateLimit-Reset": str(math.ceil(verdict.reset_s)),
                }
            )
            for name, value in self._sticky_headers.items():
                self.set_header(name, value)
        if not verdict.allowed:
            raise RateLimited(
                f"rate limit of {verdict.limit} requests per minute exceeded",
                retry_after=verdict.retry_after_s,
                details={"limit_per_minute": verdict.limit},
            )

    # ------------------------------------------------------------------ body
    #: largest body this route accepts, in bytes (None: the JSON limit).
    max_body_bytes: int | None = None

    def _body_limit(self) -> int:
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return self.coordinator.config.max_json_kb * 1024

    def _check_body_size(self) -> None:
        limit = self._body_limit()
        declared = self.request.headers.get("Content-Length")
        size = int(declared) if declared and declared.isdigit() else len(self.request.body or b"")
        if size > limit:
            raise PayloadTooLarge(
                f"the body is {size} bytes; the limit is {limit}",
                details={"limit_bytes": limit, "size_bytes": size},
            )

    def json_body(self, *, optional: bool = False) -> Any:
        """The parsed JSON body; :class:`BadRequest` when it is not JSON."""
        raw = self.request.body or b""
        if not raw.strip():
            if optional:
                return {}
            raise BadRequest("a JSON body is required")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(
                "the body is not valid JSON", details={"position": getattr(exc, "pos", None)}
            ) from None
        except RecursionError:
            raise BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
        _check_strings(data)
        return data

    def body(self, model: type[M], *, optional: bool = False) -> M:
        """The body validated against ``model``."""
        data = self.json_body(optional=optional)
        if not isinstance(data, dict):
            raise ValidationFailed("the body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ValidationFailed(
                "the body is not valid", details=validation_details(exc)
            ) from None

    # ----------------------------------------------------------------- query
    def query_int(self, name: str, default: int, *, lo: int, hi: int) -> int:
        """An integer query parameter within ``[lo, hi]``."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"{name} must be an integer", details={"field": name}) from None
        if not lo <= value <= hi:
            raise BadRequest(f"{name} must be between {lo} and {hi}", details={"field": name})
        return value

    def query_float(self, name: str, default: float, *, lo: float, hi: float) -> float:
        """A finite number query parameter within ``[lo, hi]``."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise BadRequest(f"{name} must be a number", details={"field": name}) from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise BadRequest(f"{name} must be between {lo:g} and {hi:g}", details={"field": name})
        return value

    def query_list(self, name: str, allowed: tuple[str, ...]) -> list[str] | None:
        """A comma-separated choice of ``allowed`` values (None when absent)."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return None
        values = [v.strip() for v in raw.split(",") if v.strip()]
        bad = sorted(set(values) - set(allowed))
        if bad or not values:
            raise BadRequest(
                f"{name} must be a comma-separated list of {', '.join(allowed)}",
                details={"field": name, "allowed": list(allowed)},
            )
        return values

    def query_bool(self, name: str, default: bool) -> bool:
        """A boolean query parameter (true/false/1/0)."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise BadRequest(f"{name} must be true or false", details={"field": name})

    def page(self) -> tuple[int, int]:
        """(offset, page_size) from ``page_token`` and ``page_size``."""
        size = self.query_int("page_size", 50, lo=1, hi=1000)
        token = self.get_query_argument("page_token", None)
        return (decode_page_token(token) if token else 0), size

    def reply_page(self, items: list[Any], total: int, offset: int, size: int) -> None:
        """A list response with ``next_page_token`` when more remain."""
        nxt = offset + len(items)
        token = encode_page_token(nxt) if nxt < total and items else None
        self.reply({"items": items, "total": total, "next_page_token": token})

    # ---------------------------------------------------------------- output
    def reply(self, data: Any, status: int = 200, *, location: str | None = None) -> None:
        """Finish with JSON (and ``Location`` for created objects)."""
        self.set_status(status)
        if location:
            self.set_header("Location", location)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error, ours or tornado's, as the envelope; tracebacks stay in the log."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        trace_id = getattr(self, "_trace_id", None) or uuid.uuid4().hex
        details: dict[str, Any] | None = None
        if isinstance(exc, StrataLabError):
            code, message, details = exc.code, exc.message, exc.details
            if isinstance(exc, RateLimited):
                self.set_header("Retry-After", str(max(1, math.ceil(exc.retry_after))))
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            code = STATUS_CODES.get(status_code, "BAD_REQUEST")
            message = exc.log_message if exc.log_message else self._reason
            if status_code == 403 and "xsrf" in (exc.log_message or "").lower():
                message = "missing or wrong XSRF token for a cookie-authenticated request"
        else:
            code, message = "INTERNAL_ERROR", "an internal error occurred"
            if status_code == 503:
                code, message = "SERVICE_UNAVAILABLE", "a dependency is unavailable"
        if status_code >= 500:
            logger.error(
                "trace %s: %s %s failed",
                trace_id,
                self.request.method,
                self.request.path,
                exc_info=kwargs.get("exc_info"),
            )
        for name, value in getattr(self, "_sticky_headers", {}).items():
            self.set_header(name, value)
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "application/json")
        body: dict[str, Any] = {"code": code, "message": message, "trace_id": trace_id}
        if details:
            body["details"] = details
        self.finish(json.dumps({"error": body}, default=str))

    #: long-lived streams set this: counted, but kept out of the latency figures.
    streaming = False

    def on_finish(self) -> None:
        """Count the request (``coordinator_rps``, Prometheus request counters)."""
        coordinator = self.settings.get("stratalab.coordinator")
        if coordinator is not None:
            coordinator.observability.requests.observe(
                type(self).__name__,
                self.request.method or "GET",
                self.get_status(),
                self.request.request_time(),
                streaming=self.streaming,
            )
        super().on_finish()

    def allowed_methods(self) -> list[str]:
        """The HTTP methods this route implements (for ``Allow`` on a 405)."""
        return [
            m.upper()
            for m in _METHODS
            if getattr(type(self), m) is not getattr(web.RequestHandler, m)
        ]

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, StrataLabError):
            if self._finished:
                return
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Our own errors are answers, not server faults: no traceback in the log."""
        if isinstance(value, StrataLabError) and value.status < 500:
            return
        super().log_exception(typ, value, tb)


class NotFoundHandler(ApiHandler):
    """Unknown paths under the API prefix answer with the envelope."""

    auth_required = False

    async def get(self, *_: str) -> None:
        """No such route."""
        raise web.HTTPError(404, "no such route")

    post = put = patch = delete = get
