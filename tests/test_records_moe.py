"""A ``[deployment]``'s ``moe`` records agree with each other and with what happened, on both
engines: one row per (pool, instance, step, micro-batch, MoE layer slot) that ended before the
clock stopped; its tokens are the micro-batch's decodes and prefill chunks as the ``iterations``
rows count them; its bytes are whole (token, rank) rows of DeepEP's wire formats, summing to
the Fabric's ``moe_dispatch`` / ``moe_combine`` classes; its straggler holds at least the mean
rows; its simulated phases never beat the closed form's and equal it where the layer is alone on
the fabric (or off it); a lane's layers follow one another inside their step; a GPU's kernels
never overlap (its busy time fits in its steps); and a request alone gets the same rows on both
engines.

The oracles are independent of the code under test: DeepSeek-V3.2's configuration
(``simulator/models.py``: hidden 7,168, top-8 of 256 routed experts, 61 layers of which the first
3 dense) and DeepEP's wire formats (fp8 with a fp32 scale per 128 channels out, bf16 back:
``simulator/costmodel/deepep.py``'s docstring) by hand; the expert placement by hand from the
EPLB rule (``simulator/costmodel/experts.py``'s docstring); and second records of the same run —
``iterations`` for the tokens, the Fabric's per-class counters for the bytes, the ``gpus``
table's busy time for the streams.

The audit found three faults, fixed (each test says which): the exact engine's Fabric counted a
message sent ahead with a delay — an all-to-all handed over at its layer's start and issued
after its fixed time, a routed query's answer issued at its kernel's end — as sent when it was
handed over, so a run cut before its issue counted bytes the fast engine (rightly) did not; a
popularity table with fewer experts of weight > 0 than the model's top-k made the run loop for
ever (a token never found k distinct experts); and a request of a trace handed to ``run`` whole
that arrived when the run had stopped was said to follow a request that had not finished.
"""

from __future__ import annotations

import dataclasses
import tomllib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_fast import alone
from test_engine_instances import BASE, scenario, trace
from test_engine_instances_edges import TIGHT_ROOM, prefill_unit

from simulator import Scenario, hardware, run
from simulator.costmodel.moe import ExpertParallel
from simulator.costmodel.rank_kernels import RankKernels
from simulator.deployment import check_against, validate_deployment
from simulator.engine import NOT_FINISHED, TOO_LARGE
from simulator.engine.arrivals import NOT_ENTERED
from simulator.engine.requests import NOT_ARRIVED
from simulator.gpu.profiled import default_kernels
from simulator.models import model
from simulator.testing.invariants import check_conservation, repo_on, small_scenario
from simulator.testing.profiles import examples
from simulator.testing.traces import request_traces
from workloads.schema import make_trace

ARCH = model("deepseek-v3.2")
#: DeepSeek-V3.2 (its config.json, in simulator/models.py): hidden size, routed experts per
#: token, routed experts, layers, dense (non-MoE) layers at the front.
HIDDEN, TOP_K, EXPERTS, LAYERS, DENSE = 7168, 8, 256, 61, 3
#: Bytes of one dispatched (token, rank) row — fp8, plus a fp32 scale per 128 channels — and of
#: one combined row (bf16) [B].
DISPATCH_ROW = HIDDEN * (1 + 4 / 128)  # 7,392 B
COMBINE_ROW = HIDDEN * 2  # 14,336 B
PHASES = ["dispatch_time", "expert_time", "combine_time", "post_time"]
CF = [f"cf_{p}" for p in PHASES]
KEY = ["pool", "instance", "lane", "iteration", "layer"]
#: GPUs of the 2-node EP16 test deployment, in rank order.
RANKS = [f"n{n}/gpu{g}" for n in range(2) for g in range(8)]


def test_the_constants_are_the_models():
    assert (ARCH.hidden_size, ARCH.experts_per_token, ARCH.experts, ARCH.layers,
            ARCH.dense_layers) == (HIDDEN, TOP_K, EXPERTS, LAYERS, DENSE)


def cut_at(sc: Scenario, duration: float | None) -> Scenario:
    return dataclasses.replace(sc, engine=dataclasses.replace(sc.engine, duration=duration))


def layer_ends(m):
    """When each ``moe`` row's layer ended: its start plus its four phases [s]."""
    return m["started_at"] + m[PHASES].sum(axis=1)


