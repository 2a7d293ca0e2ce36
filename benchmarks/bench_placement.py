"""Benchmark: placing dataset shards on workers with the consistent-hash ring.

Goal (seed 000, ``shard_assignment_time``): assign 100,000 shards over 1,000
workers in at most 100 ms. The baseline is a plain ``sorted()`` of the same
100,000 keys in the same process: the cheapest thing that touches every key,
so the ratio says how far placement is from "free" on this machine whatever
its speed. The keys are shuffled first so the sort is a real one. Also
reports how many shards move when one worker leaves (ideal: only that
worker's, about 100,000 / 1,000).

Run: ``python benchmarks/bench_placement.py [--shards N] [--workers N] [--repeat N]``.
Prints a markdown table; timings are the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from stratalab.scheduler.placement import HashRing, hash_keys

GOAL_MS = 100.0


def best_and_median_ms(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best and median wall time of ``func`` over ``repeat`` runs, in milliseconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append((time.perf_counter() - started) * 1000.0)
    return min(times), statistics.median(times)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1_000)
    parser.add_argument("--vnodes", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    workers = [f"tcp://10.{i // 250}.{i % 250}.1:{40000 + i}" for i in range(args.workers)]
    keys = [f"ds_0123456789abcdef/shard-{i:06d}" for i in range(args.shards)]
    # Shuffled, so the sorted() baseline does a real sort instead of a linear
    # pass over already-ordered input.
    random.Random(0).shuffle(keys)

    build_best, build_median = best_and_median_ms(
        lambda: HashRing(workers, vnodes=args.vnodes), args.repeat
    )
    ring = HashRing(workers, vnodes=args.vnodes)
    assign_best, assign_median = best_and_median_ms(lambda: ring.assign(keys), args.repeat)
    hashes = hash_keys(keys)
    prehashed_best, prehashed_median = best_and_median_ms(
        lambda: ring.assign_hashes(hashes), args.repeat
    )
    sort_best, sort_median = best_and_median_ms(lambda: sorted(keys), args.repeat)

    before = ring.assign(keys)
    leaving = workers[len(workers) // 2]
    owned = sum(1 for node in before.values() if node == leaving)
    ring.remove(leaving)
    after = ring.assign(keys)
    moved = sum(1 for key in keys if before[key] != after[key])
    only_leaver = all(before[key] == leaving for key in keys if before[key] != after[key])

    verdict = "meets" if assign_best <= GOAL_MS else "MISSES"
    print(
        f"Placement of {args.shards:,} shards over {args.workers:,} workers "
        f"({args.vnodes} vnodes each), best / median of {args.repeat} runs\n"
    )
    print("| measurement | best | median | note |")
    print("| --- | ---: | ---: | --- |")
    print(
        f"| `HashRing.assign` (hash + place + dict) | {assign_best:.1f} ms | "
        f"{assign_median:.1f} ms | {verdict} the {GOAL_MS:.0f} ms goal |"
    )
    print(
        f"| `HashRing.assign_hashes` (pre-hashed keys) | {prehashed_best:.1f} ms | "
        f"{prehashed_median:.1f} ms | re-placement after a membership change |"
    )
    print(
        f"| baseline: `sorted()` of the same keys | {sort_best:.1f} ms | "
        f"{sort_median:.1f} ms | assign = {assign_best / sort_best:.1f}x sorted |"
    )
    print(
        f"| ring build ({args.workers:,} workers) | {build_best:.1f} ms | "
        f"{build_median:.1f} ms | once per membership change |"
    )
    print(
        f"| shards moved when 1 worker leaves | {moved:,} | | "
        f"it owned {owned:,}; ideal {args.shards / args.workers:,.0f}; "
        f"only its shards moved: {only_leaver} |"
    )


if __name__ == "__main__":
    main()
