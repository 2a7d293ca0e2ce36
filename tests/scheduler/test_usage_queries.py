"""Usage rows written by the recorder and read back grouped, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from stratalab.scheduler.store import Store
from stratalab.scheduler.usage import UsageRecorder
from stratalab.scheduler.usage_queries import grouped


async def _db(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
def store(db_url: str) -> Any:
    s = Store(db_url)
    s.migrate()
    yield s
    s.close()


async def test_recorded_work_groups_by_hour_kind_and_outcome(store):
    # Prepare: a task, a failed training update and three served requests (rolled up)
    rec = UsageRecorder(store, _db, workers=dict)
    rec.add(user_id="u1", kind="task", job_id="job_a", cpu_ms=1200.0)
    rec.work_done(
        "training", job_id="job_b", user_id="u1", project_id=None, worker="w", result=None
    )
    for request in ("infer_1", "infer_2"):
        rec.on_request_record(
            {
                "user_id": "u2",
                "kind": "sync",
                "request_id": request,
                "compute_ms": 2.0,
                "items": 1,
                "device": "cpu",
                "error_code": None,
                "project_id": "proj_x",
            }
        )
    rec.on_request_record(
        {
            "user_id": "u2",
            "kind": "sync",
            "request_id": "infer_3",
            "compute_ms": 0.0,
            "items": 1,
            "device": "cpu",
            "error_code": "NO_DEVICES",
            "project_id": "proj_x",
        }
    )

    # Execute
    await rec.flush()
    now = time.time()
    by_kind = grouped(store, since=now - 60, until=now + 60, by=("user_id", "kind", "failed"))
    hours = grouped(store, since=now - 60, until=now + 60, by=("hour",))
    project = grouped(store, since=now - 60, until=now + 60, project_id="proj_x")

    # Assert
    cells = {(r.user_id, r.kind, r.failed): r for r in by_kind}
    assert cells["u1", "task", False].cpu_ms == 1200.0
    assert cells["u1", "training", True].errors == 1
    assert cells["u2", "inference", False].tasks == 2
    assert cells["u2", "inference", False].items == 2
    assert cells["u2", "inference", False].cpu_ms == 4.0
    assert cells["u2", "inference", True].items == 0
    assert cells["u2", "inference", True].errors == 1
    assert [h.hour for h in hours] == [int(now) // 3600]
    assert hours[0].records == 4  # the three requests became two rows
    assert project[0].tasks == 3
    assert all(r.energy_j is None for r in by_kind)


async def test_a_window_without_records_gives_no_rows(store):
    now = time.time()

    assert grouped(store, since=now - 3600, until=now, by=("kind",)) == []
    assert grouped(store, since=now - 3600, until=now) == []