def instances(res) -> dict[tuple[str, int], list[str]]:
    """Each instance's GPUs, by (pool, index), from the run's layout."""
    return {(pool, i): inst["gpus"] for pool, insts in res.extras["deployment"]["pools"].items()
            for i, inst in enumerate(insts)}


def check_moe_records(res, sc: Scenario, cut: float | None, groups: int) -> None:
    """Every check of the module docstring that holds for any run (see the property test)."""
    m = res.extras["moe"]
    it = res.iterations.assign(gpu=res.iterations["gpu"].astype(str))
    pools = res.extras["deployment"]["pools"]
    assert not m.duplicated(KEY).any(), "two rows for one layer of one micro-batch"
    assert res.summary.get("moe_layers", 0) == len(m)
    end = layer_ends(m)
    if cut is not None:
        assert (end < cut).all(), "a layer that ended after the clock stopped"
    assert (m[PHASES + CF].to_numpy() >= 0.0).all()
    for (pool, i), gpus in instances(res).items():
        mine = m[(m["pool"] == pool) & (m["instance"] == i)]
        steps = it[it["gpu"].isin(gpus)]
        # the step's tokens: every rank's decodes and prefill chunks (a recompute's token
        # is no MoE row)
        per_step = (steps["batch"] + steps["prefill_tokens"]).groupby(steps["iteration"]).sum()
        lanes = mine.groupby(["iteration", "layer"])["tokens"].sum()
        for (step, layer), tokens in lanes.items():
            if step in per_step.index:
                assert tokens == per_step[step], (pool, i, step, layer)
            else:  # only the step the clock stopped in has layers and no iterations row
                assert cut is not None and step > (per_step.index.max() if len(per_step) else -1)
        if cut is None:  # every step with tokens played every MoE layer, per micro-batch
            for step in per_step.index[per_step.to_numpy() > 0]:
                rows = mine[mine["iteration"] == step]
                assert len(rows), (pool, i, step)
                for _, lane in rows.groupby("lane"):
                    assert lane["layers"].sum() == LAYERS - DENSE
        # a micro-batch's layers one after the other, inside their step
        window = steps.groupby("iteration").agg(s=("started_at", "min"), e=("finished_at", "max"))
        for _, lane in mine.assign(end=end).groupby("lane"):
            lane = lane.sort_values(["iteration", "layer"])
            assert (lane["started_at"].to_numpy()[1:] >= lane["end"].to_numpy()[:-1] - 1e-12).all()
            w = window.reindex(lane["iteration"])
            inside = w["s"].isna().to_numpy() | (
                (lane["started_at"].to_numpy() >= w["s"].to_numpy() - 1e-12)
                & (lane["end"].to_numpy() <= w["e"].to_numpy() + 1e-12))
            assert inside.all(), "a layer outside its step"
        # the second micro-batch's layer starts after the first's (its attention waits for it)
        both = mine.pivot_table(index=["iteration", "layer"], columns="lane", values="started_at")
        if {0, 1} <= set(both.columns):
            both = both.dropna()
            assert (both[1] >= both[0] - 1e-12).all()
    if len(m):
        normal = m["pool"].map(lambda p: getattr(sc.deployment, p).moe_kernels == "normal")
        rows = m["dispatch_bytes"] / DISPATCH_ROW
        assert np.allclose(rows, np.round(rows), rtol=0, atol=1e-6), "not whole rows"
        assert np.allclose(m["combine_bytes"] / COMBINE_ROW, rows, rtol=1e-12)
        # at most top-k rows per token leave its rank (normal: one more to the other node)
        assert (rows <= m["tokens"] * (TOP_K + normal.astype(int)) + 1e-6).all()
        # the straggler holds at least the mean of the tokens × top-k rows, at most them all
        assert (m["max_rows"] * m["ranks"] >= m["tokens"] * TOP_K).all()
        assert (m["max_rows"] <= m["tokens"] * TOP_K).all()
        # nothing beats the closed form (idle links and streams); off the fabric an exchange
        # takes it exactly, whatever else runs
        for p in ("dispatch_time", "combine_time"):
            assert (m[p] >= m[f"cf_{p}"] * (1 - 1e-9)).all(), p
            if not sc.deployment.moe_on_fabric:
                np.testing.assert_allclose(m[p], m[f"cf_{p}"], rtol=1e-9, atol=1e-15)
        assert (m[PHASES].sum(axis=1) >= m[CF].sum(axis=1) * (1 - 1e-9)).all()
        # alone on the fabric — one decode instance, one micro-batch, no prefill pool: a
        # layer starts when every rank's rounds are done — it takes the closed form
        if list(pools) == ["decode"] and len(pools["decode"]) == 1 \
                and not sc.deployment.decode.two_batch_overlap:
            np.testing.assert_allclose(m[PHASES].to_numpy(float), m[CF].to_numpy(float),
                                       rtol=1e-9, atol=1e-15)
    by_class = res.extras["bytes_by_class"]
    for col, cls in (("dispatch_bytes", "moe_dispatch"), ("combine_bytes", "moe_combine")):
        sent = by_class.get(cls, 0.0)
        if not sc.deployment.moe_on_fabric:
            assert sent == 0.0
        elif cut is None:  # one simulated layer per slot in both
            assert sent == pytest.approx(m[col].sum(), rel=1e-9)
        else:  # sent, delivered or not: at least the layers that ended
            assert sent >= m[col].sum() * (1 - 1e-9)
    if groups == 0 and cut is None:  # every layer played: a GPU's kernels fit in its steps
        busy = res.gpus.set_index(res.gpus["gpu"].astype(str))["busy_time"]
        inst = {g: key for key, gpus in instances(res).items() for g in gpus}
        r = res.rounds
        visited = {o for s, o in zip(r["src"].astype(str), r["owner"].astype(str), strict=True)
                   if o in inst and inst[o] != inst[s]}  # kernels of another instance's steps
        for gpus in instances(res).values():
            steps = it[it["gpu"].isin(gpus)].groupby("iteration")
            span = float((steps["finished_at"].max() - steps["started_at"].min()).sum())
            mine = [g for g in gpus if g not in visited]
            assert (busy[mine] <= span * (1 + 1e-9) + 1e-12).all(), "kernels overlapped"


