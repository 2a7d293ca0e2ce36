"""The dashboard's alerts table (a pure function of the alerts the server sent)."""

from __future__ import annotations

from stratalab.notebook.dashboard import alerts_html


def alert(severity: str, rule: str, message: str) -> dict[str, str]:
    return {
        "severity": severity,
        "rule": rule,
        "message": message,
        "status": "active",
        "started_at": "2026-11-23T21:00:05.123Z",
    }


def test_open_alerts_are_listed_worst_first_and_escaped():
    alerts = [
        alert("info", "always_on", "fine"),
        alert("critical", "worker_lost", "worker <wrk_1> left the cluster"),
        alert("warning", "job_failed", "job job_1 failed"),
    ]

    text = alerts_html(alerts)

    assert text.index("worker_lost") < text.index("job_failed") < text.index("always_on")
    assert "worker &lt;wrk_1&gt; left" in text and "<wrk_1>" not in text
    assert "2026-11-23 21:00:05" in text


def test_no_open_alerts_says_so():
    assert "no open alerts" in alerts_html([])
