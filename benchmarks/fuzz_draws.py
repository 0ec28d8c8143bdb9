"""The scenarios :mod:`fuzz` draws: random, valid-looking ``kvfabric`` scenarios as the dicts a
TOML file parses to, from the whole space a user can write.

Three generators: :func:`draw_plain` (every section at once), :func:`draw_wide` (a
``[deployment]``, other GPU kinds, oversubscribed / RoCE / Lamina fabrics, odd block sizes,
foldings, cuts and seeds) and :func:`draw_pools` (prefill units feeding EP deployments; Lamina
and homogeneous pools). Keys starting with ``_`` are instructions to :mod:`fuzz`, not scenario
fields. The draws are Python's ``random.Random``: the same seed, the same scenarios. Many draws
are refused by the validation — that is part of what is tested (one line, naming the field).
"""

from __future__ import annotations

import copy
import random

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


def scenario_fields(d: dict) -> dict:
    """The scenario of a draw: its fields without the ``_`` instructions to :mod:`fuzz`, as a
    copy (what ``Scenario.from_dict`` and a TOML file get)."""
    return copy.deepcopy({k: v for k, v in d.items() if not k.startswith("_")})
