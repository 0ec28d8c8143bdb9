"""DeepSeek-shaped deployments: decode throughput against DeepSeek's published figures, and what
the all-to-all and the prefill→decode transfers do to the route / fetch / adaptive verdict.

Three parts (docs/deployments.md quotes their output):

``throughput`` — the decode unit of ``scenarios/deepseek_v32_ep.toml`` (EP144 over 18 H800-like
nodes, prompts prefilled elsewhere) at a full batch of ``B`` requests per GPU, on a
DeepSeek-shaped workload (:func:`deepseek_trace`: prompts and outputs whose means match
DeepSeek's day-6 statistics — 3.6 input tokens per output token, ~5k tokens of context per
output token); every rank's KV is its own (DeepSeek's decode ranks share none). The decode rate
is measured over the steps after the first (every request decoding) and reported per GPU and per
node beside DeepSeek's 14.8k output tokens/s per H800 node (deepseek-ai/open-infra-index, day 6).

``verdict`` — the workload of ``scenarios/agentic_repo.toml`` (32 sub-agents sharing one
repository, here of 64k tokens, DeepSeek-V3.2 on 2 DGX H100 nodes) under route, fetch and adaptive,
five ways: as kvfabric ran it before deployments (one instance, no MoE traffic); as an EP16
instance (its ranks in lockstep, the all-to-all on the fabric); with two-batch overlap, its
all-to-alls taking their closed-form time but no link (an idle fabric for the KV rounds); the same
with the all-to-alls on the fabric; and prefill/decode disaggregated (an EP16 prefill unit on 2
more nodes handing KV to the decode unit over RDMA). Printed: TTFT and TBT p50/p99, the rounds'
closed-form error p99, adaptive's choices, the bytes per traffic class.

``rounds`` — one route and one fetch round between two nodes, alone and while an EP16 group's
all-to-alls (64 tokens per rank) keep the same NICs busy: their times and which is cheaper, idle
and loaded, for a fetched block used once or 16 times.

    python benchmarks/deepseek_deployment.py rounds                 # seconds
    python benchmarks/deepseek_deployment.py verdict                # ~2–3 min on 2 cores
    python benchmarks/deepseek_deployment.py throughput --batch 32  # ~1–2 min per model
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: DeepSeek's day-6 figures (deepseek-ai/open-infra-index): output tokens/s per H800 node during
#: decoding, input tokens/s per node during prefill, input and output tokens of 24 h, the share of
#: input tokens that hit the on-disk KV cache, and the mean KV length per output token.
DEEPSEEK = {"decode_tokens_per_s_per_node": 14_800.0, "prefill_tokens_per_s_per_node": 73_700.0,
            "input_tokens": 608e9, "output_tokens": 168e9, "cache_hit": 0.563,
            "kv_per_output_token": 4_989.0, "output_speed": (20.0, 22.0)}


def deepseek_trace(n: int, seed: int = 0, block_tokens: int = 64, prefixes: int = 0,
                   prefix_tokens: int = 2048, unique=(3072, 6144), output=(512, 2048)):
    """``n`` requests shaped like DeepSeek's day-6 statistics: prompts of ``prefix_tokens`` from
    one of ``prefixes`` shared prefixes (none by default) plus uniform(``unique``) own tokens,
    outputs uniform(``output``): with the defaults a mean prompt of 4,608 tokens and output of
    1,280 (3.6 input tokens per output token, as 608 B / 168 B) and a mean decode context of
    ~5.2k tokens (DeepSeek: 4,989 KV tokens per output token). All arrive at once (closed loop)."""
    from workloads.schema import make_trace

    rng = np.random.default_rng([seed, 16])
    uniq = rng.integers(unique[0], unique[1] + 1, n)
    out = rng.integers(output[0], output[1] + 1, n)
    which = rng.integers(0, max(prefixes, 1), n)
    pre = prefix_tokens if prefixes else 0
    inp = pre + uniq
    pb = pre // block_tokens
    blocks, nxt = [], 10_000_000
    for i in range(n):
        nb = -(-int(inp[i]) // block_tokens)
        own = np.arange(nb - pb) + nxt
        nxt += nb - pb
        blocks.append(np.concatenate([np.arange(pb) + which[i] * pb + 1, own]))
    return make_trace(arrival_at=np.zeros(n), input_tokens=inp, output_tokens=out,
                      block_ids=blocks, block_tokens=block_tokens, source="deepseek-shaped")


# -- throughput ---------------------------------------------------------------------------------

def throughput(model: str, batch: int, steps: int, two_batch: bool, policy: str = "route"):
    """The decode unit at ``batch`` requests per GPU; its decode rate over ``steps`` steps."""
    from simulator import Scenario, run

    sc = Scenario.load(ROOT / "scenarios" / "deepseek_v32_ep.toml")
    n = 144 * batch
    dep = dataclasses.replace(sc.deployment, decode=dataclasses.replace(
        sc.deployment.decode, two_batch_overlap=two_batch))
    sc = sc.with_changes(
        model=dataclasses.replace(sc.model, name=model),
        workload=dataclasses.replace(sc.workload, concurrency=n),
        engine=dataclasses.replace(sc.engine, max_requests=n, max_batch=max(batch, 1),
                                   duration=None),
        deployment=dep)
    tr = deepseek_trace(n)
    # stop after ``steps`` decode steps: simulate until then (one step ~ TBT; estimated first)
    probe = run(sc.with_changes(engine=dataclasses.replace(sc.engine, duration=0.4)), policy,
                trace=tr)
    it = probe.iterations
    step = it.groupby("iteration")["finished_at"].first().diff().dropna()
    per = float(step.iloc[-1]) if len(step) else 0.2
    wall0 = time.perf_counter()
    res = run(sc.with_changes(engine=dataclasses.replace(sc.engine,
                                                         duration=per * (steps + 2))),
              policy, trace=tr)
    wall = time.perf_counter() - wall0
    it = res.iterations
    by = it.groupby("iteration").agg(start=("started_at", "first"), end=("finished_at", "first"),
                                     tokens=("tokens", "sum"))
    dec = by.iloc[1:]  # the first step admits (first tokens), the rest decode everyone
    rate = float(dec["tokens"].sum() / (dec["end"].max() - dec["start"].min()))
    m = res.extras["moe"]
    moe_share = float((m[["dispatch_time", "expert_time", "combine_time", "post_time"]]
                       .sum(axis=1) * m["layers"]).sum() / max(len(m["lane"].unique()), 1)
                      / max(dec["end"].max() - by["start"].min(), 1e-12))
    return {"model": model, "batch_per_gpu": batch, "two_batch_overlap": two_batch,
            "steps": len(dec), "tbt": float((dec["end"] - dec["start"]).median()),
            "tokens_per_s_per_gpu": rate / 144, "tokens_per_s_per_node": rate / 18,
            "deepseek_per_node": DEEPSEEK["decode_tokens_per_s_per_node"],
            "moe_time_share": moe_share, "bytes_by_class": res.extras["bytes_by_class"],
            "wall_s": wall}


# -- verdict ------------------------------------------------------------------------------------

def verdict(policies=("route", "fetch", "adaptive"), repo_tokens: int = 65_536):
    """``scenarios/agentic_repo.toml`` five ways (see the module docstring); rows of figures."""
    from simulator import Scenario, run
    from simulator.deployment import validate_deployment

    base = Scenario.load(ROOT / "scenarios" / "agentic_repo.toml")
    # a 64k-token repository: an EP16 rank holds 60 GB of weights (17 routed experts per layer),
    # which leaves too little HBM for the default's 256k-token repository in bf16
    agentic = dict(base.workload.agentic)
    agentic["repo_tokens"] = repo_tokens
    base = base.with_changes(workload=dataclasses.replace(
        base.workload, agentic=tuple(sorted(agentic.items()))))
    ep = {"attention_dp": 16, "redundant_experts": 16}
    tbo = {**ep, "two_batch_overlap": True}
    ways = {
        "before (no MoE traffic)": base,
        "EP16": base.with_changes(deployment=validate_deployment(ep)),
        "EP16 + overlap, a2a off the fabric": base.with_changes(deployment=validate_deployment(
            {**tbo, "moe_on_fabric": False})),
        "EP16 + overlap, a2a on the fabric": base.with_changes(
            deployment=validate_deployment(tbo)),
        "PD: EP16 prefill + EP16 decode": base.with_changes(
            topology=dataclasses.replace(base.topology, nodes=4),
            deployment=validate_deployment({**tbo, "prefill": {"attention_dp": 16,
                                                               "redundant_experts": 16}})),
    }
    rows = []
    for way, sc in ways.items():
        for p in policies:
            t0 = time.perf_counter()
            res = run(sc, p)
            s = res.summary
            rows.append({"way": way, "policy": p, "completed": s["completed"],
                         "ttft_p50": s["ttft_p50"], "ttft_p99": s["ttft_p99"],
                         "tbt_p50": s["tbt_p50"], "tbt_p99": s["tbt_p99"],
                         "cf_error_p99": s["closed_form_error_p99"],
                         "options": s.get("options", {}),
                         "bytes_by_class": res.extras["bytes_by_class"],
                         "wall_s": time.perf_counter() - t0})
            print(f"  {way:34s} {p:9s} TBT p50 {s['tbt_p50'] * 1e3:8.2f} ms  p99 "
                  f"{s['tbt_p99'] * 1e3:8.2f} ms  TTFT p50 {s['ttft_p50']:.3f} s  "
                  f"cf err p99 {s['closed_form_error_p99']:.1%}  {s.get('options', {})}",
                  file=sys.stderr)
    return rows


# -- rounds --------------------------------------------------------------------------------------

def rounds(blocks=(4, 16, 64, 256, 1024), reuses=(1, 16), tokens_per_rank: int = 64):
    """One route and one fetch round n0/gpu0 ↔ n1/gpu0 (DeepSeek-V3.2, ibgda), alone and while
    an EP16 group exchanges back to back on the same fabric (dispatch, combine, dispatch …; 64
    tokens per rank, low-latency kernels) — the NICs as busy as an all-to-all can keep them.
    Fetched bytes are divided by the reuse ``R`` (a block fetched once serves ``R`` steps), as
    the closed form does; kernels are charged as alone (no GPU contention here)."""
    import simpy

    import topologies
    from simulator import hardware
    from simulator.costmodel import CostModel, moe
    from simulator.costmodel.experts import popularity
    from simulator.costmodel.rank_kernels import RankKernels
    from simulator.engine.exchange import MoEReplay
    from simulator.gpu.profiled import default_kernels
    from simulator.gpu.streams import Stream
    from simulator.models import model
    from simulator.network import Fabric
    from simulator.network.paths import paths_among

    arch = model("deepseek-v3.2")
    g = topologies.build("dgx_h100", nodes=2)
    names = list(topologies.gpus(g))
    cm = CostModel(arch, g, "ibgda")
    rk = RankKernels(default_kernels(), hardware.gpu("H100"), arch)
    ep = moe.ExpertParallel(names, g, arch, popularity("uniform", 256, None), 17,
                            "low_latency", [rk] * 16, paths_among(g, names))
    plan = ep.layer(np.random.default_rng(0), np.full(16, tokens_per_rank))
    src, dst = "n0/gpu0", "n1/gpu0"

    def round_time(option: str, k: float, reuse: float, loaded: bool) -> float:
        msgs = cm.bulk_messages(option, src, dst, k, reuse=reuse)
        cf = getattr(cm, option)(src, dst, k, reuse=reuse)
        env = simpy.Environment()
        fab = Fabric(env, g, "ibgda")
        t = [None]
        if loaded:
            replay = MoEReplay(env, fab, ep, [Stream(env) for _ in names])

            def a2a():
                while t[0] is None:
                    yield replay.exchange(plan.dispatch, "dispatch")
                    yield replay.exchange(plan.combine, "combine")

            env.process(a2a())

        def go():
            for a, b, nbytes in msgs:  # the round's messages in turn
                yield fab.transfer(a, b, nbytes)
            t[0] = env.now

        env.process(go())
        env.run()
        return t[0] + cf.compute + cf.merge

    def crossover(reuse: float, loaded: bool) -> float | None:
        """Blocks per query where route and fetch cost the same (bisection; None if none in
        [1, 4096])."""
        def diff(k):
            return round_time("route", k, reuse, loaded) - round_time("fetch", k, reuse, loaded)

        lo, hi = 1.0, 4096.0
        if (diff(lo) > 0) == (diff(hi) > 0):
            return None
        for _ in range(30):
            mid = (lo * hi) ** 0.5
            if (diff(mid) > 0) == (diff(lo) > 0):
                lo = mid
            else:
                hi = mid
        return (lo * hi) ** 0.5

    out = []
    for reuse in reuses:
        for k in blocks:
            row = {"blocks": k, "reuse": reuse}
            for option in ("route", "fetch"):
                for loaded in (False, True):
                    row[f"{option}_{'loaded' if loaded else 'idle'}"] = round_time(
                        option, k, reuse, loaded)
            for when in ("idle", "loaded"):
                row[f"winner_{when}"] = ("route" if row[f"route_{when}"] < row[f"fetch_{when}"]
                                         else "fetch")
            out.append(row)
    cross = {f"R={r}": {"idle": crossover(r, False), "loaded": crossover(r, True)}
             for r in reuses}
    return {"dispatch_time": ep.exchange_time(plan.dispatch, "dispatch"),
            "combine_time": ep.exchange_time(plan.combine, "combine"),
            "dispatch_bytes": plan.dispatch_bytes, "rows": out, "crossover_blocks": cross}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("throughput", "verdict", "rounds"))
    ap.add_argument("--models", default="deepseek-v3,deepseek-v3.2")
    ap.add_argument("--batch", type=int, default=32, help="requests per decode GPU")
    ap.add_argument("--steps", type=int, default=20, help="decode steps measured")
    ap.add_argument("--no-overlap", action="store_true", help="without two-batch overlap")
    ap.add_argument("--json", dest="json_path", help="also write the results here")
    args = ap.parse_args(argv)
    if args.part == "throughput":
        out = [throughput(m, args.batch, args.steps, not args.no_overlap)
               for m in args.models.split(",")]
        for r in out:
            print(f"{r['model']:14s} B={r['batch_per_gpu']:3d}/GPU  TBT {r['tbt'] * 1e3:6.1f} ms"
                  f"  {r['tokens_per_s_per_gpu']:7.0f} tok/s/GPU  "
                  f"{r['tokens_per_s_per_node']:8.0f} tok/s/node  (DeepSeek "
                  f"{r['deepseek_per_node']:.0f})  MoE {r['moe_time_share']:.0%} of the step  "
                  f"[{r['wall_s']:.0f} s]")
    elif args.part == "verdict":
        out = verdict()
    else:
        out = rounds()
        print(f"EP16 exchange alone: dispatch {out['dispatch_time'] * 1e6:.1f} µs, combine "
              f"{out['combine_time'] * 1e6:.1f} µs ({out['dispatch_bytes'] / 1e6:.1f} MB out)")
        for r in out["rows"]:
            print(f"R={r['reuse']:2d} {r['blocks']:5d} blocks  route {r['route_idle'] * 1e6:7.1f} → "
                  f"{r['route_loaded'] * 1e6:7.1f} µs   fetch {r['fetch_idle'] * 1e6:7.1f} → "
                  f"{r['fetch_loaded'] * 1e6:7.1f} µs   winner {r['winner_idle']} → "
                  f"{r['winner_loaded']}")
        for reuse, c in out["crossover_blocks"].items():
            print(f"{reuse}: route = fetch at {c['idle']} blocks idle, {c['loaded']} loaded")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
