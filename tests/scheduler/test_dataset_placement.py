"""Shard placement of datasets: when a worker joins or leaves, only its share moves."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from stratalab.scheduler.artifacts import ArtifactStore
from stratalab.scheduler.cluster import WorkerInfo, worker_id
from stratalab.scheduler.config import CoordinatorConfig
from stratalab.scheduler.dataset_schemas import DatasetCreate
from stratalab.scheduler.datasets import DatasetService, assign_shards
from stratalab.scheduler.db import Dataset
from stratalab.scheduler.keys import Principal
from stratalab.scheduler.placement import HashRing
from stratalab.scheduler.store import Store

ADDRESSES = [f"tcp://10.0.0.{i}:40000" for i in range(1, 6)]
ALICE = Principal(user_id="alice", scope="user")


def infos(addresses: list[str]) -> dict[str, WorkerInfo]:
    """Worker records as the cluster reports them (only the address matters here)."""
    return {
        a: WorkerInfo(
            id=worker_id(None, a), address=a, name=a, host="10.0.0.1", nthreads=1, memory_limit=0
        )
        for a in addresses
    }


def moves(before: dict[Any, str], after: dict[Any, str]) -> dict[Any, tuple[str, str]]:
    return {k: (before[k], after[k]) for k in before if before[k] != after[k]}


# ------------------------------------------------------------------ pure maths
def test_a_joining_worker_takes_shards_only_for_itself() -> None:
    # Prepare
    before, _ = assign_shards(HashRing(ADDRESSES[:4]), "ds_abc", range(2000))

    # Execute
    after, ms = assign_shards(HashRing(ADDRESSES), "ds_abc", range(2000))

    # Assert: every shard that moved went to the new worker, and it got about a fifth
    moved = moves(before, after)
    assert {new for _, new in moved.values()} == {ADDRESSES[4]}
    assert Counter(after.values())[ADDRESSES[4]] == len(moved)
    assert 200 < len(moved) < 600
    assert ms > 0


def test_a_leaving_worker_gives_up_only_its_own_shards() -> None:
    # Prepare
    before, _ = assign_shards(HashRing(ADDRESSES), "ds_abc", range(2000))
    leaver = ADDRESSES[2]

    # Execute
    after, _ = assign_shards(HashRing([a for a in ADDRESSES if a != leaver]), "ds_abc", range(2000))

    # Assert: exactly the leaver's shards moved, each to a surviving worker
    moved = moves(before, after)
    assert set(moved) == {k for k, v in before.items() if v == leaver}
    assert leaver not in after.values()


def test_no_workers_places_nothing() -> None:
    assert assign_shards(HashRing(), "ds_abc", range(10))[0] == {}


# ------------------------------------------------------------ the service
@pytest.fixture
def service(db_url: str, tmp_path):
    store = Store(db_url)
    store.migrate()

    async def db(fn, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    current: dict[str, WorkerInfo] = {}
    svc = DatasetService(
        config=CoordinatorConfig(data_dir=tmp_path),
        store=store,
        artifacts=ArtifactStore(tmp_path / "artifacts"),
        db=db,
        workers=lambda: current,
    )
    yield svc, current
    store.close()


def stored_placements(svc: DatasetService) -> dict[str, tuple[dict[int, str], float]]:
    with svc.store.session() as s:
        rows = s.scalars(sa.select(Dataset).where(Dataset.deleted_at.is_(None))).all()
        return {
            ds.id: ({int(k): v for k, v in ds.placement.items()}, ds.shard_assignment_ms)
            for ds in rows
        }


def stream(name: str, shards: int) -> DatasetCreate:
    return DatasetCreate(
        name=name, format="stream", options={"num_rows": 5000, "seed": 1}, num_shards=shards
    )


async def test_service_replaces_every_dataset_moving_only_the_changed_share(service) -> None:
    # Prepare: three workers, two datasets, one more deleted
    svc, current = service
    current.update(infos(ADDRESSES[:3]))
    await svc.workers_changed(dict(current))
    first = await svc.register(ALICE, stream("one", 300))
    second = await svc.register(ALICE, stream("two", 64))
    gone = await svc.register(ALICE, stream("gone", 8))
    await svc.delete(ALICE, gone["id"])
    start = stored_placements(svc)
    assert set(start) == {first["id"], second["id"]}
    assert {a for p, _ in start.values() for a in p.values()} == set(ADDRESSES[:3])

    # Execute: a fourth worker joins
    current.update(infos(ADDRESSES[:4]))
    await svc.workers_changed(dict(current))
    joined = stored_placements(svc)

    # Assert: shards moved only onto the new worker; the full assignment was timed
    for ds_id, (placement, ms) in joined.items():
        moved = moves(start[ds_id][0], placement)
        assert moved and {new for _, new in moved.values()} == {ADDRESSES[3]}
        assert ms > 0
    assert svc.assignment_ms > 0

    # Execute: the second worker leaves
    current.pop(ADDRESSES[1])
    await svc.workers_changed(dict(current))
    left = stored_placements(svc)

    # Assert: exactly the leaver's shards moved
    for ds_id, (placement, _) in left.items():
        moved = moves(joined[ds_id][0], placement)
        assert set(moved) == {k for k, v in joined[ds_id][0].items() if v == ADDRESSES[1]}
        assert ADDRESSES[1] not in placement.values()
        row = await svc.get(ALICE, ds_id)
        assert svc.placement(row) == placement  # the live map agrees with the stored one


async def test_placement_is_the_same_in_a_new_service(service, tmp_path) -> None:
    # Prepare
    svc, current = service
    current.update(infos(ADDRESSES[:3]))
    await svc.workers_changed(dict(current))
    ds = await svc.register(ALICE, stream("one", 50))
    row = await svc.get(ALICE, ds["id"])

    # Execute: a restarted coordinator builds its ring from the same workers
    again = DatasetService(
        config=svc.config, store=svc.store, artifacts=svc.artifacts, db=svc._db, workers=dict
    )
    await again.workers_changed(infos(list(reversed(ADDRESSES[:3]))))

    # Assert
    assert again.placement(row) == svc.placement(row)
    assert svc.descriptor(row) == {
        "id": ds["id"],
        "format": "stream",
        "source": "stream://one",
        "options": {"num_rows": 5000, "seed": 1},
        "info": row.info,
        "num_shards": 50,
        "validation_rows": 500,
    }