@settings(max_examples=examples(4))
@given(trace=request_traces(max_requests=6, max_blocks=24, vocab=30, block_tokens=st.just(64)),
       shape=st.sampled_from(["ep", "ep_external", "pd", "two_instances"]),
       overlap=st.booleans(), normal=st.booleans(), on_fabric=st.booleans(),
       tight=st.booleans(), chunk=st.sampled_from([None, 256]),
       policy=st.sampled_from(["route", "fetch", "adaptive"]),
       engine=st.sampled_from(["exact", "fast"]), groups=st.sampled_from([4, 40, 0]),
       cut=st.one_of(st.none(), st.floats(0.02, 1.0)))
def test_moe_records_agree_with_the_iterations_the_fabric_and_the_closed_form(
        trace, shape, overlap, normal, on_fabric, tight, chunk, policy, engine, groups, cut):
    # catches (hand mutants, each run against this test): a micro-batch's tokens without its
    # prefill chunks (instance_loop._prepare), the exchange's payload counted once per link
    # instead of once (exchange.MoEReplay.exchange's share), the exact engine's phases
    # recorded out of order (MoEReplay.play), the fast engine's add timed from the combine's
    # start (FastInstanceLoop._moe_at), a fast slot's next layer started from this one's start
    # (FastInstanceLoop._step's nxt), a stream starting a kernel before the one ahead ended
    # (streams.Stream.issue)
    extra = "two_batch_overlap = true\n" if overlap else ""
    extra += 'moe_kernels = "normal"\n' if normal else ""
    extra += "" if on_fabric else "moe_on_fabric = false\n"
    extra += "external_prefill = true\n" if shape == "ep_external" else ""
    extra += prefill_unit(layerwise=True) if shape == "pd" else ""
    extra += TIGHT_ROOM if tight else ""
    extra += f"[serving]\nmax_num_batched_tokens = {chunk}\n" if chunk else ""
    nodes = {"pd": 4, "two_instances": 4}.get(shape, 2)
    text = BASE.format(nodes=nodes, selection="dense", extra=extra, groups=groups)
    if shape == "two_instances":
        text = text.replace("attention_dp = 16\n", "instances = 2\nattention_dp = 16\n", 1)
    sc = cut_at(Scenario.from_dict(tomllib.loads(text), source="ep.toml"), cut)
    res = run(sc, policy, trace=trace, engine=engine)
    check_conservation(res, trace)  # every request completed (all its tokens) or a reason …
    reasons = set(res.requests["reason"].astype(str)) - {""}
    # … a documented one: too large for its rank, or (cut) not finished or not arrived by then
    assert reasons <= {TOO_LARGE} | ({NOT_FINISHED, NOT_ARRIVED} if cut is not None else set())
    assert (res.requests["tokens_generated"] <= res.requests["output_tokens"]).all()
    check_moe_records(res, sc, cut, groups)


