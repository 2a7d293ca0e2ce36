"""The client's pure parts: Server-Sent Events framing and the metrics series of a plot."""

from __future__ import annotations

from stratalab.notebook.plots import series
from stratalab.notebook.transport import SSEEvent, SSEParser


def feed(lines: list[str]) -> list[SSEEvent]:
    parser = SSEParser()
    return [ev for line in lines if (ev := parser.feed(line)) is not None]


def test_sse_events_with_ids_comments_and_multiline_data():
    events = feed(
        [
            ": keep-alive",
            "",
            "event: state",
            "id: 7",
            'data: {"to_state":',
            'data: "RUNNING"}',
            "",
            "data: not json",
            "",
            "event: end",
            "",  # no data: nothing to deliver
        ]
    )

    assert events == [
        SSEEvent("state", {"to_state": "RUNNING"}, "7"),
        SSEEvent("message", "not json", None),
    ]


def test_metrics_series_from_either_shape():
    by_name = {"metrics": {"loss": [{"step": 0, "value": 1.0}, {"step": 5, "value": 0.25}]}}
    by_row = {
        "points": [{"step": 1, "loss": 0.9, "accuracy": 0.5, "ts": "t"}, {"round": 2, "loss": 0.4}]
    }

    assert series(by_name) == {"loss": ([0.0, 5.0], [1.0, 0.25])}
    assert series(by_row) == {"loss": ([1.0, 2.0], [0.9, 0.4]), "accuracy": ([1.0], [0.5])}
    assert series({"error": "nope"}) == {} and series(None) == {}
