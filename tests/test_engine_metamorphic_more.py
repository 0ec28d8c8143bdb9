"""More metamorphic properties of both engines: pairs of runs whose inputs differ in a known way.

Beside ``tests/test_engine_metamorphic.py`` (relabelling ids) and ``tests/test_engine_causality.py``
(a later arrival, a cut): requests spaced so that they never meet take the same records at any
batch limit, and shifted in time by Δ every ``_at`` moves by Δ and nothing else (to float
rounding; a shift of *contended* arrivals is no invariant, docs/invariants.md); a lone request is
never slower on a faster fabric, takes the same steps at any ``layer_groups`` where nothing is
copied (folding is exact when every layer does the same work, docs/records.md), is untouched by
a request on another GPU, and its first steps do not depend on how many tokens it still has to
generate; with KV room to spare the host tier and the KV allocation rule change nothing; the seed
given to ``run`` or ``kvfabric run --seed`` is the scenario's own seed set to it.

Not invariants, by design (stop 70 probes): adding idle GPUs (the topology's GPUs are one
model-parallel instance: every step's projections + FFN and prefill are a 1/G share,
:mod:`simulator.engine.stepcosts`); folding where copies are kept (a slot's selection persists
step to step with ρ^S, docs/accuracy.md); ``span`` against ``prefix`` without spans (``span``
also reuses a held block computed after this very prefix past the first break,
:func:`simulator.engine.reuse.plan`)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from clitools import SMALL, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import Scenario, run
from simulator.testing.invariants import (
    MODEL_FAMILIES,
    check_run,
    repo_on,
    small_cases,
    small_scenario,
)
from simulator.testing.profiles import examples
from workloads.schema import make_trace, validate, write_trace

ENGINES = ["exact", "fast"]
POLICIES = ["route", "fetch", "local", "adaptive"]
TABLES = ("requests", "iterations", "rounds")
#: Arrivals this far apart never meet in a small case (its requests end within seconds) [s].
GAP = 100.0


def rounding(t: float) -> float:
    """Float rounding allowed on a time near ``t`` [s]: 2^16 of its ulps, 1.2e-7 s near 1e4 s
    (a small case's steps, slots and chunks each add to a clock near ``t``, and a folded slot
    multiplies its rounded span by its layers, up to 61: 300 cases came within 4,318 ulps)."""
    return float(2**16 * np.spacing(t))



def spaced(trace: pd.DataFrame, start: float = 0.0) -> pd.DataFrame:
    """``trace`` with its requests arriving ``GAP`` apart from ``start`` [s], in row order."""
    return validate(trace.assign(arrival_at=start + GAP * np.arange(len(trace), dtype=float)))


def same_records(a, b) -> None:
    """The requests, steps and rounds of two runs are equal, bit for bit."""
    for table in TABLES:
        pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table), check_exact=True)


def alone(blocks: int = 40, output: int = 6, repo: int | None = None, at: float = 0.0):
    """One request of ``blocks`` 64-token blocks (its prompt a repository when ``repo`` is
    given) arriving at ``at`` [s]."""
    return make_trace(arrival_at=[at], input_tokens=[blocks * 64 - 5], output_tokens=[output],
                      block_ids=[list(range(blocks))], block_tokens=64,
                      **({} if repo is None else {"repo_id": [repo]}))


def step_times(res) -> np.ndarray:
    """Each step's duration, in the iterations' order [s]."""
    it = res.iterations
    return (it["finished_at"] - it["started_at"]).to_numpy()


# -- requests that never meet ------------------------------------------------------------------


@settings(max_examples=examples(10))
@given(case=small_cases(max_requests=5), policy=st.sampled_from(POLICIES),
       engine=st.sampled_from(ENGINES))
def test_requests_that_never_meet_take_the_same_records_at_any_batch_limit(case, policy,
                                                                           engine):
    # one request at a time: the batch limit never binds, so a limit of 1 changes no record
    # (a step that read max_batch for anything but the limit — a selection batch, a budget —
    # would show here)
    sc, trace = case
    trace = spaced(trace)
    a = run(sc, policy, trace=trace, engine=engine)
    one = sc.with_changes(engine=dataclasses.replace(sc.engine, max_batch=1))
    b = run(one, policy, trace=trace, engine=engine)
    check_run(b, trace)
    same_records(a, b)
    assert a.summary["tbt_p50"] == b.summary["tbt_p50"] or np.isnan(a.summary["tbt_p50"])


@settings(max_examples=examples(10))
@given(case=small_cases(max_requests=5), policy=st.sampled_from(POLICIES),
       engine=st.sampled_from(ENGINES), delta=st.sampled_from([0.75, 37.3, 1e4]))
def test_shifting_requests_that_never_meet_shifts_every_timestamp_and_nothing_else(
        case, policy, engine, delta):
    # every `_at` moves by Δ; durations (`_time`), TTFT, TBT, bytes, homes, counts and
    # options stay — to float rounding of the times only (sums of floats near Δ round
    # differently). An engine that measured a time from 0 instead of from its start, or drew
    # from a stream keyed by the clock, would move them by more
    sc, trace = case
    a = run(sc, policy, trace=spaced(trace), engine=engine)
    b = run(sc, policy, trace=spaced(trace, delta), engine=engine)
    tol = rounding(delta + GAP * len(trace))
    for table in TABLES:
        x, y = getattr(a, table), getattr(b, table)
        assert len(x) == len(y) and list(x.columns) == list(y.columns), table
        for col in x.columns:
            u, v = x[col].to_numpy(), y[col].to_numpy()
            if col.endswith("_at"):
                np.testing.assert_allclose(v - delta, u, rtol=0, atol=tol, err_msg=col)
            elif col.endswith("_time"):
                np.testing.assert_allclose(v, u, rtol=0, atol=tol, err_msg=col)
            else:
                np.testing.assert_array_equal(v, u, err_msg=f"{table}.{col}")
    for key in ("ttft_p50", "ttft_p99", "tbt_p50", "tbt_p99"):
        assert b.summary[key] == pytest.approx(a.summary[key], rel=0, abs=tol, nan_ok=True)
    for key in ("bytes_moved", "completed", "preemptions"):
        assert b.summary.get(key) == a.summary.get(key)


# -- a lone request ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", POLICIES)
def test_a_lone_requests_steps_are_never_slower_on_a_faster_fabric(engine, policy):
    # every link's bandwidth × 0.5, 1, 2: each step takes no longer as bandwidth grows, and
    # strictly less where it exchanged anything over the fabric; local exchanges nothing (it
    # recomputes at home) and takes the same steps on any fabric
    sc = small_scenario("dgx_h100:nodes=2", scheme="repo_affinity", layer_groups=0)
    trace = alone(repo=repo_on(12, 16))
    runs = []
    for scale in (0.5, 1.0, 2.0):
        graph = sc.topology.build()
        for _, _, d in graph.edges(data=True):
            d["bandwidth"] *= scale
        runs.append(run(sc, policy, trace=trace, engine=engine, topology=graph))
    slow, mid, fast = (step_times(r) for r in runs)
    assert len(slow) == len(mid) == len(fast) == 6
    exchanged = np.zeros(len(mid), bool)
    rd = runs[1].rounds
    if len(rd):
        steps = runs[1].iterations["iteration"].to_numpy()
        exchanged = np.isin(steps, rd.loc[rd["bytes"] > 0, "iteration"].to_numpy())
    assert exchanged.any() == (policy != "local")
    assert (mid <= slow).all() and (fast <= mid).all()
    assert (mid < slow)[exchanged].all() and (fast < mid)[exchanged].all()
    np.testing.assert_array_equal(mid[~exchanged], slow[~exchanged])
    np.testing.assert_array_equal(fast[~exchanged], mid[~exchanged])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("model", MODEL_FAMILIES)
def test_folding_changes_no_step_of_a_lone_request_that_copies_nothing(engine, model):
    # every layer does the same work for a lone request whose context sits on one remote
    # owner under route (or all at home under any policy): G simulated slots, each standing
    # for its share of the layers, give every layer's steps and bytes. A slot charged one
    # layer too many or too few, or a fold that dropped the remainder of L / G, breaks it
    cases = [("repo_affinity", alone(repo=repo_on(1, 2)), "route"),
             *(("first_writer", alone(), p) for p in ("fetch", "local"))]
    for scheme, trace, policy in cases:
        def folded(groups: int, scheme=scheme, trace=trace, policy=policy):
            sc = small_scenario("single_node:gpus=2", scheme=scheme, layer_groups=groups,
                                model=model)
            return run(sc, policy, trace=trace, engine=engine)

        every = folded(0)
        if scheme == "repo_affinity":
            assert len(every.rounds) > 0
        for groups in (1, 3, 7):
            res = folded(groups)
            np.testing.assert_allclose(step_times(res), step_times(every), rtol=1e-12,
                                       err_msg=f"{scheme} {policy} layer_groups={groups}")
            assert res.summary["bytes_moved"] == pytest.approx(every.summary["bytes_moved"],
                                                               rel=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", POLICIES)
def test_a_request_on_a_gpu_of_its_own_is_untouched_by_another_on_another_gpu(engine,
                                                                            policy):
    # two requests arriving together with nothing in common land on the two least loaded
    # GPUs and compute their own prompts there: the first's steps and times are those it
    # takes alone, bit for bit (a GPU's step that read another GPU's batch would move them)
    sc = small_scenario("dgx_h100:nodes=2", scheme="first_writer", layer_groups=3)
    lone = run(sc, policy, trace=alone(output=12), engine=engine)
    pair = make_trace(arrival_at=[0.0, 0.0], input_tokens=[40 * 64 - 5, 30 * 64],
                      output_tokens=[12, 20], block_ids=[list(range(40)),
                                                         list(range(100, 130))],
                      block_tokens=64)
    both = run(sc, policy, trace=pair, engine=engine)
    check_run(both, pair)
    homes = both.requests["home"].astype(str).tolist()
    assert homes[0] == str(lone.requests["home"][0]) and homes[0] != homes[1]
    cols = ["admitted_at", "first_token_at", "finished_at", "tokens_generated"]
    pd.testing.assert_frame_equal(both.requests.loc[[0], cols], lone.requests[cols],
                                  check_exact=True)
    it = both.iterations[both.iterations["gpu"].astype(str) == homes[0]]
    pd.testing.assert_frame_equal(it.reset_index(drop=True), lone.iterations,
                                  check_exact=True, check_categorical=False)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", ["route", "fetch", "local"])
def test_a_lone_requests_first_steps_do_not_depend_on_its_remaining_tokens(engine, policy):
    # 12 or 30 tokens to generate: the first 12 steps and rounds are the same, bit for bit
    # (selections drawn 16 steps at a time, copies kept, pages grown: none looks ahead).
    # Not adaptive: it weighs a copy by the decode steps its batch has left
    # (`remaining_tokens`, docs/policies.md), so a longer output may tip a round to fetch
    sc = small_scenario("dgx_h100:nodes=2", scheme="repo_affinity", layer_groups=3)
    short = run(sc, policy, trace=alone(output=12, repo=repo_on(12, 16)), engine=engine)
    long = run(sc, policy, trace=alone(output=30, repo=repo_on(12, 16)), engine=engine)
    n = len(short.iterations)
    assert n == 12 and len(long.iterations) == 30
    pd.testing.assert_frame_equal(long.iterations.iloc[:n], short.iterations, check_exact=True)
    last = short.iterations["iteration"].max()
    rd = long.rounds[long.rounds["iteration"] <= last].reset_index(drop=True)
    pd.testing.assert_frame_equal(rd, short.rounds, check_exact=True, check_categorical=False)
    assert (long.requests["first_token_at"] == short.requests["first_token_at"]).all()


# -- KV room to spare ----------------------------------------------------------------------------


@settings(max_examples=examples(8))
@given(case=small_cases(max_requests=6), policy=st.sampled_from(POLICIES),
       engine=st.sampled_from(ENGINES))
def test_with_kv_room_to_spare_the_host_tier_and_the_allocation_rule_change_nothing(
        case, policy, engine):
    # ≈ 7,100 blocks per GPU for at most 6 × 41: nothing is evicted, demoted or refused, so
    # neither the host tier nor reserving the output tokens up front changes a record
    sc, trace = case
    pl, sv = sc.placement, sc.serving
    sc = sc.with_changes(placement=dataclasses.replace(pl, weights_per_gpu=40e9))
    a = run(sc, policy, trace=trace, engine=engine)
    flipped = sc.with_changes(placement=dataclasses.replace(sc.placement,
                                                            host_tier=not pl.host_tier))
    same_records(a, run(flipped, policy, trace=trace, engine=engine))
    other = "reserve" if sv.kv_allocation == "on_demand" else "on_demand"
    flipped = sc.with_changes(serving=dataclasses.replace(sv, kv_allocation=other))
    same_records(a, run(flipped, policy, trace=trace, engine=engine))


# -- seeds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_the_seed_given_to_run_is_the_scenarios_own_seed_set_to_it(engine):
    # a generated workload (agentic sub-agents: the trace is drawn from the seed) and DSA's
    # selections: run(seed=3) = the scenario with seed = 3, bit for bit, and again the same;
    # seed 0 is another run
    base = Scenario.load("scenarios/agentic_repo.toml")
    base = base.with_changes(engine=dataclasses.replace(base.engine, max_requests=6,
                                                        layer_groups=2))
    given_seed = run(base, "route", seed=3, engine=engine)
    own = run(base.with_changes(seed=3), "route", engine=engine)
    again = run(base.with_changes(seed=3), "route", seed=3, engine=engine)
    for res in (own, again):
        same_records(given_seed, res)
        pd.testing.assert_frame_equal(given_seed.links, res.links, check_exact=True)
        assert {k: v for k, v in res.summary.items() if k != "wall_time"} == {
            k: v for k, v in given_seed.summary.items() if k != "wall_time"}
    assert given_seed.summary["seed"] == 3
    other = run(base, "route", engine=engine)
    assert other.summary["seed"] == 0
    assert not other.requests.equals(given_seed.requests)


def test_the_seed_option_of_the_command_line_is_the_scenarios_own_seed(tmp_path, capsys):
    # `kvfabric run a.toml --seed 5` (a's seed 1) writes the records, summary and manifest
    # seed of `kvfabric run b.toml` (b's seed 5), on each engine
    write_trace(make_trace(arrival_at=[0.0, 0.01], input_tokens=[3000] * 2,
                           output_tokens=[3] * 2, block_ids=[list(range(47))] * 2,
                           block_tokens=64), tmp_path / "tiny.parquet")
    for seed in (1, 5):
        text = SMALL.format(name="tiny", top='policies = ["route"]')
        (tmp_path / f"s{seed}.toml").write_text(text.replace("seed = 1", f"seed = {seed}"))
    for engine in ENGINES:
        outs = {}
        for name, extra in (("s1", ["--seed", "5"]), ("s5", [])):
            out = tmp_path / f"{name}-{engine}"
            code, stdout, err = run_main(["run", str(tmp_path / f"{name}.toml"), *extra,
                                          "--engine", engine, "--jobs", "1", "--json",
                                          "--out", str(out)],
                                         capsys)
            assert code == 0, err
            outs[name] = (json.loads(stdout), out)
        (one, one_dir), (five, five_dir) = outs["s1"], outs["s5"]
        drop = {"wall_time"}
        assert {k: v for k, v in one["policies"]["route"].items() if k not in drop} == {
            k: v for k, v in five["policies"]["route"].items() if k not in drop}
        for table in ("requests", "rounds", "iterations", "links"):
            pd.testing.assert_frame_equal(pd.read_parquet(one_dir / f"{table}.parquet"),
                                          pd.read_parquet(five_dir / f"{table}.parquet"))
        manifests = [json.loads((d / "manifest.json").read_text()) for d in (one_dir, five_dir)]
        assert manifests[0]["seed"] == manifests[1]["seed"] == 5
