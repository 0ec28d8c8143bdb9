"""The host tier's records agree with each other and with what happened, on both decode-loop
engines: KV blocks demoted from HBM to host DRAM (device→host copies on the demoting GPU's copy
engine) and read back by later decode steps (host→device copies on the reader's engine, one
``fetch`` round per home, layer slot and host).

The oracles are independent of the engine's code: a copy's time is read off the measured table
(``calibration/h200/pcie_sweep.csv``) here, interpolated log-log between its rows and scaled to
the path's PCIe or network rate as ``simulator/gpu/copyengines.py``'s docstring says; the copy
engines' busy time is replayed as a FIFO queue per direction from the rounds' records (reads)
and from what the KV directory asked the engine to charge (demotions, seen by a spy on its
``on_demote`` hook); the counts are worked out by hand in the known-answer cases.

The case (:func:`spill_case`): two GPUs with KV room for 50 DeepSeek-V3.2 blocks each (the low
watermark frees 50 // 32 = 1 block more than needed), dense selection (every decode step reads
its whole context, so the reads are known). A (45 blocks, 2 tokens out, 46 blocks when done) at
0 s; B (45 others) at 1 s, whose placement pushes 91 − 50 + 1 = 42 of A's blocks (the least
recently used: A's first 42) to the host; C at 2 s, A's 45 blocks plus one of its own (6 tokens
out): its block demotes 2 of B's, and its first decode step reads A's 42 blocks from the host in
each of the 2 layer slots, keeping them as copies — whose room demotes 42 more of B's. Its next 4
steps find them among its copies: 4 of its 5 steps' 84 references to another holder are copy
hits (0.8).
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.engine.exact import _Run
from simulator.engine.fast import FastRun
from simulator.kvcache.tiers import HBM
from simulator.policies import get
from simulator.testing.invariants import repo_on, small_scenario
from simulator.testing.profiles import examples
from tests.test_engine_exact import spill_case as exact_spill_case
from workloads.schema import make_trace

#: Bytes of one token's KV in one layer [B]: DeepSeek-V3.2 (MLA: 576 bf16 latent elements) and
#: Llama 3.1 8B (8 KV heads × 128 × K and V × bf16); their layers.
KV = {"deepseek-v3.2": (1152, 61), "llama-3.1-8b": (8 * 128 * 2 * 2, 32)}
#: A DeepSeek-V3.2 block: 64 tokens of every layer [B].
BLOCK = 64 * 1152 * 61
#: PCIe Gen5 x16, the rate the table was measured over, and InfiniBand NDR [B/s].
PCIE5, IB_NDR = 64e9, 50e9
ENGINES = {"exact": _Run, "fast": FastRun}


def _table() -> dict[str, list[tuple[float, float]]]:
    path = Path(__file__).resolve().parents[1] / "calibration" / "h200" / "pcie_sweep.csv"
    rows: dict[str, list[tuple[float, float]]] = {"h2d": [], "d2h": []}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows[row["direction"]].append((float(row["bytes"]), float(row["time_s"])))
    return {d: sorted(r) for d, r in rows.items()}


TABLE = _table()


def copy_time(direction: str, nbytes: float, rate: float = PCIE5) -> float:
    """One pinned copy [s] by the table: log-log between the two rows around ``nbytes`` (the
    times made non-decreasing in size first: the small copies' medians wander on the launch
    floor), the smallest row's time below it, past the last row at the last two rows' rate;
    the part beyond the 1 KB copy's time scaled by Gen5 / ``rate``."""
    sizes = [x for x, _ in TABLE[direction]]
    times = list(itertools.accumulate((t for _, t in TABLE[direction]), max))
    if nbytes <= sizes[0]:
        t = times[0]
    elif nbytes >= sizes[-1]:
        t = times[-1] + (nbytes - sizes[-1]) * (times[-1] - times[-2]) / (sizes[-1] - sizes[-2])
    else:
        i = next(i for i, x in enumerate(sizes) if x > nbytes)
        w = math.log(nbytes / sizes[i - 1]) / math.log(sizes[i] / sizes[i - 1])
        t = math.exp(math.log(times[i - 1]) + w * math.log(times[i] / times[i - 1]))
    return times[0] + (t - times[0]) * PCIE5 / rate


def fifo(copies: list[tuple[float, float]], until: float) -> tuple[float, list[float]]:
    """A FIFO engine given ``(issued at, duration)`` in issue order: its busy time in
    [0, ``until``] [s] and each copy's end [s]."""
    free, busy, ends = 0.0, 0.0, []
    for at, d in copies:
        start = max(at, free)
        free = start + d
        ends.append(free)
        busy += max(0.0, min(free, until) - start)
    return busy, ends


