"""The store on SQLite and PostgreSQL: migrations, compare-and-set, logs, keys."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from stratalab.errors import Conflict, NotFound
from stratalab.ids import new_id, utcnow
from stratalab.scheduler.db import Base, Job, JobEvent
from stratalab.scheduler.keys import KeyManager
from stratalab.scheduler.states import JobState
from stratalab.scheduler.store import Store


@pytest.fixture
def store(db_url: str):
    s = Store(db_url)
    s.migrate()
    yield s
    s.close()


def make_job(**kw) -> Job:
    now = utcnow()
    fields = dict(
        id=new_id("job"),
        user_id="alice",
        name="j",
        type="task",
        state="QUEUED",
        priority=5,
        created_at=now,
        queued_at=now,
        updated_at=now,
        spec={"script": "pass"},
        resources={"cpu": 1},
        metadata_={},
        max_retries=1,
        retry_count=0,
        attempt=0,
    )
    fields.update(kw)
    return Job(**fields)


def test_migrated_schema_matches_the_models(store: Store):
    inspector = sa.inspect(store.engine)
    for table in Base.metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name
    store.migrate()  # idempotent


def test_sqlite_runs_in_wal_mode(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    s.migrate()
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    s.close()


def test_transition_records_timeline_and_refuses_stale_state(store: Store):
    job = make_job()
    store.insert_jobs(
        [job], [JobEvent(job_id=job.id, from_state=None, to_state="QUEUED", reason="queued")]
    )
    updated, ev = store.transition(
        job.id,
        JobState.SCHEDULING,
        reason="placed",
        expect={JobState.QUEUED},
        at_worker="tcp://w",
        attempt=Job.attempt + 1,
    )
    assert updated.state == "SCHEDULING" and updated.attempt == 1
    assert (ev.from_state, ev.to_state, ev.worker) == ("QUEUED", "SCHEDULING", "tcp://w")
    with pytest.raises(Conflict):
        store.transition(job.id, JobState.SCHEDULING, reason="again", expect={JobState.QUEUED})
    with pytest.raises(Conflict):
        store.transition(job.id, JobState.COMPLETED, reason="skip the run")
    with pytest.raises(NotFound):
        store.transition("job_missing", JobState.QUEUED, reason="x")
    assert [e.to_state for e in store.job_events(job.id)] == ["QUEUED", "SCHEDULING"]


def test_list_jobs_filters_orders_and_counts(store: Store):
    jobs = [
        make_job(user_id="alice", priority=p, state=s)
        for p, s in [(1, "QUEUED"), (9, "QUEUED"), (5, "COMPLETED")]
    ]
    jobs.append(make_job(user_id="bob"))
    store.insert_jobs(jobs, [])
    rows, total = store.list_jobs(user_id="alice", states=["QUEUED"], order_by="-priority")
    assert total == 2
    assert [r.priority for r in rows] == [9, 1]
    _, everyone = store.list_jobs(user_id=None)
    assert everyone == 4
    assert store.state_counts(user_id="alice") == {"QUEUED": 2, "COMPLETED": 1}


def test_logs_tail_and_level_filter(store: Store):
    rows = [
        {
            "job_id": "job_1",
            "attempt": 1,
            "seq": i,
            "ts": float(i),
            "stream": "stdout",
            "level": 30 if i % 2 else 20,
            "message": f"m{i}",
        }
        for i in range(10)
    ]
    store.add_logs(rows)
    assert [r.message for r in store.job_logs("job_1", tail=3)] == ["m7", "m8", "m9"]
    assert [r.message for r in store.job_logs("job_1", min_level=30)] == [
        "m1",
        "m3",
        "m5",
        "m7",
        "m9",
    ]


def test_keys_are_hashed_and_revocable(store: Store):
    keys = KeyManager(store)
    row, secret = keys.create("alice", scope="user")
    assert keys.verify(secret).user_id == "alice"
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT * FROM api_keys")).mappings().all()
    assert all(secret not in str(dict(r)) for r in stored)
    keys.revoke(row.id, user_id="alice")
    from stratalab.errors import AuthInvalid

    with pytest.raises(AuthInvalid):
        keys.verify(secret)
    with pytest.raises(NotFound):
        keys.revoke(row.id, user_id="mallory")


def test_settings_and_worker_flags_persist(store: Store):
    store.put_settings({"rate_limit_per_minute": 10})
    store.put_settings({"rate_limit_per_minute": 20})
    assert store.settings() == {"rate_limit_per_minute": 20}
    store.set_worker_flag("wrk_1", "drained", "maintenance")
    assert set(store.worker_flags()) == {"wrk_1"}
    store.set_worker_flag("wrk_1", None)
    assert store.worker_flags() == {}