# -- by hand: eight hot experts ----------------------------------------------------------------

#: The only experts of weight > 0: every token picks exactly these (top-8 of 8).
HOT = (3, 40, 77, 100, 150, 201, 230, 255)


def hot_scenario(extra: str = "") -> Scenario:
    """The EP16 test deployment without redundant experts (16 slots a rank), popularity 1 on
    :data:`HOT`, 0 elsewhere. EPLB places the heaviest first, each on the least loaded rank
    (the lowest index on ties): the hot experts on ranks 0–7 (all of node n0), one each; the
    cold ones fill ranks 8–15, then the rest of 0–7."""
    weights = [1.0 if e in HOT else 0.0 for e in range(EXPERTS)]
    text = BASE.format(nodes=2, selection="dense", groups=4,
                       extra=f"popularity = {weights}\n{extra}")
    text = text.replace("redundant_experts = 16", "redundant_experts = 0")
    return Scenario.from_dict(tomllib.loads(text), source="hot.toml")


@pytest.mark.parametrize("engine", ["exact", "fast"])
@pytest.mark.parametrize("extra", ["", 'moe_kernels = "normal"\n', "two_batch_overlap = true\n"])
def test_eight_hot_experts_give_each_layers_bytes_and_rows_by_hand(engine, extra):
    # twelve prompts of 700 tokens arrive at once, one on each of ranks 0–11; each then
    # decodes three tokens. Every token picks the eight hot experts: ranks 0–7 each receive
    # all T tokens of the layer (max_rows = T, one active expert), ranks 8–15 none. A token
    # of rank s < 8 sends 7 rows to other ranks (its own hot expert's stays), one of a rank
    # on n1 sends 8 — in normal kernels too: the token crosses to n0 once, to the rank of its
    # rail, which forwards it to the other 7. So a layer's dispatch is 7,392 B × Σ_s T_s ×
    # (8 − [s < 8]) and its combine 14,336 B × the same rows. Catches: the on-rank rows put on
    # the wire (moe.ExpertParallel.plan's fill_diagonal), fp8 rows without their scales
    # (deepep), normal kernels' hop to the other node's relay left out (moe._normal),
    # max_rows of the least loaded rank (instance_loop._moe_record)
    res = run(hot_scenario(extra), "route", trace=trace(12, inp=700, out=4), engine=engine)
    assert sorted(res.requests["home"].astype(str)) == sorted(RANKS[:12])
    it = res.iterations
    rank = it["gpu"].astype(str).map(RANKS.index).to_numpy()
    tokens = (it["batch"] + it["prefill_tokens"]).to_numpy()
    step_of = it["iteration"].to_numpy()
    rows = pd.Series(tokens * np.where(rank < 8, 7, 8)).groupby(step_of).sum()
    total = pd.Series(tokens).groupby(step_of).sum()
    m = res.extras["moe"]
    assert len(m) == 4 * 3  # a prefill step and three decode steps, three MoE slots each
    step = m.groupby(["iteration", "layer"])[["dispatch_bytes", "combine_bytes", "tokens"]].sum()
    steps = step.index.get_level_values("iteration")
    assert step["tokens"].tolist() == total.loc[steps].tolist()
    assert step["dispatch_bytes"].to_numpy() == pytest.approx(
        rows.loc[steps].to_numpy() * DISPATCH_ROW, rel=1e-12)
    assert step["combine_bytes"].to_numpy() == pytest.approx(
        rows.loc[steps].to_numpy() * COMBINE_ROW, rel=1e-12)
    assert (m["max_rows"] == m["tokens"]).all()
    assert set(m["tokens"]) == {12 * 700, 12}
    # more rows on the straggler's one expert, a longer expert phase
    by_rows = m.groupby("max_rows")["expert_time"].agg(["min", "max"])
    assert by_rows.loc[12, "max"] < by_rows.loc[12 * 700, "min"]


# -- both engines: a request alone, and a cut before a delayed message is issued ---------------

@settings(max_examples=examples(6))
@given(inp=st.integers(1, 2500), out=st.integers(1, 5),
       shape=st.sampled_from(["ep", "ep_external", "pd"]), overlap=st.booleans(),
       normal=st.booleans(), hashed=st.booleans(), chunk=st.sampled_from([None, 256]),
       policy=st.sampled_from(["route", "fetch", "local", "adaptive"]),
       groups=st.sampled_from([4, 40, 0]), cut=st.one_of(st.none(), st.floats(0.01, 0.5)))