def spill_case(readers: int = 1, layer_groups: int = 2, **engine):
    """``(scenario, trace)`` of the module docstring (``readers`` requests like C): the exact
    engine's spill case (tests/test_engine_exact.py), under dense selection."""
    sc, trace = exact_spill_case(readers, layer_groups=layer_groups, **engine)
    return sc.with_changes(model=type(sc.model)(name="deepseek-v3.2", selection="dense")), trace


def started(sc, policy: str, trace, engine: str):
    """Run ``trace`` on ``sc``; returns ``(run, result, demotions)``: the engine's run object
    (its directory, copy engines and counters), its result, and each demotion the directory
    asked the engine to charge, ``(at [s], gpu, blocks, host's machine)`` in order."""
    r = ENGINES[engine](sc, get(policy), 0, trace, None)
    charged: list[tuple[float, int, int, int]] = []
    hook = r.dir.on_demote
    if hook is not None:
        def spy(g: int, blocks: int, machine: int) -> None:
            charged.append((r.env.now, g, blocks, machine))
            hook(g, blocks, machine)

        r.dir.on_demote = spy
    # copies a home asked to keep but found no room for (HBM full of pinned blocks): neither
    # evicted nor dropped, and read again at its next step
    r.refused = 0
    keep = r.dir.add_copies_kept

    def kept(gpu: int, idx, slot: int, now: float):
        out = keep(gpu, idx, slot, now)
        wanted = np.unique(idx)
        holds = (r.dir.base[wanted] == gpu) & (r.dir.tier[wanted] == HBM)
        r.refused += int(np.count_nonzero(~holds)) - out[1]
        return out

    r.dir.add_copies_kept = kept
    return r, r.execute(), charged


def host_rounds(res):
    rd = res.rounds
    return rd[rd["owner"].astype(str).str.endswith("/host")].sort_values("started_at",
                                                                         kind="stable")


@pytest.mark.parametrize("engine", ["exact", "fast"])
@pytest.mark.parametrize("policy", ["route", "local"])
def test_a_spill_and_its_read_back_by_hand(engine, policy):
    # catches: a demotion charged for one layer's bytes, or the reads for every layer's; a
    # copy direction swapped; a direction left out of copy_busy_time; reads not kept as
    # copies (read again every step); the watermark or LRU order changed
    sc, trace = spill_case()
    r, res, charged = started(sc, policy, trace, engine)
    assert res.requests["reused_blocks"].tolist() == [0, 0, 45]
    assert [b for _, _, b, _ in charged] == [42, 2, 42]
    assert {(g, m) for _, g, _, m in charged} == {(0, 0)}
    assert res.extras["demoted"] == 86 and res.extras["dropped"] == 0
    assert res.extras["copies_evicted"] == 0
    # the host holds what was demoted: nothing comes back from it (a read keeps a copy)
    assert r.dir.host_used.tolist() == [86]
    host = host_rounds(res)
    assert (host["owner"].astype(str) == "n0/host").all()
    assert host["layer"].tolist() == [0, 1] and host["layers"].tolist() == [30, 31]
    assert host["blocks"].tolist() == [42, 42] == host["distinct_blocks"].tolist()
    assert (host["option"].astype(str) == "fetch").all() and (host["batch"] == 1).all()
    assert (host["bytes"] == 42 * 64 * 1152).all()  # one layer's KV of 42 blocks
    assert len(res.rounds) == 2  # nothing else left its home
    # bytes read back, every layer: the 42 blocks, once
    assert res.summary["bytes_moved"] == 42 * BLOCK
    read = copy_time("h2d", 42 * 64 * 1152)
    assert host["cf_transfer_time"].to_numpy() == pytest.approx([read, read], rel=1e-9)
    assert host["transfer_time"].to_numpy() == pytest.approx([read, read], rel=1e-9)
    assert (host["probe_time"] == 0).all() and (host["return_time"] == 0).all()
    # the engines' busy time: three device→host copies and two host→device copies, all ended
    # before the run did
    d2h = 2 * copy_time("d2h", 42 * BLOCK) + copy_time("d2h", 2 * BLOCK)
    assert res.gpus["copy_busy_time"].tolist() == pytest.approx([d2h + 2 * read, 0.0],
                                                               rel=1e-9, abs=0)
    assert r.copies[0].d2h.busy_time == pytest.approx(d2h, rel=1e-9)
    assert res.summary["copy_hit_rate"] == pytest.approx(0.8, rel=1e-12)
    assert r.steps.copy_misses == 84 == res.rounds["blocks"].sum()
    assert res.gpus["copy_blocks"].tolist() == [42, 0]
    assert res.gpus["owned_blocks"].tolist() == [8, 0]  # A's last 4, B's last 2, C's 2


