"""OpenAPI operations of alerts and the WebSocket (merged by ``openapi.py``).

OpenAPI has no words for a WebSocket's messages, so ``/ws`` is listed as the
upgrade it is (101), and its messages are described in its summary and in
``stratalab/jupyter_ext/websocket.py``.
"""

from __future__ import annotations

from pydantic import BaseModel

from stratalab.scheduler import alert_schemas as a
from stratalab.scheduler import schemas as s

_ALERT = "/alerts/{alert_id}"

#: (method, path, summary, request model, response model, success status, public)
ALERT_OPERATIONS: list[
    tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None, int, bool]
] = [
    (
        "get",
        "/alerts",
        "Alerts, newest first (severity, status, rule, from, to: ISO 8601; page_size, page_token)",
        None,
        s.Page[a.AlertOut],
        200,
        False,
    ),
    ("get", "/alerts/rules", "The alert rules in force", None, a.AlertRulesOut, 200, False),
    ("get", _ALERT, "One alert", None, a.AlertOut, 200, False),
    (
        "post",
        f"{_ALERT}/acknowledge",
        "Acknowledge an alert (409 if already acknowledged)",
        a.AlertAcknowledge,
        a.AlertOut,
        200,
        False,
    ),
    (
        "get",
        "/ws",
        "WebSocket upgrade: send {action: subscribe, topics: [workers, jobs, metrics, logs, "
        "alerts], job_ids?}, {action: unsubscribe, topics?} or {action: ping}; receive "
        "{type: event, topic, data, ts}, subscribed, unsubscribed, pong, "
        "{type: lagged, dropped}, {type: error, code, message}",
        None,
        None,
        101,
        False,
    ),
]