def test_a_request_alone_has_the_same_moe_rows_and_bytes_on_both_engines(
        inp, out, shape, overlap, normal, hashed, chunk, policy, groups, cut):
    # every column of every row to 1e-9, and the bytes sent per class — a cut anywhere,
    # inside an all-to-all's fixed time too (before the Fabric's fix the exact engine counted
    # an exchange handed over before the cut and issued after it as sent)
    extra = "two_batch_overlap = true\n" if overlap else ""
    extra += 'moe_kernels = "normal"\n' if normal else ""
    extra += "external_prefill = true\n" if shape == "ep_external" else ""
    extra += prefill_unit(layerwise=True) if shape == "pd" else ""
    extra += '[placement]\nscheme = "hash"\n' if hashed else ""
    extra += f"[serving]\nmax_num_batched_tokens = {chunk}\n" if chunk else ""
    sc = cut_at(scenario(nodes=4 if shape == "pd" else 2, selection="dense", extra=extra,
                         groups=groups), cut)
    tr = trace(1, inp=inp, out=out)
    exact = run(sc, policy, trace=tr)
    fast = run(sc, policy, trace=tr, engine="fast")
    a, b = (r.extras["moe"].sort_values(KEY).reset_index(drop=True) for r in (exact, fast))
    assert len(a) == len(b)
    for col in a.columns:
        if a[col].dtype.kind == "f":
            np.testing.assert_allclose(b[col], a[col], rtol=1e-9, atol=1e-15, err_msg=col)
        else:
            assert (a[col] == b[col]).all(), col
    ea, fa = exact.extras["bytes_by_class"], fast.extras["bytes_by_class"]
    assert set(ea) == set(fa)
    for cls, nbytes in ea.items():
        assert fa[cls] == pytest.approx(nbytes, rel=1e-9), cls


@pytest.mark.parametrize("engine", ["exact", "fast"])
@pytest.mark.parametrize("phase", ["dispatch", "combine"])
def test_a_cut_inside_an_exchanges_fixed_time_counts_it_unsent(engine, phase):
    # a lone request, every layer simulated: the clock stops half-way into the fixed time
    # (kernel overhead, stack overhead, latency) of its second decode step's first MoE
    # layer's dispatch — or combine. Until then every layer before it has ended (its row
    # kept) and that exchange is not yet on the wire: the Fabric's moe classes hold exactly
    # the rows' bytes (plus, cut in the combine, that layer's dispatch). Failed before the
    # fix on the exact engine, whose Fabric counted the exchange when it was handed over;
    # catches the fast engine's rows of layers composed past the cut kept
    # (instances.Deployed._moe_ended)
    sc = scenario(selection="dense", groups=0)
    tr = trace(1, inp=640, out=3)
    full = run(sc, "route", trace=tr, engine=engine).extras["moe"]
    layer = full[full["iteration"] == 2].sort_values("layer").iloc[0]
    fixed = layer["cf_dispatch_time"] if phase == "dispatch" else layer["cf_combine_time"]
    start = layer["started_at"] + (0.0 if phase == "dispatch" else
                                   layer[["dispatch_time", "expert_time"]].sum())
    # 40 % into it: one token's rows (≤ 8 × 7,392 B) take ~1 µs of its ~34 µs on the wire
    res = run(cut_at(sc, start + 0.4 * fixed), "route", trace=tr, engine=engine)
    m = res.extras["moe"]
    assert len(m) == int((layer_ends(full) < start).sum())
    sent = res.extras["bytes_by_class"]
    dispatched = m["dispatch_bytes"].sum() + (layer["dispatch_bytes"] if phase == "combine"
                                              else 0.0)
    assert sent["moe_dispatch"] == pytest.approx(dispatched, rel=1e-12)
    assert sent["moe_combine"] == pytest.approx(m["combine_bytes"].sum(), rel=1e-12)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_a_cut_while_an_owner_computes_a_routed_query_counts_its_answer_unsent(fraction):
    # outside deployments the same: a routed query's answer is handed to the Fabric when the
    # query arrives, to be issued when the owner's kernel ends. A clock stopped in between
    # counts the query sent and not the answer, on both engines (before the fix the exact
    # engine counted the answer too: 131,584 B more of kv_route here)
    sc = small_scenario("dgx_h100:nodes=2", scheme="repo_affinity", layer_groups=0)
    tr = alone(repo=repo_on(12, 16), output=20)
    r = run(sc, "route", trace=tr).rounds
    rnd = r[r["iteration"] == 5].iloc[3]
    cut = float(rnd["started_at"] + rnd["probe_time"] + rnd["transfer_time"]
                + fraction * rnd["compute_time"])
    sc = small_scenario("dgx_h100:nodes=2", scheme="repo_affinity", layer_groups=0, duration=cut)
    sent = {e: run(sc, "route", trace=tr, engine=e).extras["bytes_by_class"]["kv_route"]
            for e in ("exact", "fast")}
    assert sent["exact"] == pytest.approx(sent["fast"], rel=1e-12)


