"""Random valid scenarios through both engines: the search for bugs the written tests miss.

Each case is a scenario drawn at random from the whole space a user can write — topologies and
GPUs, models and selections, placements and host tiers, serving options, every workload kind,
deployments and pools — validated as ``kvfabric`` validates a file (a refusal is fine: it must be
one :class:`~simulator.errors.UserError` line) and then run:

- under its first policy on **both engines** (for a quarter of the cases checking the KV
  directory after every iteration, ``run(..., check_invariants=True)``), each run held to the
  invariants of
  :func:`simulator.testing.invariants.check_run` (every request once, completed or with a reason;
  timestamps in order; bytes sent = bytes delivered; phases add up; steps one at a time) and to
  the summary's own (:func:`summary_problems`: finite, non-negative metrics; decode tokens and
  unfinished requests that match the records); the two engines hold the same requests;
- under its other policy (if it names two) on its own engine, held to the same;
- again under the first policy on its own engine: the **same seed gives the same summary**;
- for some cases, through the **command line** (``kvfabric run FILE --json --no-write``): exit 0
  and strict JSON.

Three generators (``--kind``): ``plain`` (every section at once), ``wide`` (a ``[deployment]``,
other GPU kinds, oversubscribed or RoCE fabrics, odd block sizes, foldings, cuts and seeds) and
``pools`` (prefill units feeding EP deployments, and Lamina / homogeneous pools). A case that
runs past ``--timeout`` seconds is reported and skipped (a known slow shape: tiny prefill chunks
of long prompts on the exact engine, every chunk a step).

    python benchmarks/fuzz.py --seed 81 --cases 200
    python benchmarks/fuzz.py --seed 81 --cases 120 --kind wide --out wide81.jsonl

Prints a line per case (``ok``, ``REFUSED``, ``TIMEOUT``, ``PROBLEM``, ``ERROR``) and a last line
of counts; exit status 1 if any case broke an invariant or raised anything but a refusal.
``--out`` keeps every case (its scenario as a dict, ``Scenario.from_dict`` replays it) as JSON
lines. The draws are Python's ``random.Random(seed)``: the same seed, the same cases.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import tomli_w

from simulator import Scenario, run
from simulator.errors import UserError
from simulator.runner import check, load_trace
from simulator.testing.invariants import check_run

#: HBM [B] of the GPUs the plain generator puts on a single node (weights leave room for KV).
HBM = {"H100": 80e9, "H200": 141e9}
#: Models of each family the generators draw.
MLA_MODELS = ("deepseek-v3.2", "glm-5", "kimi-k2", "deepseek-v3")
GQA_MODELS = ("llama-3.1-8b", "llama-3-70b", "llama-33b")
POLICIES = ("route", "fetch", "local", "adaptive", "adaptive_static", "adaptive_live",
            "colocated")


# -- the generators: a scenario as the dict a TOML file parses to --------------------------------


def _topology(rng: random.Random, d: dict) -> str:
    """A topology for ``d``; returns the GPU kind of a single node (H100 elsewhere)."""
    kind = rng.choice(["single", "single", "dgx1", "dgx2", "fat"])
    gpu = "H100"
    if kind == "single":
        gpu = rng.choice(["H100", "H100", "H200"])
        d["topology"] = {"spec": f"single_node:gpus={rng.randint(1, 4)},gpu={gpu}"}
    elif kind == "dgx1":
        d["topology"] = {"preset": "dgx_h100", "nodes": 1}
    elif kind == "dgx2":
        d["topology"] = {"spec": "dgx_h100:nodes=2"}
    else:
        d["topology"] = {"spec": "fat_tree:k=4"}
    return gpu


def _placement(rng: random.Random, gpu: str) -> dict:
    pl = {"scheme": rng.choice(["first_writer", "hash", "range", "repo_affinity",
                                f"replicate:{rng.randint(1, 3)}"]),
          "home": rng.choice(["least_loaded", "repo_affinity"]),
          "reuse": rng.choice(["prefix", "prefix", "span", "none"])}
    if rng.random() < 0.3:
        pl["block_tokens"] = rng.choice([16, 32, 64, 128])
    pl["reserve_fraction"] = rf = rng.choice([0.0, 0.1, 0.5])
    pl["host_tier"] = rng.random() < 0.7
    if rng.random() < 0.4:
        pl["host_capacity"] = rng.choice([0.0, 1e8, 1e9, 1e12])
    if rng.random() < 0.5:  # weights that leave from 30 MB to 20 GB for KV
        room = rng.choice([3e7, 1e8, 2e8, 1e9, 5e9, 2e10])
        pl["weights_per_gpu"] = max(0.0, HBM[gpu] * (1 - rf) - room)
    else:
        pl["weights_per_gpu"] = rng.choice([0.0, 10e9, 16.06e9])
    return pl


def _serving(rng: random.Random) -> dict:
    sv: dict = {}
    if rng.random() < 0.5:
        sv["max_num_batched_tokens"] = rng.choice([16, 64, 512, 2048, 8192])
    if rng.random() < 0.3:
        sv["max_num_seqs"] = rng.randint(1, 8)
    if rng.random() < 0.5:
        sv["chunked_prefill"] = rng.random() < 0.5
    if rng.random() < 0.5:
        sv["kv_allocation"] = rng.choice(["reserve", "on_demand"])
    if rng.random() < 0.3:
        sv["cuda_graphs"] = rng.random() < 0.5
    if rng.random() < 0.2:
        sv["step_overhead_time"] = rng.choice([0.0, 0.001, 0.01])
    return sv


def _workload(rng: random.Random) -> dict:
    kind = rng.choice(["agentic", "agentic", "sessions", "mixed", "rag", "nested", "trace"])
    c = rng.choice
    if kind == "agentic":
        rt = c([1024, 4096, 16384])
        w = {"kind": "agentic", "agentic": dict(
            repo_tokens=rt, repo_min_tokens=min(rt, 512), repo_size_sigma=c([0.0, 0.5]),
            n_repos=rng.randint(1, 3), subagents=rng.randint(1, 4), turns_mean=c([1.0, 2.0]),
            output_tokens_mean=c([1.0, 4.0, 16.0, 64.0]), tool_tokens_mean=c([32.0, 256.0]),
            system_tokens=c([0, 256, 1024]), task_tokens=c([16, 256]),
            file_tokens=c([256, 2048]), task_rate=c([0.1, 0.5, 2.0]),
            duration_time=c([2.0, 10.0, 20.0]), causal=rng.random() < 0.5,
            arrival=c(["poisson", "bursty"]), file_order=c(["fixed", "per_agent"]),
            think_time_mean=c([0.0, 0.5, 3.0]), spawn_time_mean=c([0.0, 0.5]))}
    elif kind == "sessions":
        w = {"kind": "agentic", "agentic": dict(
            preset="copilot_2026", sessions=rng.randint(1, 4), session_rate=2.0,
            duration_time=10.0, system_tokens=512, subagent_system_tokens=256,
            instructions_tokens=64, task_tokens=64, user_tokens_mean=128.0,
            output_tokens_mean=c([2.0, 8.0]), tool_tokens_mean=256.0, edit_tokens_mean=32.0,
            summary_tokens=128, compact_tokens=c([2048, 8192]), repo_tokens=8192,
            file_tokens=256, n_repos=rng.randint(1, 3), turns_mean=1.5, batches_mean=1.5,
            spawn_fraction=c([0.0, 0.5]), think_time_mean=1.0, tool_time_mean=0.5)}
    elif kind == "mixed":
        w = {"kind": "mixed", "mixed": dict(
            duration_time=c([5.0, 10.0]), subagents=rng.randint(1, 3), task_rate=0.3,
            repo_tokens=c([2048, 8192]), agent_output_tokens_mean=4.0,
            agent_tool_tokens_mean=64.0, private_rate=0.3, private_tokens=c([1024, 4096]),
            private_output_tokens_mean=4.0, private_user_tokens_mean=64.0,
            private_think_time_mean=0.5, private_affinity=rng.random() < 0.5, chat_rate=0.5,
            chat_tokens_mean=128.0, chat_output_tokens_mean=4.0)}
    elif kind == "rag":
        nd = rng.randint(2, 20)
        w = {"kind": "spans", "spans": dict(
            shape="rag", duration_time=5.0, request_rate=2.0, n_documents=nd,
            docs_per_request=rng.randint(1, min(nd, 5)), doc_tokens=c([64, 256, 1000]),
            permute=rng.random() < 0.5, system_tokens=c([0, 64, 512]), question_tokens=32,
            output_tokens_mean=c([1.0, 4.0, 16.0]))}
    elif kind == "nested":
        w = {"kind": "spans", "spans": dict(
            shape="nested", duration_time=10.0, request_rate=0.5,
            candidates=rng.randint(1, 4), temperature=c([0.0, 0.7]), system_tokens=64,
            task_tokens=128, answer_tokens=c([4, 32]), judge_tokens=16,
            judge_output_tokens=c([1, 4]), reuse_generated=rng.random() < 0.5)}
    else:
        w = {"kind": "trace", "trace": c(["mooncake_conversation", "mooncake_synthetic",
                                          "azure_llm_2023_code", "azure_llm_2023_conv"]),
             "time_scale": c([1.0, 0.01, 0.001])}
    closed = kind in ("sessions", "nested", "mixed") or w.get("agentic", {}).get("causal")
    if rng.random() < 0.2 and not closed:
        w["concurrency"] = rng.randint(1, 4)
    return w


def draw_plain(rng: random.Random) -> dict:
    """A scenario touching every section: topology, model, policies, placement, engine,
    serving, workload; ``_cli``: also run it through the command line; ``_inv``: its runs on
    both engines check the KV directory after every iteration (``check_invariants``)."""
    d: dict = {"name": "fuzz", "seed": rng.randrange(5),
               "stack": rng.choice(["nccl", "ibgda", "ideal"])}
    gpu = _topology(rng, d)
    model = rng.choice(MLA_MODELS + GQA_MODELS)
    sel = rng.choice(["auto", "auto", "dense", "dsa", "nsa"])
    if model in GQA_MODELS:
        sel = rng.choice(["auto", "dense"])
    elif model in ("kimi-k2", "deepseek-v3") and sel == "dsa":
        sel = rng.choice(["auto", "nsa", "dense"])
    d["model"] = {"name": model, "selection": sel}
    first = rng.choice(POLICIES)
    d["policies"] = [first] + ([rng.choice([p for p in POLICIES if p != first])]
                               if rng.random() < 0.3 else [])
    d["placement"] = _placement(rng, gpu)
    d["engine"] = {"max_batch": rng.choice([1, 2, 4, 8, 32]),
                   "layer_groups": (rng.choice([0, 1, 2]) if model == "llama-3.1-8b"
                                    else rng.randint(1, 4)),
                   "mode": rng.choice(["exact", "fast"])}
    if rng.random() < 0.3:
        d["engine"]["duration"] = rng.choice([0.5, 2.0, 5.0, 20.0])
    d["engine"]["max_requests"] = rng.choice([rng.randint(1, 14), rng.randint(10, 40)])
    if rng.random() < 0.6:
        d["serving"] = _serving(rng)
    d["workload"] = _workload(rng)
    d["_cli"] = rng.random() < 0.15
    d["_inv"] = rng.random() < 0.25
    return d


def _deployment(rng: random.Random, dp: int) -> dict:
    """The optional keys of a ``[deployment]`` of ``dp`` attention ranks."""
    dep: dict = {"attention_dp": dp}
    if rng.random() < 0.5:
        dep["two_batch_overlap"] = rng.random() < 0.5
    if rng.random() < 0.3:
        dep["popularity"] = "zipf"
    if rng.random() < 0.3:
        dep["moe_on_fabric"] = False
    if rng.random() < 0.3:
        dep["moe_kernels"] = rng.choice(["normal", "low_latency"])
    if rng.random() < 0.3:
        dep["redundant_experts"] = rng.choice([0, dp, 2 * dp])
    return dep


def draw_wide(rng: random.Random) -> dict:
    """:func:`draw_plain`, then one of: a ``[deployment]`` (MoE models), another GPU kind, an
    oversubscribed / RoCE / Lamina fabric; and odd block sizes, foldings, calibrations, cuts and
    seeds."""
    d = draw_plain(rng)
    r = rng.random()
    if r < 0.3 and d["model"]["name"] in MLA_MODELS:
        nodes = rng.choice([1, 2])
        d["topology"] = {"spec": f"dgx_h100:nodes={nodes}"}
        dp = rng.choice([2, 4, 8]) if nodes == 1 else rng.choice([4, 8, 16])
        dep = _deployment(rng, dp)
        dep["attention_tp"] = tp = rng.choice([1, 1, 2])
        used, total = dp * tp, nodes * 8
        if used * 2 <= total and rng.random() < 0.4:
            dep["instances"] = 2
            used *= 2
        if rng.random() < 0.4 and used < total:
            dep["prefill"] = {"attention_dp": rng.choice([x for x in (1, 2, 4)
                                                          if x <= total - used]),
                              "moe_kernels": rng.choice(["normal", "low_latency"])}
            if rng.random() < 0.5:
                dep["transfer"] = {"layerwise": rng.random() < 0.5}
        elif rng.random() < 0.3:
            dep["external_prefill"] = True
        d["deployment"] = dep
        d["placement"].pop("weights_per_gpu", None)
        if rng.random() < 0.5:
            d["placement"]["weights_per_gpu"] = rng.choice([0.0, 20e9, 60e9])
    elif r < 0.45:
        gpu = rng.choice(["H20", "A100", "B200", "H200"])
        d["topology"] = {"spec": f"single_node:gpus={rng.randint(1, 4)},gpu={gpu}"}
        d["placement"]["weights_per_gpu"] = rng.choice([0.0, 10e9, 40e9])
    elif r < 0.55:
        d["topology"] = {"spec": rng.choice([
            "dgx_h100:nodes=2,oversubscription=4.0", "dgx_h100:nodes=2,spines=1,nic=roce400",
            "lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=2"])}
    if rng.random() < 0.25:
        sparse = d["model"]["selection"] != "dense" and d["model"]["name"] in MLA_MODELS
        d["placement"]["block_tokens"] = rng.choice([3, 7, 16, 16, 100, 256] if sparse
                                                    else [16, 100, 256])
    if rng.random() < 0.2:
        d["engine"]["layer_groups"] = rng.choice([3, 5, 7, 13, 61, 80, 200])
    if rng.random() < 0.2:
        d["calibration"] = {"profile": rng.choice(["roofline", "measured"])}
    if rng.random() < 0.15:
        d["engine"]["duration"] = rng.choice([1e-6, 1e-3, 0.05])
    if rng.random() < 0.1:
        d["seed"] = rng.choice([2**31, 2**40, 12345])
    return d


def draw_pools(rng: random.Random) -> dict:
    """:func:`draw_plain`'s workload and serving on pools: half EP deployments with their own
    prefill unit (or external prefill), half Lamina / homogeneous pools (``disaggregated``,
    ``homogeneous``)."""
    d = draw_plain(rng)
    d["placement"].pop("weights_per_gpu", None)
    d["placement"]["reserve_fraction"] = rng.choice([0.0, 0.1])
    if rng.random() < 0.5:
        m = rng.choice(MLA_MODELS)
        d["model"] = {"name": m, "selection": rng.choice(
            ["auto", "dense"] + (["dsa"] if m in ("deepseek-v3.2", "glm-5") else ["nsa"]))}
        pre = rng.random() < 0.4
        d["topology"] = {"spec": f"dgx_h100:nodes={4 if pre else 2}"}
        dep = _deployment(rng, rng.choice([12, 16]) if m != "kimi-k2" else 16)
        if pre:
            dep["prefill"] = {"attention_dp": 16,
                              "moe_kernels": rng.choice(["normal", "low_latency"]),
                              "two_batch_overlap": rng.random() < 0.5}
            if rng.random() < 0.5:
                dep["transfer"] = {"layerwise": rng.random() < 0.5}
        elif rng.random() < 0.4:
            dep["external_prefill"] = True
        if rng.random() < 0.2:
            dep["dense_layers"] = rng.choice([0, 1, 3])
        d["deployment"] = dep
        d["engine"]["layer_groups"] = rng.randint(1, 3)
        return d
    m = rng.choice(["llama-3.1-8b", "llama-3-70b", "llama-33b", "deepseek-v3.2"])
    d["model"] = {"name": m, "selection": "auto" if m != "deepseek-v3.2"
                  else rng.choice(["auto", "dense", "dsa"])}
    if m == "deepseek-v3.2":
        d["topology"] = {"spec": "lamina_h100_h20:h100_nodes=2,h20_nodes=1,gpus_per_node=8"}
        dis = {"model_gpus": 12, "attention_gpus": rng.choice([2, 4, 8]), "micro_batches": 2,
               "attention_split": rng.choice(["requests", "auto"]), "baseline_gpus": 16,
               "baseline_tp": 16}
    else:
        d["topology"] = {"spec": "lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4"}
        dis = {"model_gpus": rng.choice([2, 4]), "attention_gpus": rng.choice([1, 2, 4]),
               "micro_batches": rng.choice([2, 3]),
               "attention_split": rng.choice(["auto", "heads", "requests"]),
               "baseline_gpus": 4, "baseline_tp": rng.choice([1, 2, 4])}
    dis["prefill"] = rng.choice(["external", "local"])
    if rng.random() < 0.4:
        dis["early_q"] = rng.random() < 0.5
    if rng.random() < 0.3:
        dis["max_batch"] = rng.choice([0, 1, 4])
    if rng.random() < 0.3:
        dis["baseline_max_batch"] = rng.choice([0, 1, 4])
    d["disaggregation"] = dis
    d["policies"] = rng.sample(["disaggregated", "homogeneous"], rng.randint(1, 2))
    return d


KINDS = {"plain": draw_plain, "wide": draw_wide, "pools": draw_pools}


# -- the checks ----------------------------------------------------------------------------------


def summary_problems(res) -> list[str]:
    """What a result's summary says that its records or arithmetic deny: a metric infinite,
    negative, or NaN although requests completed (NaN is "no data": nothing completed);
    decode tokens other than the requests' sum; unfinished requests miscounted."""
    s, req = res.summary, res.requests
    out = []
    for key, value in s.items():
        if isinstance(value, float) and math.isinf(value):
            out.append(f"summary {key} is infinite")
    done = int(req["completed"].sum())
    for key in ("ttft_p50", "ttft_p99", "throughput_tokens_per_s", "sim_time", "bytes_moved"):
        value = s.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value) and not done
                             and key not in ("sim_time", "bytes_moved")):
            continue
        if not (isinstance(value, int | float) and value >= 0):
            out.append(f"summary {key} = {value!r} with {done} requests completed")
    if "decode_tokens" in s and int(req["tokens_generated"].sum()) != s["decode_tokens"]:
        out.append(f"summary decode_tokens {s['decode_tokens']} against "
                   f"{int(req['tokens_generated'].sum())} generated")
    unfinished = sum(s.get("unfinished", {}).values())
    if unfinished != len(req) - done:
        out.append(f"summary counts {unfinished} unfinished, the records {len(req) - done}")
    if (req["tokens_generated"] > req["output_tokens"]).any():
        out.append("a request generated more tokens than it asked for")
    return out