@st.composite
def spills(draw):
    """A trace of the module docstring's shape, its sizes and times drawn: A, then B, whose
    prompt pushes A's blocks out where A and B do not fit together (always with room for 50),
    then 1–4 readers of a prefix of A's blocks."""
    na, nb, k = draw(st.integers(28, 45)), draw(st.integers(28, 45)), draw(st.integers(1, 4))
    a, b = list(range(na)), list(range(1000, 1000 + nb))
    ids = [a, b] + [a[: draw(st.integers(1, na))] + [5000 + i] for i in range(k)]
    t1 = 1.0 + draw(st.floats(0.0, 1.0))  # A is done: B goes where A was (the least loaded)
    t2 = t1 + draw(st.floats(0.0, 1.5))
    arrivals = [0.0, t1] + sorted(t2 + draw(st.floats(0.0, 0.3)) for _ in range(k))
    return make_trace(arrival_at=arrivals,
                      input_tokens=[(len(x) - 1) * 64 + draw(st.integers(1, 64)) for x in ids],
                      output_tokens=[draw(st.integers(1, 30)) for _ in ids], block_ids=ids,
                      block_tokens=64)


@settings(max_examples=examples(25))
@given(trace=spills(), gpus=st.sampled_from([2, 4]), model=st.sampled_from(sorted(KV)),
       groups=st.sampled_from([0, 1, 2, 3]), room=st.sampled_from([50.5, 70.5]),
       dense=st.booleans(), chunked=st.booleans(), max_batch=st.integers(1, 4),
       policy=st.sampled_from(["route", "fetch", "local", "adaptive"]),
       engine=st.sampled_from(["exact", "fast"]))
