"""Speed of a decode step's block lookup: the compiled pass against the array code it replaced.

:meth:`simulator.engine.locate.StepData.locate` looks every block a step selects up in the
directory (holder, tier, the home's copy bit for the slot) and groups the blocks not at home by
(slot, holder); since stop 41 in one compiled pass (:mod:`simulator.engine.locate_kernels`).
This times it, in the same process, against the array code it replaced
(:func:`simulator.testing.locate_reference.array_locate`) on the same inputs, and checks the two
agree on each case first.

The directory: 16 GPUs on 2 machines (2 × DGX H100), 100,000 blocks placed by random writers,
5 % of them on the host tier and 1 % dropped; the home keeps copies of 20 % of the blocks in a
random slot each. A step's selections are ``W = 34`` blocks per slot (DSA's 32 + a 2-block
window) drawn from a 2,000-block context, 90 % of them the home's own (of the rest, a
fifth has a copy at home: ~8 % of a step's blocks are away), in four shapes: one query
with every layer (61 slots: the Mooncake benchmark's steps), one query with 8 slots, and batches
of 8 and 64 queries with 4 slots (the default run's). Each case warms up, then runs for at least
``--seconds`` (default 1 s); the best of three runs is reported, as µs per call.

    .venv/bin/python benchmarks/bench_locate.py            # ~30 s
    .venv/bin/python benchmarks/bench_locate.py --json     # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from simulator.engine.locate import StepData
from simulator.kvcache import DROPPED, HOST, UNPLACED, BlockDirectory
from simulator.kvcache.directory import DirectoryConfig
from simulator.testing.locate_reference import array_locate

GPUS, PER_MACHINE, BLOCKS, WIDTH, CONTEXT = 16, 8, 100_000, 34, 2_000
#: the share of a query's context that is the home's own blocks
OWN = 0.9
#: (queries, slots) per step
SHAPES = ((1, 61), (1, 8), (8, 4), (64, 4))


def directory(slots: int, rng: np.random.Generator) -> BlockDirectory:
    """The benchmark's directory (see the module docstring) for ``slots`` layer slots."""
    machine = tuple(i // PER_MACHINE for i in range(GPUS))
    dist = tuple(tuple(0.0 for _ in range(GPUS)) for _ in range(GPUS))
    d = BlockDirectory(DirectoryConfig("first_writer", 1, (BLOCKS,) * GPUS, 0, machine, dist,
                                       slots))
    idx = d.intern(np.arange(BLOCKS))
    writers = rng.integers(0, GPUS, BLOCKS)
    for g in range(GPUS):
        d.place(idx[writers == g], writer=g, now=0.0)
    host = rng.random(BLOCKS) < 0.05
    d.tier[idx[host]] = HOST
    dropped = rng.random(BLOCKS) < 0.01
    d.tier[idx[dropped]], d.base[idx[dropped]] = DROPPED, UNPLACED
    copied = idx[(rng.random(BLOCKS) < 0.2) & (writers != 0)]
    for s in range(slots):
        d.add_copies(0, copied[rng.integers(0, slots, len(copied)) == s], s, now=1.0)
    return d


def step(d: BlockDirectory, queries: int, slots: int, rng: np.random.Generator):
    """One step's ``(dense, valid)`` selections for home GPU 0 (see the module docstring)."""
    own = np.flatnonzero(d.base[:BLOCKS] == 0)
    mine = int(OWN * CONTEXT)
    context = np.concatenate([rng.choice(own, mine), rng.integers(0, BLOCKS, CONTEXT - mine)])
    dense = rng.choice(context, (queries, slots, WIDTH))
    valid = np.ones(dense.shape, bool)
    return dense, valid


def best_time(fn, seconds: float) -> float:
    """Seconds per call of ``fn()``, best of three runs of at least ``seconds`` each."""
    fn()  # warm up (and compile)
    best = float("inf")
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            fn()
            calls += 1
        best = min(best, elapsed / calls)
    return best


def same(a, b) -> bool:
    """The two lookups' answers agree: local mask and groups."""
    return np.array_equal(a[0], b[0]) and [
        [(k, n, m.tolist()) for k, n, m in s] for s in a[1]] == [
        [(k, n, m.tolist()) for k, n, m in s] for s in b[1]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum time per run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error(f"--seconds {args.seconds}: give a positive number of seconds")
    rng = np.random.default_rng(0)
    results = {}
    for queries, slots in SHAPES:
        d = directory(slots, rng)
        steps = StepData(None, d, None, None, None, np.arange(slots),
                         np.asarray(d.cfg.machine_of, np.int64))
        dense, valid = step(d, queries, slots, rng)
        name = f"{queries} quer{'y' if queries == 1 else 'ies'} x {slots} slots"
        if not same(steps.locate(0, dense, valid), array_locate(steps, 0, dense, valid)):
            raise SystemExit(f"the compiled lookup differs from the array code for {name}")
        call = (steps, 0, dense, valid)
        results[name] = (best_time(lambda c=call: StepData.locate(*c), args.seconds),
                         best_time(lambda c=call: array_locate(*c), args.seconds))
    if args.json:
        print(json.dumps({name: {"compiled_s": t, "array_code_s": a, "ratio": a / t}
                          for name, (t, a) in results.items()}))
        return
    print(f"{'step':<24} {'compiled':>10} {'arrays':>10} {'ratio':>6}")
    for name, (t, a) in results.items():
        print(f"{name:<24} {t * 1e6:8.1f}   {a * 1e6:8.1f}   {a / t:5.2f}x  µs per call")


if __name__ == "__main__":
    main()