def problems(res, trace, tag: str) -> list[str]:
    """Every invariant ``res`` breaks (:func:`check_run`, :func:`summary_problems`), each
    prefixed with ``tag``."""
    out = []
    try:
        check_run(res, trace)
    except AssertionError as e:
        out.append(f"{e}")
    out += summary_problems(res)
    return [f"{tag}: {p}" for p in out]


def _same(a: dict, b: dict) -> dict:
    """The summary keys on which ``a`` and ``b`` differ, ``wall_time`` aside (compared as JSON
    text: NaN equal to NaN, inside lists too)."""
    def text(x):
        return json.dumps(x, sort_keys=True, default=str)
    return {k: (a.get(k), b.get(k)) for k in (set(a) | set(b)) - {"wall_time"}
            if text(a.get(k)) != text(b.get(k))}


def _cli(d: dict, timeout: float) -> list[str]:
    """Run ``d`` through ``kvfabric run FILE --json --no-write``: exit 0 and strict JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fuzz.toml")
        with open(path, "wb") as f:
            tomli_w.dump({k: v for k, v in d.items() if not k.startswith("_")}, f)
        cp = subprocess.run(["kvfabric", "run", path, "--json", "--no-write", "--jobs", "1"],
                            capture_output=True, text=True, timeout=timeout)
    if cp.returncode != 0:
        return [f"cli: exit {cp.returncode}: {cp.stderr[-400:]}"]

    def strict(c):
        raise ValueError(f"not strict JSON: {c}")
    try:
        json.loads(cp.stdout, parse_constant=strict)
    except ValueError as e:
        return [f"cli: {e}"]
    return []


class _Timeout(Exception):
    pass


def _alarm(*_) -> None:
    raise _Timeout


def run_case(d: dict, timeout: int = 90) -> dict:
    """Validate and run one drawn scenario (module docstring); ``{"status", "problems",
    "detail", "time"}``, status one of ``ok``, ``REFUSED``, ``TIMEOUT``, ``PROBLEM``,
    ``ERROR``."""
    out: dict = {"status": "ok", "problems": [], "detail": ""}
    t = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        sc = Scenario.from_dict({k: v for k, v in copy.deepcopy(d).items()
                                 if not k.startswith("_")})
        check(sc, tuple(d["policies"]))  # what run() checks before it loads a trace itself
        trace = load_trace(sc, sc.seed)
        first, others = d["policies"][0], d["policies"][1:]
        probs = out["problems"]
        for other in others:
            probs += problems(run(sc, other, trace=trace), trace, other)
        res = {}
        for engine in ("exact", "fast"):
            res[engine] = run(sc, first, trace=trace, engine=engine,
                              check_invariants=bool(d.get("_inv")))
            probs += problems(res[engine], trace, f"{first} {engine}")
        if set(res["exact"].requests["request_id"]) != set(res["fast"].requests["request_id"]):
            probs.append("the engines hold different requests")
        mode = d["engine"]["mode"]
        again = _same(res[mode].summary, run(sc, first, trace=trace, engine=mode).summary)
        if again:
            probs.append(f"{first} {mode} again: {again}")
        if d.get("_cli"):
            probs += _cli(d, timeout)
        if probs:
            out["status"] = "PROBLEM"
    except UserError as e:
        out["status"], out["detail"] = "REFUSED", str(e)
        if "\n" in str(e).strip():
            out["status"] = "PROBLEM"
            out["problems"].append(f"a refusal of more than one line: {e}")
    except _Timeout:
        out["status"] = "TIMEOUT"
    except Exception as e:  # noqa: BLE001 (anything but a refusal is a finding)
        out["status"] = "ERROR"
        out["detail"] = "".join(traceback.format_exception(e)[-6:])
    finally:
        signal.alarm(0)
    out["time"] = round(time.perf_counter() - t, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="the draws' seed")
    ap.add_argument("--cases", type=int, default=50, help="cases to draw")
    ap.add_argument("--start", type=int, default=0, help="the first case to run (resume)")
    ap.add_argument("--kind", choices=sorted(KINDS), default="plain", help="the generator")
    ap.add_argument("--timeout", type=int, default=90, help="seconds a case may take")
    ap.add_argument("--out", help="also write every case as a JSON line here")
    args = ap.parse_args(argv)
    if args.cases < 1 or args.timeout < 1 or args.start < 0:
        ap.error("--cases and --timeout must be at least 1, --start at least 0")
    rng = random.Random(args.seed)
    cases = [KINDS[args.kind](rng) for _ in range(args.cases)]
    log = open(args.out, "a") if args.out else None  # noqa: SIM115 (a line per case, flushed)
    counts: dict[str, int] = {}
    for i in range(args.start, args.cases):
        o = run_case(cases[i], args.timeout)
        counts[o["status"]] = counts.get(o["status"], 0) + 1
        print(i, o["status"], o["time"], "; ".join(o["problems"])[:600],
              o["detail"].strip()[-400:], flush=True)
        if log:
            log.write(json.dumps({"case": i, **o, "scenario": cases[i]}) + "\n")
            log.flush()
    if log:
        log.close()
    print(" ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 1 if counts.get("PROBLEM") or counts.get("ERROR") else 0


if __name__ == "__main__":
    sys.exit(main())