def test_copy_engines_busy_time_is_the_reads_and_demotions_they_carried(
        trace, gpus, model, groups, room, dense, chunked, max_batch, policy, engine):
    # catches: a read or a demotion not charged, charged twice, on the wrong GPU or at
    # another size; a read's bytes at every layer; busy time counted past the end of the run;
    # a block read from the host again by a home that keeps its copy; a reference away from
    # home that is neither a copy hit nor a round
    kv, layers = KV[model]
    sc = small_scenario(f"single_node:gpus={gpus}", weights_per_gpu=80e9 * 0.9 - room * 64 * kv
                        * layers, layer_groups=groups, model=model, max_batch=max_batch,
                        serving={"chunked_prefill": chunked, "max_num_batched_tokens": 700})
    if dense:
        sc = sc.with_changes(model=type(sc.model)(name=model, selection="dense"))
    r, res, charged = started(sc, policy, trace, engine)
    now = res.summary["sim_time"]
    host = host_rounds(res)
    assert (host["option"].astype(str) == "fetch").all()
    assert (host["probe_time"] == 0).all() and (host["return_time"] == 0).all()
    np.testing.assert_array_equal(host["bytes"], host["blocks"] * 64 * kv)
    names = [str(x) for x in res.gpus["gpu"]]
    assert sum(b for _, _, b, _ in charged) == res.extras["demoted"] == r.dir.demoted
    assert r.dir.host_used.sum() <= res.extras["demoted"]  # nothing demoted comes back
    for g, name in enumerate(names):
        mine = host[host["src"].astype(str) == name]
        reads = [copy_time("h2d", b) for b in mine["bytes"]]
        np.testing.assert_allclose(mine["cf_transfer_time"], reads, rtol=1e-9)
        h2d, ends = fifo(list(zip(mine["started_at"], reads, strict=True)), now)
        np.testing.assert_allclose(mine["started_at"] + mine["transfer_time"], ends,
                                   rtol=0, atol=1e-9)
        d2h, _ = fifo([(t, copy_time("d2h", b * 64 * kv * layers)) for t, x, b, _ in charged
                       if x == g], now)
        assert r.copies[g].h2d.busy_time == pytest.approx(h2d, rel=1e-9, abs=1e-15)
        assert r.copies[g].d2h.busy_time == pytest.approx(d2h, rel=1e-9, abs=1e-15)
        assert res.gpus["copy_busy_time"][g] == pytest.approx(h2d + d2h, rel=1e-9, abs=1e-15)
        assert -1e-12 <= res.gpus["copy_busy_time"][g] <= 2 * now  # (float rounding)
    if res.extras["copies_evicted"] == 0 and res.extras["dropped"] == 0 and r.refused == 0:
        # every copy kept: a home reads a block from the host once per layer slot
        per_slot = host.groupby([host["src"].astype(str), "layer"])["distinct_blocks"].sum()
        assert (per_slot <= res.extras["demoted"]).all()
    # every selected reference away from home is a copy hit or a block of some round
    assert r.steps.copy_misses == res.rounds["blocks"].sum()


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_run_cut_while_reads_are_queued_counts_only_the_copies_run_by_then(engine):
    # every layer simulated (61 slots) under fetch: the fast engine composes C's whole first
    # step at its start, each slot's host read issued ahead of the clock on the copy engine.
    # Cut inside that step, the engines were busy with what ran before the cut only: the
    # demotions (FIFO, from the spy) and the reads' copies in the uncut run's rounds (the
    # same step, composed before the cut), each clipped at the cut. Before the host-tier
    # records audit the fast engine counted the idle time before a read composed ahead as
    # queued work and took it off: −20.8 ms of copy_busy_time at 2.13265 s
    sc, trace = spill_case(layer_groups=0)
    _, whole, _ = started(sc, "fetch", trace, engine)
    host = host_rounds(whole)
    assert len(host) == 61
    reads = list(zip(host["started_at"], host["cf_transfer_time"], strict=True))
    first, last = host["started_at"].iloc[0], host["started_at"].iloc[-1]
    for cut in (first + 1e-5, (first + last) / 2, last + 1e-5):
        sc, trace = spill_case(layer_groups=0, duration=float(cut))
        r, res, charged = started(sc, "fetch", trace, engine)
        d2h, _ = fifo([(t, copy_time("d2h", b * BLOCK)) for t, _, b, _ in charged], cut)
        h2d, _ = fifo(reads, cut)
        assert r.copies[0].h2d.busy_time == pytest.approx(h2d, rel=1e-9)
        assert r.copies[0].d2h.busy_time == pytest.approx(d2h, rel=1e-9)
        assert 0.0 < res.gpus["copy_busy_time"][0] <= 2 * cut


def test_a_replicated_blocks_read_from_the_host_names_the_host_that_holds_it():
    # replicate:2 over 2 DGX machines: blocks whose hash is 7 are held by n0/gpu7 and n1/gpu0,
    # and demoted to the host of the first holder's machine, n0 (the directory's host_used).
    # A reader on n1 reads them from n0/host, across the network (InfiniBand NDR is the path's
    # slowest link), not from n1's host, which never held them. Before the host-tier records
    # audit the read named the nearest replica's host, n1/host, and was timed over n1's own PCIe
    from simulator.kvcache.directory import stable_hash

    keys = np.arange(20_000)
    seven = keys[stable_hash(keys) % np.uint64(16) == 7][:90].tolist()
    sc = small_scenario("dgx_h100:nodes=2", scheme="replicate:2", home="repo_affinity",
                        weights_per_gpu=80e9 * 0.9 - 50.5 * BLOCK)
    sc = sc.with_changes(model=type(sc.model)(name="deepseek-v3.2", selection="dense"))
    ids = [seven[:45], seven[45:], seven[:45] + [10**6]]
    trace = make_trace(arrival_at=[0.0, 1.0, 2.0], input_tokens=[len(x) * 64 for x in ids],
                       output_tokens=[2, 2, 6], block_ids=ids, block_tokens=64,
                       repo_id=[-1, -1, repo_on(9, 16)])
    for engine in ENGINES:
        r, res, _ = started(sc, "fetch", trace, engine)
        assert res.requests["home"].astype(str).tolist()[2] == "n1/gpu1"
        assert r.dir.host_used.tolist() == [res.extras["demoted"], 0]
        host = host_rounds(res)
        assert len(host) == 2 and (host["owner"].astype(str) == "n0/host").all()
        want = [copy_time("h2d", b, IB_NDR) for b in host["bytes"]]
        np.testing.assert_allclose(host["cf_transfer_time"], want, rtol=1e-9)