# -- the kernel model and the section ----------------------------------------------------------

GPU_KINDS = ("H100", "H200", "H20", "B200")


@settings(max_examples=examples(40))
@given(gpu=st.sampled_from(GPU_KINDS), name=st.sampled_from(["deepseek-v3.2", "glm-5"]),
       rows=st.integers(1, 200_000), more=st.integers(1, 5_000), active=st.integers(1, 32))
def test_a_ranks_expert_time_never_falls_with_more_rows_or_active_experts(gpu, name, rows, more,
                                                                          active):
    # the straggler's phase grows with its rows: a grouped GEMM profile read between its
    # measured sizes (or a launch cost) that dipped would make a busier rank finish sooner
    # (catches a gate/up GEMM timed at fewer groups the more experts are active)
    rk = RankKernels(default_kernels(), hardware.gpu(gpu), model(name))
    active = min(active, rows)
    t = rk.expert_time(rows, active)
    assert t > 0.0
    assert rk.expert_time(rows + more, active) >= t
    if active < rows:
        assert rk.expert_time(rows, active + 1) >= t


def test_a_popularity_with_fewer_experts_than_top_k_is_refused():
    # a token picks top-8 *distinct* experts of weight > 0: with fewer the draw never ended
    # and the run hung (before the fix); now the section is refused naming the field, and
    # the EP group itself refuses such a table
    weights = [1.0] * 7 + [0.0] * (EXPERTS - 7)
    spec = validate_deployment({"attention_dp": 16, "redundant_experts": 16,
                                "popularity": weights}, "x.toml")
    with pytest.raises(Exception, match=r"deployment\.popularity.*7 weights > 0.*at least 8"):
        check_against(spec, ARCH, ["H100"] * 16, "x.toml")
    eight = [1.0] * 8 + [0.0] * (EXPERTS - 8)
    check_against(dataclasses.replace(spec, popularity=tuple(eight)), ARCH, ["H100"] * 16)
    with pytest.raises(ValueError, match="top-8"):
        ExpertParallel([], None, ARCH, np.array(weights) / 7, 16, "low_latency", [], {})


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_request_arriving_when_the_run_has_stopped_never_arrived(engine):
    # a trace handed to ``run`` whole, the clock stopped at 0.5 s: the prompt at 0 s completes,
    # those at 0.5 s (the cut itself: the clock stops before it enters) and 0.7 s never enter,
    # and say so — they follow no request (until this audit they were given the reason of a
    # follower whose request never finished, "the request it follows had not finished"). In a
    # closed loop of one, the request waiting for the first one's place never entered because
    # that one had not finished: the follower's reason (hypothesis found the open-loop case)
    tr = make_trace(arrival_at=[0.0, 0.5, 0.7], input_tokens=[640] * 3, output_tokens=[3] * 3,
                    block_tokens=64, block_ids=[np.arange(10) + 100 * (i + 1) for i in range(3)])
    res = run(cut_at(scenario(selection="dense"), 0.5), "route", trace=tr, engine=engine)
    req = res.requests.set_index("request_id").sort_index()
    assert req["reason"].tolist() == ["", NOT_ARRIVED, NOT_ARRIVED]
    assert req["arrival_at"].isna().tolist() == [False, True, True]
    assert res.summary["unfinished"] == {NOT_ARRIVED: 2}
    closed = small_scenario(duration=0.2)
    closed = dataclasses.replace(closed, workload=dataclasses.replace(closed.workload,
                                                                       concurrency=1))
    req = run(closed, "route", trace=tr, engine=engine).requests.sort_values("request_id")
    assert req["reason"].tolist()[1:] == [NOT_ENTERED, NOT_ENTERED]
