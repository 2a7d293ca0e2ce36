"""Reservations: workers held for a user until a job claims them or time runs out.

A reservation takes workers out of the training pool the moment it is
created; a running job of lower urgency on those workers is preempted at its
next round boundary (checkpoint first), which is FetchML's "a reservation
preempts a lower job". A training job names the reservation in
``resource_config.reservation_id`` to run on the held workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from stratalab.errors import Conflict, NotFound
from stratalab.ids import as_utc, isoformat, new_id, utcnow
from stratalab.scheduler.cluster import WorkerInfo
from stratalab.scheduler.db import Reservation
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.store import Store
from stratalab.scheduler.training_schemas import ReservationCreate

logger = logging.getLogger(__name__)

#: Statuses in which a reservation holds its workers.
HOLDING = ("active", "claimed")


class ReservationBook:
    """Creates, lists, expires and releases reservations (blocking: call from a thread)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: holding reservations by id (kept in memory for the planner).
        self.holding: dict[str, Reservation] = {}

    def load(self) -> None:
        """Read the holding reservations (on start)."""
        with self.store.session() as s:
            rows = s.scalars(sa.select(Reservation).where(Reservation.status.in_(HOLDING)))
            self.holding = {r.id: r for r in rows}

    def create(
        self,
        principal: Principal,
        req: ReservationCreate,
        workers: Mapping[str, WorkerInfo],
        busy: Callable[[str], int],
    ) -> Reservation:
        """Hold ``node_count`` eligible workers, the least urgently used first.

        ``busy(address)`` is the priority of the job on a worker (0 if free).
        """
        held = self.held_workers()
        eligible = [
            addr
            for addr, w in workers.items()
            if addr not in held
            and w.gpus >= req.gpu_count
            and (
                req.gpu_type is None
                or req.gpu_type.lower() in str(w.metrics.get("gpu_name", "")).lower()
            )
        ]
        if len(eligible) < req.node_count:
            raise Conflict(
                f"cannot reserve {req.node_count} worker(s)"
                + (f" with {req.gpu_count} GPU(s)" if req.gpu_count else "")
                + f": {len(eligible)} eligible and not reserved",
                details={"node_count": req.node_count, "eligible": len(eligible)},
            )
        chosen = sorted(eligible, key=lambda a: (busy(a), a))[: req.node_count]
        now = utcnow()
        res = Reservation(
            id=new_id("res"),
            user_id=principal.user_id,
            gpu_count=req.gpu_count,
            gpu_type=req.gpu_type,
            node_count=req.node_count,
            status="active",
            claimed_by=None,
            workers=chosen,
            created_at=now,
            expires_at=now + timedelta(seconds=req.expires_in_s),
        )
        with self.store.session() as s:
            s.add(res)
        self.holding[res.id] = res
        return res

    def get(self, principal: Principal, reservation_id: str) -> Reservation:
        """One reservation the caller may see."""
        with self.store.session() as s:
            res = s.get(Reservation, reservation_id)
        if res is None or not principal.may_see(res.user_id):
            raise NotFound(f"no reservation {reservation_id}")
        return res

    def page(self, principal: Principal, offset: int, limit: int) -> tuple[list[Reservation], int]:
        """The caller's reservations, newest first."""
        query = sa.select(Reservation)
        owner = principal.owner_filter()
        if owner is not None:
            query = query.where(Reservation.user_id == owner)
        return self.store.page(query, (Reservation.created_at.desc(),), offset, limit)

    def set_status(self, reservation_id: str, status: str, claimed_by: str | None = None) -> None:
        """Move a reservation on (claimed, released, expired, cancelled)."""
        values: dict[str, Any] = {"status": status}
        if claimed_by is not None:
            values["claimed_by"] = claimed_by
        with self.store.session() as s:
            s.execute(
                sa.update(Reservation).where(Reservation.id == reservation_id).values(**values)
            )
        res = self.holding.get(reservation_id)
        if res is not None:
            res.status = status
            if claimed_by is not None:
                res.claimed_by = claimed_by
            if status not in HOLDING:
                del self.holding[reservation_id]

    def expire(self) -> list[str]:
        """Expire unclaimed reservations past their time; returns their ids."""
        now = utcnow()
        gone = [
            r.id
            for r in self.holding.values()
            if r.status == "active" and as_utc(r.expires_at) <= now
        ]
        for rid in gone:
            self.set_status(rid, "expired")
        return gone

    def held_workers(self, except_job: str | None = None) -> set[str]:
        """Workers held by reservations (but not those claimed by ``except_job``)."""
        return {
            w
            for r in self.holding.values()
            if except_job is None or r.claimed_by != except_job
            for w in r.workers
        }


def reservation_view(res: Reservation) -> dict[str, Any]:
    """A reservation as the API shows it."""
    return {
        "id": res.id,
        "user_id": res.user_id,
        "status": res.status,
        "node_count": res.node_count,
        "gpu_count": res.gpu_count,
        "gpu_type": res.gpu_type,
        "workers": list(res.workers or []),
        "claimed_by": res.claimed_by,
        "created_at": isoformat(res.created_at),
        "expires_at": isoformat(res.expires_at),
    }
