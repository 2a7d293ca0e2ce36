"""Tests of consistent-hash shard placement (``stratalab.scheduler.placement``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from stratalab.scheduler.placement import HashRing, hash_keys, stable_hash

NODES = [f"tcp://10.0.0.{i}:8786" for i in range(10)]
KEYS = [f"ds_abc/shard-{i:05d}" for i in range(10_000)]


def test_hash_is_blake2b_not_python_hash() -> None:
    # Prepare
    expected = int.from_bytes(hashlib.blake2b(b"ds_abc/shard-00001", digest_size=8).digest(), "big")

    # Execute / Assert: the scalar and vectorised forms agree with BLAKE2b itself
    assert stable_hash("ds_abc/shard-00001") == expected
    assert int(hash_keys(["ds_abc/shard-00001"])[0]) == expected


def test_keys_of_every_type_hash_like_their_text() -> None:
    # Prepare
    keys: list[str | bytes | int] = ["é-ü", b"raw", 42, ""]

    # Execute
    vectorised = hash_keys(keys)

    # Assert
    assert [int(h) for h in vectorised] == [stable_hash(k) for k in keys]
    assert stable_hash(42) == stable_hash("42") and stable_hash(b"raw") == stable_hash("raw")
    with pytest.raises(TypeError):
        stable_hash(1.5)  # type: ignore[arg-type]


def test_load_is_roughly_balanced() -> None:
    # Prepare
    ring = HashRing(NODES, vnodes=64)

    # Execute
    load = Counter(ring.assign(KEYS).values())

    # Assert: every node used; the busiest within 40% of the mean, the idlest above 60%
    mean = len(KEYS) / len(NODES)
    assert set(load) == set(NODES)
    assert max(load.values()) / mean < 1.4
    assert min(load.values()) / mean > 0.6


def test_only_the_leaving_nodes_keys_move() -> None:
    # Prepare
    ring = HashRing(NODES)
    before = ring.assign(KEYS)
    leaving = NODES[3]

    # Execute
    ring.remove(leaving)
    after = ring.assign(KEYS)

    # Assert: exactly the keys that lived on the leaving node moved, and nowhere else
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == leaving}
    assert moved and leaving not in set(after.values())


def test_only_keys_taken_by_the_joining_node_move() -> None:
    # Prepare
    ring = HashRing(NODES)
    before = ring.assign(KEYS)
    joining = "tcp://10.0.0.99:8786"

    # Execute
    ring.add(joining)
    after = ring.assign(KEYS)

    # Assert: every moved key moved to the new node, and it got a fair share
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if after[k] == joining}
    assert 0.5 < len(moved) / (len(KEYS) / 11) < 1.5


def test_leave_then_rejoin_restores_the_placement() -> None:
    # Prepare
    ring = HashRing(NODES)
    before = ring.assign(KEYS)

    # Execute
    ring.remove(NODES[0])
    ring.add(NODES[0])

    # Assert
    assert ring.assign(KEYS) == before


def test_placement_ignores_insertion_order_and_matches_lookup() -> None:
    # Prepare
    forward = HashRing(NODES)
    backward = HashRing(list(reversed(NODES)))

    # Execute
    placed = forward.assign(KEYS[:500])

    # Assert
    assert placed == backward.assign(KEYS[:500])
    assert all(forward.lookup(k) == node for k, node in placed.items())
    assert list(forward.assign_hashes(hash_keys(KEYS[:500]))) == list(placed.values())


def test_placement_is_the_same_in_another_process() -> None:
    # Prepare: a different PYTHONHASHSEED changes hash() of str, and must change nothing here
    script = (
        "from stratalab.scheduler.placement import HashRing;"
        f"r = HashRing({NODES!r});"
        "print([r.lookup(f'ds_abc/shard-{i:05d}') for i in range(50)])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}

    # Execute
    output = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout

    # Assert
    ring = HashRing(NODES)
    assert output.strip() == str([ring.lookup(k) for k in KEYS[:50]])


def test_more_vnodes_give_a_bigger_share() -> None:
    # Prepare
    ring = HashRing(NODES[:4], vnodes=64)
    ring.add("tcp://big:8786", vnodes=256)

    # Execute
    load = Counter(ring.assign(KEYS).values())

    # Assert: the big node holds ~half (256 of 512 points), far more than any other
    assert load["tcp://big:8786"] > 2 * max(v for n, v in load.items() if n != "tcp://big:8786")


def test_ring_bookkeeping_errors() -> None:
    # Prepare
    ring = HashRing(["a"])

    # Execute / Assert
    with pytest.raises(ValueError, match="already"):
        ring.add("a")
    with pytest.raises(KeyError):
        ring.remove("b")
    ring.remove("a")
    assert len(ring) == 0 and "a" not in ring and ring.assign([]) == {}
    with pytest.raises(LookupError):
        ring.lookup("x")
    with pytest.raises(ValueError):
        HashRing(vnodes=0)


def test_single_node_owns_everything_and_wraparound_works() -> None:
    # Prepare: a key hashing above the highest point wraps to the first point
    ring = HashRing(["only"], vnodes=1)
    top = np.array([np.iinfo(np.uint64).max], dtype=np.uint64)

    # Execute / Assert
    assert set(ring.assign(KEYS[:100]).values()) == {"only"}
    assert list(ring.assign_hashes(top)) == ["only"]
    assert ring.nodes == ["only"]
