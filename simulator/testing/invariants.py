"""Invariant checks for engine runs, and hypothesis strategies for small scenarios.

A user property-tests their own policy in a few lines::

    from hypothesis import given
    from simulator.testing.invariants import check_run, small_cases
    from simulator import run

    @given(small_cases())
    def test_my_policy(case):
        scenario, trace = case
        res = run(scenario, MyPolicy(), trace=trace, check_invariants=True)
        check_run(res, trace)

Checks (each raises ``AssertionError`` with what broke):

- :func:`check_conservation` — every request that entered is in ``res.requests`` exactly once,
  and each is completed (all its tokens generated) or carries a reason;
- :func:`check_ordering` — arrival ≤ admission ≤ first token ≤ finish for completed requests;
- :func:`check_bytes` — bytes the rounds say they sent = bytes the fabric delivered (beside
  other traffic, a deployment's all-to-all say: = bytes sent in the rounds' classes; in a run
  cut with rounds under way, at most those delivered);
- :func:`check_closed_form_exact` — every round's simulated time equals the closed form
  (valid when nothing contends: one query at a time, one owner per layer);
- :func:`check_rounds` — phase times are non-negative and add up to the round's time;
- :func:`check_steps` — each GPU runs one step at a time, in its iterations' order, none over
  the batch limit, and every token generated was decoded by a step or came with a prompt's
  completion (its first, or the one a recompute after a preemption gives). A step may compute
  nothing: a deployment's rank steps with its instance, and a step may only give the first
  tokens of prompts whose KV arrived computed.

KV capacity is checked *during* a run: ``run(..., check_invariants=True)`` verifies the block
directory after every iteration (HBM blocks per GPU ≤ capacity, bookkeeping consistent).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from simulator.engine.requests import NOT_FINISHED
from simulator.kvcache import stable_hash
from simulator.network.traffic import KV_FETCH, KV_ROUTE, TRAFFIC_CLASSES
from simulator.scenario import Scenario

__all__ = [
    "MODEL_FAMILIES",
    "check_bytes",
    "check_closed_form_exact",
    "check_conservation",
    "check_ordering",
    "check_rounds",
    "check_run",
    "check_steps",
    "repo_on",
    "scenario_costs",
    "small_cases",
    "small_scenario",
]


def check_conservation(res, trace: pd.DataFrame) -> None:
    """Every request of ``trace`` appears once; completed ⇔ all tokens generated, else a reason."""
    req = res.requests
    assert sorted(req["request_id"].tolist()) == sorted(trace["request_id"].tolist()), \
        "requests lost or duplicated"
    done = req["completed"].to_numpy(bool)
    full = (req["tokens_generated"] == req["output_tokens"]).to_numpy(bool)
    assert np.all(full[done]), "a completed request is missing tokens"
    reasons = req["reason"].astype(str).to_numpy()
    assert np.all(reasons[~done] != ""), "a request did not complete and gives no reason"
    assert np.all(reasons[done] == ""), "a completed request carries a failure reason"
    assert res.summary["requests"] == len(trace)
    assert res.summary["completed"] == int(done.sum())


def check_ordering(res) -> None:
    """arrival ≤ admitted ≤ first token ≤ finish (completed requests) [s]."""
    r = res.requests[res.requests["completed"]]
    a, m = r["arrival_at"].to_numpy(), r["admitted_at"].to_numpy()
    f, e = r["first_token_at"].to_numpy(), r["finished_at"].to_numpy()
    assert np.all(a <= m) and np.all(m <= f) and np.all(f <= e), "request timestamps out of order"


#: The traffic classes of a run's rounds (the rest: a deployment's all-to-all and KV hand-off,
#: the pool loops' collectives, a user's own transfers).
ROUND_CLASSES = (TRAFFIC_CLASSES[KV_ROUTE], TRAFFIC_CLASSES[KV_FETCH])


def check_bytes(res, rel: float = 1e-9) -> None:
    """Σ round bytes (one simulated layer each) = bytes the fabric delivered (reads from host
    DRAM are copies on the copy engines, not fabric messages: left out). Where the fabric also
    carried traffic of other classes (a ``[deployment]``'s all-to-all and hand-off, say), the
    rounds' bytes are held to the bytes sent in their own classes instead. A run its duration
    stopped with work in flight (a request ``NOT_FINISHED``) may have delivered a message of a
    round that had not ended — a routed query at its owner, the answer not yet back — and
    records only rounds that ended, so there the rounds' bytes are at most those delivered."""
    rd = res.rounds
    if len(rd):
        rd = rd[~rd["owner"].astype(str).str.endswith("/host")]
    sent = float(rd["bytes"].sum()) if len(rd) else 0.0
    by_class = res.extras.get("bytes_by_class", {})
    if set(by_class) - set(ROUND_CLASSES):
        got = float(sum(by_class.get(c, 0.0) for c in ROUND_CLASSES))
        where = "sent as " + " and ".join(ROUND_CLASSES)
    else:
        got, where = float(res.fabric_bytes), "links"
    tol = rel * max(sent, got, 1.0)
    if res.summary.get("unfinished", {}).get(NOT_FINISHED, 0):  # cut with rounds under way
        assert sent <= got + tol, f"rounds sent {sent} B, more than {where} {got} B"
        return
    assert abs(sent - got) <= tol, f"rounds sent {sent} B, {where} {got} B"


def check_rounds(res, rel: float = 1e-9) -> None:
    """Phase times ≥ 0 and probe + transfer + compute + return + merge = round time."""
    rd = res.rounds
    if not len(rd):
        return
    phases = rd[["probe_time", "transfer_time", "compute_time", "return_time", "merge_time"]]
    assert (phases.to_numpy() >= -1e-12).all(), "a negative phase time"
    total = phases.sum(axis=1).to_numpy()
    sim = rd["sim_time"].to_numpy()
    assert np.allclose(total, sim, rtol=rel, atol=1e-15), "phases do not add up to the round"


def check_closed_form_exact(res, rel: float = 1e-6, first_step: bool = False) -> None:
    """Every round's simulated time equals the closed form within ``rel`` (uncontended runs:
    nothing else on the links or the GPUs' streams). With ``first_step`` only the first decode
    step's rounds count: in later steps a query that kept fetched copies also attends them at
    home, on the same stream, before its next fetched blocks can be attended."""
    rd = res.rounds
    if first_step and len(rd):
        rd = rd[rd["iteration"] == rd["iteration"].min()]
    assert len(rd), "no rounds to compare"
    err = np.abs(rd["sim_time"] - rd["cf_time"]) / rd["cf_time"]
    worst = float(err.max())
    assert worst <= rel, f"closed form off by {worst:.3g} (relative) in an uncontended run"


def check_steps(res, max_batch: int | None = None, tol: float = 1e-12) -> None:
    """Per GPU, its steps in iteration order one after another (each starts when the one before
    has ended, within ``tol`` [s], and ends no earlier than it starts), at most ``max_batch``
    decodes (if given; a pool loop's rows are micro-batches), one token per decode and per
    recompute after a preemption the step finished (at most one per preemption); over the run,
    every token generated is a first token or a step's: Σ ``tokens`` + first tokens =
    generated."""
    it = res.iterations
    if len(it):
        it = it.sort_values(["gpu", "iteration"], kind="stable")
        gpu = it["gpu"].astype(str).to_numpy()
        same = gpu[1:] == gpu[:-1]
        assert (np.diff(it["iteration"].to_numpy())[same] > 0).all(), \
            "a GPU's iterations repeat"
        start, end = it["started_at"].to_numpy(), it["finished_at"].to_numpy()
        assert (end >= start).all(), "a step ends before it starts"
        assert (start[1:][same] >= end[:-1][same] - tol).all(), "a GPU's steps overlap"
        batch = it["batch"].to_numpy()
        assert (it["tokens"].to_numpy() >= batch).all(), "a step's tokens miss its decodes"
        if max_batch is not None:
            assert (batch <= max_batch).all(), f"a step decodes more than {max_batch}"
    req = res.requests
    generated = int(req["tokens_generated"].sum())
    stepped = int(res.iterations["tokens"].sum())
    recomputed = stepped - int(res.iterations["batch"].sum())
    first = int((req["tokens_generated"] > 0).sum())
    preempted = int(res.summary.get("preemptions", 0))
    assert recomputed <= preempted, (
        f"{recomputed} tokens of recomputes after preemptions, but {preempted} preemptions")
    assert stepped + first == generated, (
        f"{generated} tokens generated, {stepped} made by steps (decodes and recomputes after "
        f"a preemption) and {first} first tokens")


def check_run(res, trace: pd.DataFrame) -> None:
    """All the checks that hold for every run (not the uncontended-only one)."""
    check_conservation(res, trace)
    check_ordering(res)
    check_bytes(res)
    check_rounds(res)
    check_steps(res)


# -- strategies --------------------------------------------------------------------------------

#: One catalog model per attention family: MLA, MLA + DSA (two), GQA.
MODEL_FAMILIES = ("deepseek-v3", "deepseek-v3.2", "glm-5", "llama-3.1-8b")


def small_scenario(topology: str = "single_node:gpus=2", *, scheme: str = "first_writer",
                   max_batch: int = 4, layer_groups: int = 2, weights_per_gpu: float = 40e9,
                   stack: str = "ibgda", home: str = "least_loaded",
                   serving: dict | None = None, model: str = "deepseek-v3.2",
                   reuse: str = "prefix", host_tier: bool = True, **engine) -> Scenario:
    """A small scenario (the trace is passed to ``run`` separately). ``weights_per_gpu`` [B]
    sets the KV capacity left on each 80 GB GPU; ``serving`` is a ``[serving]`` table;
    ``reuse`` the placement's reuse rule (``prefix``, ``span``, ``none``)."""
    return Scenario.from_dict({
        "name": "small", "stack": stack, "policies": ["route"],
        "topology": {"spec": topology},
        "model": {"name": model},
        "workload": {"kind": "trace", "trace": "<given>"},
        "placement": {"scheme": scheme, "weights_per_gpu": weights_per_gpu, "home": home,
                      "reuse": reuse, "host_tier": host_tier},
        "engine": {"max_batch": max_batch, "layer_groups": layer_groups, **engine},
        "serving": serving or {},
    })


def nudged(scenario: Scenario, rel: float) -> Scenario:
    """``scenario`` with its per-step host overhead moved by ``rel`` of itself: run on the exact
    engine, how far its answers move is the engine's own sensitivity to a hair (chaos), the
    yardstick for the fast engine's differences (``benchmarks/validate_fast.py --noise``)."""
    over = scenario.serving.overhead_time() * (1 + rel)
    return scenario.with_changes(serving=dataclasses.replace(scenario.serving,
                                                             step_overhead_time=over))


def repo_on(owner: int, gpus: int) -> int:
    """The smallest repository id whose blocks ``repo_affinity`` puts on GPU ``owner`` of
    ``gpus`` (the placement's stable hash)."""
    return int(np.flatnonzero(stable_hash(np.arange(10_000)) % np.uint64(gpus) == owner)[0])


def scenario_costs(scenario: Scenario) -> tuple:
    """``(kernel times, CostModel)`` as the decode-loop engine builds them for ``scenario``
    (its calibration, CUDA graphs, block size and GPUs), for composing a step's time by hand."""
    import topologies
    from simulator.costmodel import CostModel
    from simulator.gpu.calibration import run_kernels, run_stack
    from simulator.models import model

    cal = scenario.calibration_dict()
    kernels = run_kernels(cal, cuda_graphs=scenario.serving.cuda_graphs)
    graph = scenario.topology.build()
    return kernels, CostModel(model(scenario.model.name), graph,
                              run_stack(scenario.stack, cal), kernels=kernels,
                              block_tokens=scenario.placement.block_tokens,
                              instance_gpus=len(list(topologies.gpus(graph))))


@st.composite
def small_cases(draw, max_requests: int = 6, max_blocks: int = 40):
    """``(Scenario, trace)``: 2–4 GPUs on one node or 2 nodes of 8, a random placement, a few
    requests of ≤ ``max_blocks`` 64-token blocks sharing prefixes, small batches, folded layers,
    sometimes a KV capacity small enough to force eviction (and preemption), and a serving loop
    with small or large token budgets, with or without chunked prefill. The model ranges over
    the families — MLA (DeepSeek-V3), MLA + DSA (DeepSeek-V3.2, GLM-5), GQA (Llama 3.1 8B) —
    the reuse rule over ``prefix``, ``span`` and ``none``, the home over ``least_loaded`` and
    ``repo_affinity``, and the host tier on or off."""
    from simulator.testing.traces import request_traces

    trace = draw(request_traces(max_requests=max_requests, max_blocks=max_blocks, vocab=60,
                                block_tokens=st.just(64)))
    topo = draw(st.sampled_from(["single_node:gpus=2", "single_node:gpus=4", "dgx_h100:nodes=2"]))
    scheme = draw(st.sampled_from(["first_writer", "hash", "range", "repo_affinity",
                                   "replicate:2"]))
    # 80 GB × 0.9 − weights = KV room: 32 GB (≈ 7,100 blocks) or ≈ 0.9 GB (≈ 200 blocks)
    weights = draw(st.sampled_from([40e9, 71.1e9]))
    serving = {"max_num_batched_tokens": draw(st.sampled_from([96, 700, 8192])),
               "chunked_prefill": draw(st.booleans()),
               "kv_allocation": draw(st.sampled_from(["on_demand", "reserve"]))}
    sc = small_scenario(topo, scheme=scheme, weights_per_gpu=weights,
                        max_batch=draw(st.integers(1, 4)),
                        layer_groups=draw(st.sampled_from([1, 2, 3])),
                        stack=draw(st.sampled_from(["ideal", "nccl", "ibgda"])),
                        serving=serving,
                        model=draw(st.sampled_from(MODEL_FAMILIES)),
                        reuse=draw(st.sampled_from(["prefix", "span", "none"])),
                        home=draw(st.sampled_from(["least_loaded", "repo_affinity"])),
                        host_tier=draw(st.booleans()))
    return sc, trace
