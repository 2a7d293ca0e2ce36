"""The store: every accepted object and every state change, in one database.

A thin layer over SQLAlchemy 2 that the coordinator calls from an executor
thread (never from the event loop). SQLite runs in WAL mode with
``synchronous=NORMAL`` (a commit survives a crash of the process; PostgreSQL
gives full durability); any SQLAlchemy URL works. The schema is migrated with
Alembic on open.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from stratalab.errors import Conflict, NotFound
from stratalab.ids import utcnow
from stratalab.scheduler.db import ApiKey, Job, JobEvent, JobLog, Setting, WorkerFlag
from stratalab.scheduler.states import JobState, check_transition

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).with_name("migrations")


def sqlite_url(data_dir: str | Path) -> str:
    """The default database: ``stratalab.db`` in the data directory."""
    return f"sqlite:///{Path(data_dir) / 'stratalab.db'}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Store:
    """Persistence for keys, jobs, timelines, logs, worker flags and settings."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        #: the SQLAlchemy URL (credentials included; never shown to clients).
        self.url = url
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: Engine = sa.create_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql``, ..."""
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def ping(self) -> str:
        """Run a trivial query; returns the server version string."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return f"{self.dialect} {'.'.join(map(str, self.engine.dialect.server_version_info or ()))}"

    def page(
        self, query: sa.Select[Any], order_by: Sequence[Any], offset: int, limit: int
    ) -> tuple[list[Any], int]:
        """One page of a query's rows and the total count (for list routes)."""
        with self.session() as s:
            total = s.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
            rows = s.scalars(query.order_by(*order_by).offset(offset).limit(limit)).all()
        return list(rows), int(total)

    # ------------------------------------------------------------------ keys
    def add_key(self, key: ApiKey) -> ApiKey:
        """Store a new key row."""
        with self.session() as s:
            s.add(key)
        return key

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not."""
        with self.session() as s:
            return s.scalar(sa.select(ApiKey).where(ApiKey.key_hash == key_hash))

    def list_keys(self, user_id: str | None = None) -> list[ApiKey]:
        """All keys, or one user's."""
        q = sa.select(ApiKey).order_by(ApiKey.created_at)
        if user_id is not None:
            q = q.where(ApiKey.user_id == user_id)
        with self.session() as s:
            return list(s.scalars(q))

    def revoke_key(self, key_id: str, user_id: str | None = None) -> ApiKey:
        """Mark a key revoked; ``user_id`` limits it to the caller's own keys."""
        with self.session() as s:
            key = s.get(ApiKey, key_id)
            if key is None or (user_id is not None and key.user_id != user_id):
                raise NotFound(f"no API key {key_id}")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
            return key

    # ------------------------------------------------------------------ jobs
    def insert_jobs(self, jobs: Sequence[Job], events: Sequence[JobEvent]) -> None:
        """Commit new jobs and their first timeline rows in one transaction."""
        with self.session() as s:
            s.add_all(jobs)
            s.add_all(events)

    def get_job(self, job_id: str) -> Job | None:
        """One job, or None."""
        with self.session() as s:
            return s.get(Job, job_id)

    def list_jobs(
        self,
        *,
        user_id: str | None,
        states: Iterable[str] = (),
        types: Iterable[str] = (),
        order_by: str = "-created_at",
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[Job], int]:
        """A page of jobs matching the filters, and the total count."""
        conds: list[Any] = []
        if user_id is not None:
            conds.append(Job.user_id == user_id)
        states, types = list(states), list(types)
        if states:
            conds.append(Job.state.in_(states))
        if types:
            conds.append(Job.type.in_(types))
        column = getattr(Job, order_by.lstrip("-"))
        order = column.desc() if order_by.startswith("-") else column.asc()
        with self.session() as s:
            total = s.scalar(sa.select(sa.func.count()).select_from(Job).where(*conds)) or 0
            rows = s.scalars(
                sa.select(Job).where(*conds).order_by(order, Job.id).offset(offset).limit(limit)
            )
            return list(rows), total

    def jobs_in_states(self, states: Iterable[JobState]) -> list[Job]:
        """Every job in one of ``states`` (the queue rebuild after a restart)."""
        values = [s.value for s in states]
        with self.session() as s:
            return list(s.scalars(sa.select(Job).where(Job.state.in_(values))))

    def transition(
        self,
        job_id: str,
        to: JobState,
        *,
        reason: str,
        expect: Iterable[JobState] | None = None,
        at_worker: str | None = None,
        ts: datetime | None = None,
        **updates: Any,
    ) -> tuple[Job, JobEvent]:
        """Move a job to ``to``, record the timeline row, apply ``updates``.

        The update is a compare-and-set on the current state, so two callers
        racing on one job cannot both win; the loser gets :class:`Conflict`.
        """
        now = ts or utcnow()
        with self.session() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFound(f"no job {job_id}")
            src = JobState(job.state)
            if expect is not None and src not in set(expect):
                raise Conflict(
                    f"job {job_id} is {src.value}",
                    details={"state": src.value, "wanted": to.value},
                )
            check_transition(src, to)
            values = {"state": to.value, "updated_at": now, **updates}
            done = s.execute(
                sa.update(Job)
                .where(Job.id == job_id, Job.state == src.value)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(f"job {job_id} changed state concurrently")
            ev = JobEvent(
                job_id=job_id,
                ts=now,
                from_state=src.value,
                to_state=to.value,
                reason=reason,
                worker=at_worker,
            )
            s.add(ev)
            s.flush()
            s.refresh(job)
            return job, ev

    def update_job(self, job_id: str, **updates: Any) -> None:
        """Change fields that are not the state (priority, output, ...)."""
        with self.session() as s:
            s.execute(sa.update(Job).where(Job.id == job_id).values(updated_at=utcnow(), **updates))

    def job_events(self, job_id: str, after_id: int = 0) -> list[JobEvent]:
        """A job's timeline, oldest first."""
        with self.session() as s:
            q = (
                sa.select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
                .order_by(JobEvent.id)
            )
            return list(s.scalars(q))

    def add_logs(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append log lines in one transaction (the coordinator batches them)."""
        if not rows:
            return
        with self.session() as s:
            s.execute(sa.insert(JobLog), list(rows))

    def job_logs(
        self, job_id: str, *, min_level: int = 0, tail: int | None = None, after_id: int = 0
    ) -> list[JobLog]:
        """A job's log lines, oldest first; ``tail`` keeps only the last N."""
        q = sa.select(JobLog).where(
            JobLog.job_id == job_id, JobLog.level >= min_level, JobLog.id > after_id
        )
        with self.session() as s:
            if tail is not None:
                rows = list(s.scalars(q.order_by(JobLog.id.desc()).limit(tail)))
                rows.reverse()
                return rows
            return list(s.scalars(q.order_by(JobLog.id)))

    def state_counts(self, *, user_id: str | None = None) -> dict[str, int]:
        """How many jobs are in each state."""
        q = sa.select(Job.state, sa.func.count()).group_by(Job.state)
        if user_id is not None:
            q = q.where(Job.user_id == user_id)
        with self.session() as s:
            return {state: n for state, n in s.execute(q).all()}

    def ended_since(self, since: datetime) -> dict[str, int]:
        """Jobs that ended after ``since``, counted by final state."""
        q = sa.select(Job.state, sa.func.count()).where(Job.ended_at >= since).group_by(Job.state)
        with self.session() as s:
            return {state: n for state, n in s.execute(q).all()}

    # --------------------------------------------------------- workers, config
    def worker_flags(self) -> dict[str, WorkerFlag]:
        """Every worker an operator drained, by worker id."""
        with self.session() as s:
            return {f.worker_id: f for f in s.scalars(sa.select(WorkerFlag))}

    def set_worker_flag(self, worker_id: str, status: str | None, reason: str = "") -> None:
        """Record a drain (``status``) or clear it (``None``)."""
        with self.session() as s:
            flag = s.get(WorkerFlag, worker_id)
            if status is None:
                if flag is not None:
                    s.delete(flag)
                return
            if flag is None:
                s.add(WorkerFlag(worker_id=worker_id, status=status, reason=reason))
            else:
                flag.status, flag.reason, flag.updated_at = status, reason, utcnow()

    def settings(self) -> dict[str, Any]:
        """Runtime settings changed through ``PUT /config``."""
        with self.session() as s:
            return {row.key: row.value for row in s.scalars(sa.select(Setting))}

    def put_settings(self, values: dict[str, Any]) -> None:
        """Persist runtime settings so they survive a restart."""
        with self.session() as s:
            for key, value in values.items():
                row = s.get(Setting, key)
                if row is None:
                    s.add(Setting(key=key, value=value))
                else:
                    row.value = value