def test_a_replica_demoting_a_block_to_another_machines_host_copies_it_there():
    # replicate:2 over 2 DGX machines: A's blocks (hash 7) are held by n0/gpu7 and n1/gpu0,
    # then X's (hash 8) by n1/gpu0 and n1/gpu1. X's placement overflows n1/gpu0, which demotes
    # the least recently used of its blocks, A's, 40 + 45 − 50 + 1 = 36 of them, to the host of
    # their first holder's machine, n0 (host_used): a device→host copy from n1/gpu0 across the
    # network (InfiniBand NDR the slowest link), not over its own PCIe to n1's host as before
    # the host-tier records audit (2.94 ms instead of 3.75)
    from simulator.kvcache.directory import stable_hash

    keys = np.arange(20_000)
    hashed = stable_hash(keys) % np.uint64(16)
    ids = [keys[hashed == 7][:45].tolist(), keys[hashed == 8][:40].tolist()]
    sc = small_scenario("dgx_h100:nodes=2", scheme="replicate:2",
                        weights_per_gpu=80e9 * 0.9 - 50.5 * BLOCK)
    trace = make_trace(arrival_at=[0.0, 1.0], input_tokens=[45 * 64, 40 * 64],
                       output_tokens=[2, 2], block_ids=ids, block_tokens=64)
    for engine in ENGINES:
        r, res, charged = started(sc, "fetch", trace, engine)
        assert [(g, b, m) for _, g, b, m in charged] == [(8, 36, 0)]
        assert r.dir.host_used.tolist() == [36, 0]
        busy = res.gpus.set_index(res.gpus["gpu"].astype(str))["copy_busy_time"]
        assert busy["n1/gpu0"] == pytest.approx(copy_time("d2h", 36 * BLOCK, IB_NDR), rel=1e-9)
        assert busy.drop("n1/gpu0").eq(0.0).all()


def test_a_home_reading_two_hosts_in_one_slot_queues_the_copies_on_its_engine():
    # two DGX machines, prompts kept by their writer, homes by repository. A (30 blocks) on
    # n0/gpu0; A' (A then 20 blocks A2) on n1/gpu0, computing A2 after A there; B and B' (45
    # blocks each) then push the least recently used of them to each machine's host. C, on
    # n0/gpu1, reuses A + A2: in each layer slot its home reads A's spilled blocks from n0/host
    # (PCIe) and A2's from n1/host (across the network, NDR the slowest link) — two copies on
    # its host→device engine, the second queued behind the first (its transfer_time holds the
    # wait; its closed form does not)
    sc = small_scenario("dgx_h100:nodes=2", home="repo_affinity",
                        weights_per_gpu=80e9 * 0.9 - 50.5 * BLOCK)
    sc = sc.with_changes(model=type(sc.model)(name="deepseek-v3.2", selection="dense"))
    a, a2 = list(range(30)), list(range(1000, 1020))
    b, b2 = list(range(2000, 2045)), list(range(3000, 3045))
    ids = [a, a + a2, b, b2, a + a2 + [9999]]
    trace = make_trace(arrival_at=[0.0, 0.5, 1.0, 1.0, 2.0],
                       input_tokens=[len(x) * 64 for x in ids], output_tokens=[2, 2, 2, 2, 6],
                       block_ids=ids, block_tokens=64, session_id=[0, 1, 2, 3, 4],
                       repo_id=[repo_on(g, 16) for g in (0, 8, 0, 8, 1)])
    for engine in ENGINES:
        r, res, charged = started(sc, "route", trace, engine)
        assert res.requests["reused_blocks"].tolist() == [0, 30, 0, 0, 50]
        assert sorted((g, m) for _, g, _, m in charged) == [(0, 0), (8, 1)]
        host = host_rounds(res)
        assert len(host) == 4 and (host["src"].astype(str) == "n0/gpu1").all()  # 2 slots
        for _, slot in host.groupby(["started_at", "layer"]):
            assert slot["owner"].astype(str).tolist() == ["n0/host", "n1/host"]
            near, far = slot["bytes"].tolist()
            assert slot["cf_transfer_time"].tolist() == pytest.approx(
                [copy_time("h2d", near), copy_time("h2d", far, IB_NDR)], rel=1e-9)
            assert slot["transfer_time"].tolist() == pytest.approx(
                [copy_time("h2d", near), copy_time("h2d", near) + copy_time("h2d", far, IB_NDR)],
                rel=1e-9)
        read = host.groupby(host["owner"].astype(str))["distinct_blocks"].max()
        assert (read.loc[["n0/host", "n1/host"]].to_numpy() <= r.dir.host_used).all()
