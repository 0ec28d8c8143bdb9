"""Bad input, as a new user would give it: every case ends in exit status 2 and exactly one line
on stderr naming the file, field or option at fault — no traceback, and nothing written (the
folder the command runs in is byte-for-byte what it was). Then the runs that are *not* errors:
an empty or degenerate run is a complete result, and Ctrl-C stops a sweep within two seconds.

:data:`CASES` is the table: one :class:`Case` per bad input, in-process through
:func:`simulator.cli.main`. A new command (``kernel``) or scenario section joins it with a line.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from clitools import SMALL, run_main

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = (ROOT / "scenarios" / "agentic_repo.toml").read_text()
LAMINA = (ROOT / "scenarios" / "lamina_llama3_70b.toml").read_text()
RAG = (ROOT / "scenarios" / "rag_spans.toml").read_text()
NESTED = (ROOT / "scenarios" / "nested_generation.toml").read_text()
COPILOT = (ROOT / "scenarios" / "copilot_agents.toml").read_text()

#: tests/clitools.SMALL over a three-line Mooncake trace ``t.jsonl``, routing and fetching.
TINY = SMALL.format(name="tiny", top='policies = ["route", "fetch"]').replace(
    'trace = "tiny.parquet"', 'trace = "t.jsonl"')
LINE = '{"timestamp": %d, "input_length": 3000, "output_length": 4, "hash_ids": [%s]}\n'
TRACE = "".join(LINE % (i * 10, ", ".join(str(100 * i + b) for b in range(6))) for i in range(3))
SWEEP = """
[sweep]
name = "s"
kind = "run"
base = "tiny.toml"
[grid]
"""
TWO_GPUS = """
[[nodes]]
name = "n0/gpu0"
kind = "gpu"
gpu = "H100"
[[nodes]]
name = "n0/gpu1"
kind = "gpu"
gpu = "H100"
[[links]]
src = "n0/gpu0"
dst = "n0/gpu1"
kind = "nvlink"
latency = 1e-6
"""
CSV = "batch,tokens,seconds\n1,1024,1.0e-5\n2,1024,1.5e-5\n4,1024,2.4e-5\n"
PING = "bytes,seconds\n1024,2.1e-6\n65536,3.4e-6\n1048576,2.3e-5\n"  # ping-pong: ~50 GB/s
AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,374,44\n"
# an H200 GEMM table (calibration/h200/gemm.csv's columns), its second row's dtype and time open
GEMM = ("model,op,dtype,m,n,k,time_s\n"
        "l,qkv,bf16,1,10240,8192,4.5e-05\n"
        "l,qkv,%s,8,10240,8192,%s\n"
        "l,qkv,bf16,64,10240,8192,5.1e-05\n")


#: The shipped H200 kernel profile, its measurements found from anywhere.
H200 = (ROOT / "calibration" / "profiles" / "h200.toml").read_text().replace(
    '"../h200"', f'"{ROOT / "calibration" / "h200"}"')
GEMM_T0 = "t0 = 3.5970174567595737e-06\n"


def parquet(**columns) -> bytes:
    """A Parquet trace of one request (3,000 tokens, 47 blocks of 64), ``columns`` replaced."""
    import io

    import pandas as pd

    base = {"arrival_at": [0.0], "request_id": [0], "input_tokens": [3000],
            "output_tokens": [4], "block_ids": [list(range(47))], "block_tokens": [64]}
    buf = io.BytesIO()
    pd.DataFrame({**base, **columns}).to_parquet(buf)
    return buf.getvalue()


def profile(old: str, new: str) -> dict[str, str]:
    """The H200 profile with one edit, as ``p.toml``."""
    assert old in H200
    return {"p.toml": H200.replace(old, new, 1)}


def tiny(old: str = "", new: str = "", trace: str = TRACE) -> dict[str, str | bytes]:
    """A tiny scenario (two GPUs, three requests) with one edit, and its trace."""
    assert old in TINY
    return {"tiny.toml": TINY.replace(old, new, 1), "t.jsonl": trace}


def default(old: str, new: str) -> dict[str, str]:
    assert old in DEFAULT
    return {"d.toml": DEFAULT.replace(old, new, 1)}


def edited(name: str, text: str, old: str, new: str) -> dict[str, str]:
    """A shipped scenario's ``text`` with one edit, as the file ``name``."""
    assert old in text
    return {name: text.replace(old, new, 1)}


def deploy(section: str) -> dict[str, str | bytes]:
    """The tiny scenario with a ``[deployment]`` section (issue 16)."""
    return {**tiny(), "tiny.toml": TINY + "[deployment]\n" + section + "\n"}


def sweep(grid: str, head: str = "") -> dict[str, str | bytes]:
    return {**tiny(), "s.toml": SWEEP.replace("[grid]\n", head + "[grid]\n" + grid)}


@dataclass(frozen=True)
class Case:
    """One bad input: ``argv`` (``{tmp}`` is the test's folder, also the working folder),
    the ``files`` to create first, and what the one line must contain (``needles``)."""

    id: str
    argv: list[str]
    needles: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)


CASES: list[Case] = [
    # -- run: the scenario file ------------------------------------------------------------------
    Case("run-missing-file", ["run", "nope.toml"], ("nope.toml", "not found")),
    Case("run-unknown-shipped-name", ["run", "lamina_llama4"], ("lamina_llama4", "shipped")),
    Case("run-malformed-toml", ["run", "tiny.toml"], ("tiny.toml", "not valid TOML"),
         tiny('name = "tiny"', 'name = "tiny')),
    Case("run-not-utf8", ["run", "l.toml"], ("l.toml", "not UTF-8"),
         {"l.toml": b'name = "caf\xe9"\n'}),
    Case("run-unknown-top-field", ["run", "tiny.toml"], ("tiny.toml", "'stackz'"),
         tiny("seed = 1", 'seed = 1\nstackz = "ibgda"')),
    Case("run-unknown-model", ["run", "tiny.toml"], ("tiny.toml", "'model.name'", "nosuch"),
         tiny('name = "deepseek-v3.2"', 'name = "nosuch"')),
    Case("run-unknown-preset", ["run", "tiny.toml"], ("tiny.toml", "'topology'", "dgx_z"),
         tiny('spec = "single_node:gpus=2"', 'spec = "dgx_z:nodes=2"')),
    # more copies of each block than GPUs: was quietly capped at the GPUs (here 2)
    Case("run-more-replicas-than-gpus", ["run", "tiny.toml"],
         ("tiny.toml", "'placement.scheme'", "replicate:3", "2 GPUs", "K <= 2"),
         tiny('scheme = "hash"', 'scheme = "replicate:3"')),
    Case("run-zero-bandwidth", ["run", "tiny.toml"], ("tiny.toml", "'topology'", "bandwidth"),
         {**tiny('spec = "single_node:gpus=2"', 'file = "two.toml"'),
          "two.toml": TWO_GPUS + "bandwidth = 0.0\n"}),
    Case("run-tiny-bandwidth", ["run", "tiny.toml"], ("two.toml", "bandwidth 1e-300", ">= 1"),
         {**tiny('spec = "single_node:gpus=2"', 'file = "two.toml"'),
          "two.toml": TWO_GPUS + "bandwidth = 1e-300\n"}),
    Case("run-topology-not-utf8", ["run", "tiny.toml"], ("two.toml", "UTF-8"),
         {**tiny('spec = "single_node:gpus=2"', 'file = "two.toml"'),
          "two.toml": b"name = \"\xff\"\n"}),
    Case("run-bad-scheme", ["run", "tiny.toml"], ("tiny.toml", "'placement.scheme'"),
         tiny('scheme = "hash"', 'scheme = "round_robin"')),
    Case("run-duration-past-the-bound", ["run", "tiny.toml"],
         ("tiny.toml", "'engine.duration'", "1e+07"),
         tiny("max_batch = 4", "max_batch = 4\nduration = 1e300")),
    Case("run-time-scale-past-the-bound", ["run", "tiny.toml"],
         ("tiny.toml", "'workload.time_scale'", "1000"),
         tiny('kind = "trace"', 'kind = "trace"\ntime_scale = 1e300')),
    Case("run-zero-batch", ["run", "tiny.toml"], ("tiny.toml", "'engine.max_batch'"),
         tiny("max_batch = 4", "max_batch = 0")),
    Case("run-no-room-for-kv", ["run", "tiny.toml"], ("tiny.toml", "placement.weights_per_gpu"),
         tiny("weights_per_gpu = 40e9", "weights_per_gpu = 400e9")),
    Case("run-bad-workload-kind", ["run", "tiny.toml"], ("tiny.toml", "'workload.kind'"),
         tiny('kind = "trace"', 'kind = "replay"')),
    Case("run-duplicate-policy-toml", ["run", "tiny.toml"], ("tiny.toml", "'policies'", "twice"),
         tiny('policies = ["route", "fetch"]', 'policies = ["route", "route"]')),
    Case("run-include-missing", ["run", "tiny.toml"], ("tiny.toml", "'include'"),
         tiny("seed = 1", 'seed = 1\ninclude = "cal.toml"')),
    Case("run-calibration-kernels-not-a-table", ["run", "tiny.toml"],
         ("tiny.toml", "'calibration.kernels'", "table"),
         tiny("seed = 1", 'seed = 1\n[calibration]\nkernels = "fast"')),
    Case("run-calibration-coefficient-out-of-range", ["run", "tiny.toml"],
         ("tiny.toml", "'calibration.kernels.memory_efficiency'", "(0, 1]"),
         tiny("seed = 1", "seed = 1\n[calibration.kernels]\nmemory_efficiency = 2.0")),
    Case("run-calibration-coefficient-not-a-number", ["run", "tiny.toml"],
         ("tiny.toml", "'calibration.launch_time'", "finite number"),
         tiny("seed = 1", 'seed = 1\n[calibration]\nlaunch_time = "3us"')),
    Case("run-include-coefficient-out-of-range", ["run", "tiny.toml"],
         ("tiny.toml", "'include'", "cal.toml", "'kernels.launch_time'", ">= 0"),
         {**tiny("seed = 1", 'seed = 1\ninclude = "cal.toml"'),
          "cal.toml": "[kernels]\nlaunch_time = -3e-6\n"}),
    Case("run-include-not-utf8", ["run", "tiny.toml"], ("cal.toml", "not UTF-8"),
         {**tiny("seed = 1", 'seed = 1\ninclude = "cal.toml"'), "cal.toml": b"x = '\xfe'\n"}),
    Case("run-unknown-gpu", ["run", "l.toml"], ("l.toml", "disaggregation.model_gpu", "H999"),
         {"l.toml": LAMINA.replace('model_gpu = "H100"', 'model_gpu = "H999"')}),
    Case("run-unknown-agentic-field", ["run", "d.toml"],
         ("d.toml", "'workload.agentic.subagentz'", "unknown field"),
         default("subagents = 32", "subagentz = 32")),
    Case("run-agentic-float-count", ["run", "d.toml"],
         ("d.toml", "'workload.agentic.subagents'", "integer"),
         default("subagents = 32", "subagents = 1e12")),
    Case("run-agentic-zero", ["run", "d.toml"], ("d.toml", "'workload.agentic.turns_mean'"),
         default("turns_mean = 2.0", "turns_mean = 0.5")),
    Case("run-agentic-causal-not-a-bool", ["run", "d.toml"],
         ("d.toml", "'workload.agentic.causal'", "true/false"),
         default("turns_mean = 2.0", 'turns_mean = 2.0\ncausal = "yes"')),
    Case("run-task-rate-too-large", ["run", "d.toml"],
         ("d.toml", "workload.agentic", "lower workload.agentic.task_rate"),
         default("task_rate = 0.06", "task_rate = 1e12")),
    Case("run-subagents-too-large", ["run", "d.toml"], ("d.toml", "memory", "subagents"),
         default("subagents = 32", "subagents = 1000000000000")),
    Case("run-cluster-too-large", ["run", "d.toml"], ("d.toml", "'topology.nodes'"),
         default("nodes = 2", "nodes = 100000000")),
    # -- run: the generators' tables (workload.spans, a preset's overrides), checked at load ---
    Case("run-spans-unknown-field", ["run", "r.toml"],
         ("r.toml", "'workload.spans.permut'", "unknown field"),
         edited("r.toml", RAG, "permute = true", "permut = true")),
    Case("run-spans-infinite-count", ["run", "r.toml"],
         ("r.toml", "'workload.spans.n_documents'", "integer"),
         edited("r.toml", RAG, "n_documents = 200", "n_documents = inf")),
    Case("run-spans-number-for-a-boolean", ["run", "r.toml"],
         ("r.toml", "'workload.spans.permute'", "true/false"),
         edited("r.toml", RAG, "permute = true", "permute = 1")),
    Case("run-spans-tokens-past-the-bound", ["run", "r.toml"],
         ("r.toml", "'workload.spans.output_tokens_mean'", "100,000,000"),
         edited("r.toml", RAG, "output_tokens_mean = 64.0", "output_tokens_mean = 1e30")),
    Case("run-spans-too-large", ["run", "r.toml"],
         ("r.toml", "'workload.spans'", "memory", "lower workload.spans.request_rate"),
         edited("r.toml", RAG, "request_rate = 2.0", "request_rate = 1e12")),
    Case("run-nested-duration-past-the-bound", ["run", "n.toml"],
         ("n.toml", "'workload.spans.duration_time'", "1e+07"),
         edited("n.toml", NESTED, "duration_time = 60.0", "duration_time = 1e30")),
    Case("run-nested-float-token-count", ["run", "n.toml"],
         ("n.toml", "'workload.spans.judge_output_tokens'", "integer"),
         edited("n.toml", NESTED, "judge_output_tokens = 16", "judge_output_tokens = 1e30")),
    Case("run-nested-infinite-temperature", ["run", "n.toml"],
         ("n.toml", "'workload.spans.temperature'", "finite"),
         edited("n.toml", NESTED, "temperature = 0.7", "temperature = inf")),
    Case("run-preset-sessions-not-a-count", ["run", "c.toml"],
         ("c.toml", "'workload.agentic.sessions'", "integer"),
         edited("c.toml", COPILOT, "sessions = 200", 'sessions = "x"')),
    Case("run-preset-sessions-infinite", ["run", "c.toml"],
         ("c.toml", "'workload.agentic.sessions'", "integer"),
         edited("c.toml", COPILOT, "sessions = 200", "sessions = inf")),
    Case("run-preset-sessions-too-large", ["run", "c.toml"],
         ("c.toml", "'workload.agentic'", "memory", "lower workload.agentic.sessions"),
         edited("c.toml", COPILOT, "sessions = 200", "sessions = 4611686018427387904")),
    Case("run-agentic-think-time-past-the-bound", ["run", "d.toml"],
         ("d.toml", "'workload.agentic.think_time_mean'", "1e+07"),
         default("turns_mean = 2.0", "turns_mean = 2.0\nthink_time_mean = 1e30")),
    Case("run-empty-trace-path", ["run", "tiny.toml"], ("tiny.toml", "'workload.trace'"),
         tiny('trace = "t.jsonl"', 'trace = ""')),
    # a generator's table under another kind: was accepted and ignored, so editing it did nothing
    Case("run-agentic-table-under-trace", ["run", "tiny.toml"],
         ("tiny.toml", "'workload.agentic'", "not used with kind = 'trace'", "kind = 'agentic'"),
         tiny("[placement]", "[workload.agentic]\nsubagents = 4\n[placement]")),
    Case("run-spans-table-under-agentic", ["run", "d.toml"],
         ("d.toml", "'workload.spans'", "not used with kind = 'agentic'", "kind = 'spans'"),
         default("[workload.agentic]", '[workload.spans]\nshape = "rag"\n[workload.agentic]')),
    Case("run-mixed-table-under-spans", ["run", "r.toml"],
         ("r.toml", "'workload.mixed'", "not used with kind = 'spans'", "kind = 'mixed'"),
         edited("r.toml", RAG, "[workload.spans]", "[workload.mixed]\nsubagents = 4\n"
                "[workload.spans]")),
    # -- run: the [deployment] section -----------------------------------------------------------
    Case("run-deployment-unknown-field", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.attention_dpp'", "unknown field"),
         deploy("attention_dpp = 2")),
    Case("run-deployment-bad-kernels", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.moe_kernels'", "low_latency"),
         deploy('moe_kernels = "fast"')),
    Case("run-deployment-ep-not-instance", ["run", "tiny.toml"], ("tiny.toml", "'deployment.ep'"),
         deploy("attention_dp = 2\nep = 3")),
    Case("run-deployment-zero-ranks", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.attention_dp'", ">= 1"), deploy("attention_dp = 0")),
    Case("run-deployment-bad-popularity", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.popularity'", "zipf"), deploy('popularity = "pareto"')),
    Case("run-deployment-negative-weight", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.popularity'", "weight 1"), deploy("popularity = [1, -2]")),
    Case("run-deployment-zipf-exponent-alone", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.zipf_exponent'"), deploy("zipf_exponent = 1.2")),
    Case("run-deployment-transfer-without-prefill", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.transfer'", "prefill"),
         deploy("[deployment.transfer]\nbandwidth = 1e10")),
    Case("run-deployment-prefill-unknown-gpu", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.prefill.gpu'", "H999"),
         deploy('[deployment.prefill]\ngpu = "H999"')),
    Case("run-deployment-zero-transfer-rate", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.transfer.bandwidth'"),
         deploy("[deployment.prefill]\n[deployment.transfer]\nbandwidth = 0")),
    Case("run-deployment-tiny-transfer-rate", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.transfer.bandwidth'", ">= 1 B/s"),
         deploy("[deployment.prefill]\n[deployment.transfer]\nbandwidth = 5e-324")),
    Case("run-deployment-experts-per-rank", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.experts_per_rank'", "256"),
         deploy("attention_dp = 2\nexperts_per_rank = 100")),
    Case("run-deployment-more-gpus-than-topology", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.instances'", "the topology has 2"),
         deploy("attention_dp = 4")),
    Case("run-deployment-weights-do-not-fit", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.attention_dp'", "GB"), deploy("attention_dp = 2")),
    Case("run-deployment-tensor-parallel-attention", ["run", "tiny.toml"],
         ("tiny.toml", "'deployment.attention_tp'"), deploy("attention_tp = 2")),
    # -- run: the result folder its name makes (the default folder is replaced unasked) ----------
    Case("run-empty-name", ["run", "tiny.toml"], ("tiny.toml", "'name'", "result folder"),
         tiny('name = "tiny"', 'name = ""')),
    Case("run-name-leaves-the-folder", ["run", "tiny.toml"], ("tiny.toml", "'name'", "'/'"),
         tiny('name = "tiny"', 'name = "a/../../b"')),
    Case("run-name-dot-dot", ["run", "tiny.toml"], ("tiny.toml", "'name'"),
         tiny('name = "tiny"', 'name = ".."')),
    Case("run-name-with-a-newline", ["run", "tiny.toml"], ("tiny.toml", "'name'", "control"),
         tiny('name = "tiny"', 'name = "ti\\nny"')),
    Case("run-name-with-an-escape-sequence", ["run", "tiny.toml"], ("tiny.toml", "'name'"),
         tiny('name = "tiny"', 'name = "\\u001b[31mtiny"')),
    Case("run-out-empty", ["run", "tiny.toml", "--out", ""], ("--out",), tiny()),
    Case("run-a-folder", ["run", "d"], ("d: a folder, not a scenario file",), {"d/x.toml": TINY}),
    Case("run-block-size-not-dividing-the-traces", ["run", "tiny.toml"],
         ("tiny.toml", "'placement.block_tokens'", "does not divide the trace's 512-token"),
         tiny('scheme = "hash"', 'scheme = "hash"\nblock_tokens = 100')),
    Case("run-pool-policy-without-its-gpus", ["run", "tiny.toml", "--policy", "disaggregated"],
         ("tiny.toml", "'disaggregation.attention_gpus'", "no [disaggregation] section"), tiny()),
    # -- run: the trace it reads -----------------------------------------------------------------
    Case("run-trace-not-beside-the-scenario", ["run", "sub/tiny.toml"],
         ("sub/tiny.toml: field 'workload.trace': sub/t.jsonl: no such file (looked for in ",
          "/sub: a relative path"),  # not the working folder's t.jsonl
         {"sub/tiny.toml": TINY, "t.jsonl": TRACE}),
    Case("run-trace-missing", ["run", "tiny.toml"],
         ("tiny.toml: field 'workload.trace': t2.jsonl: no such file", "shipped traces: "),
         tiny('trace = "t.jsonl"', 'trace = "t2.jsonl"')),
    Case("run-trace-bad-line", ["run", "tiny.toml"], ("t.jsonl:2", "--skip-bad"),
         tiny(trace=TRACE.replace("\n", "\nnot json\n", 1))),
    Case("run-trace-not-utf8", ["run", "tiny.toml"], ("t.jsonl:1", "not UTF-8"),
         {**tiny(), "t.jsonl": b'{"timestamp": \xff}\n'}),
    Case("run-selections-missing", ["run", "tiny.toml"], ("'workload.selections'", "s.parquet"),
         tiny('kind = "trace"', 'kind = "trace"\nselections = "s.parquet"')),
    # a folder where a file is named: said so (was "not found")
    Case("run-selections-a-folder", ["run", "tiny.toml"],
         ("'workload.selections'", "'s.parquet' is a folder"),
         {**tiny('kind = "trace"', 'kind = "trace"\nselections = "s.parquet"'),
          "s.parquet/x": "no"}),
    Case("run-include-a-folder", ["run", "tiny.toml"], ("'include'", "'cal.toml' is a folder"),
         {**tiny("seed = 1", 'seed = 1\ninclude = "cal.toml"'), "cal.toml/x": "no"}),
    Case("run-topology-file-a-folder", ["run", "tiny.toml"],
         ("'topology'", "'two.toml' is a folder"),
         {**tiny('spec = "single_node:gpus=2"', 'file = "two.toml"'), "two.toml/x": "no"}),
    Case("run-selections-not-parquet", ["run", "tiny.toml"],
         ("'workload.selections'", "s.parquet", "Parquet"),
         {**tiny('kind = "trace"', 'kind = "trace"\nselections = "s.parquet"'),
          "s.parquet": "no"}),
    # -- run: options ----------------------------------------------------------------------------
    Case("run-unknown-policy", ["run", "tiny.toml", "--policy", "teleport"],
         ("--policy", "teleport"), tiny()),
    Case("run-duplicate-policy-option", ["run", "tiny.toml", "--policy", "route,route"],
         ("--policy", "twice"), tiny()),
    Case("run-negative-seed", ["run", "tiny.toml", "--seed", "-3"], ("--seed",), tiny()),
    Case("run-unknown-option", ["run", "tiny.toml", "--bogus"], ("--bogus", "kvfabric run"),
         tiny()),
    Case("run-option-without-its-value", ["run", "tiny.toml", "--seed"],
         ("'--seed'", "'kvfabric run --help'"), tiny()),
    Case("trace-stats-option-without-its-value", ["trace", "stats", "t.jsonl", "--block-tokens"],
         ("'--block-tokens'", "'kvfabric trace stats --help'"), tiny()),
    Case("run-no-write-with-out", ["run", "tiny.toml", "--no-write", "--out", "o"],
         ("--no-write", "--out", "drop one"), tiny()),
    Case("run-no-write-with-overwrite", ["run", "tiny.toml", "--no-write", "--overwrite"],
         ("--no-write", "--overwrite"), tiny()),
    Case("run-out-under-a-file", ["run", "tiny.toml", "--out", "f/out"], ("--out", "f/out"),
         {**tiny(), "f": "a file"}),
    Case("run-out-name-too-long", ["run", "tiny.toml", "--out", "x" * 300], ("--out", "too long"),
         tiny()),
    Case("run-out-holds-a-result", ["run", "tiny.toml", "--out", "o"],
         ("--out o", "previous result", "--overwrite"),
         {**tiny(), "o/manifest.json": json.dumps({"scenario": {"name": "x"}, "policies": [],
                                                   "created_at": "then"})}),
    Case("run-out-holds-other-files", ["run", "tiny.toml", "--out", "o", "--overwrite"],
         ("--out o", "not a kvfabric result"), {**tiny(), "o/notes.txt": "mine"}),
    # -- sweep -----------------------------------------------------------------------------------
    Case("sweep-missing-file", ["sweep", "nope.toml"], ("nope.toml", "not found")),
    Case("sweep-name-leaves-the-folder", ["sweep", "s.toml"], ("s.toml", "'sweep.name'", "'/'"),
         {**tiny(), "s.toml": SWEEP.replace('name = "s"', 'name = "../../escape"')
          + '"engine.max_batch" = [2]\n'}),
    Case("sweep-empty-name", ["sweep", "s.toml"], ("s.toml", "'sweep.name'"),
         {**tiny(), "s.toml": SWEEP.replace('name = "s"', 'name = ""')
          + '"engine.max_batch" = [2]\n'}),
    Case("sweep-name-with-a-newline", ["sweep", "s.toml"], ("s.toml", "'sweep.name'", "control"),
         {**tiny(), "s.toml": SWEEP.replace('name = "s"', 'name = "a\\nb"')
          + '"engine.max_batch" = [2]\n'}),
    Case("sweep-name-too-long", ["sweep", "s.toml"], ("--out out/sweep-", "File name too long"),
         {**tiny(), "s.toml": SWEEP.replace('name = "s"', f'name = "{"s" * 300}"')
          + '"engine.max_batch" = [2]\n'}),
    Case("sweep-grid-value-twice", ["sweep", "s.toml"], ("s.toml", "'grid.policy'", "twice"),
         sweep('policy = ["route", "fetch", "route"]\n')),
    Case("sweep-malformed-toml", ["sweep", "s.toml"], ("s.toml", "not valid TOML"),
         {"s.toml": "[sweep\n"}),
    Case("sweep-not-utf8", ["sweep", "s.toml"], ("s.toml", "not UTF-8"),
         {"s.toml": b"[sweep]\nname = '\xe9'\n"}),
    Case("sweep-unknown-dotted-field", ["sweep", "s.toml", "--out", "o"],
         ("s.toml", "'engine.max_batchez'"), sweep('"engine.max_batchez" = [1, 2]\n')),
    Case("sweep-bad-value", ["sweep", "s.toml", "--out", "o"],
         ("s.toml", "'engine.max_batch'"), sweep('"engine.max_batch" = [4, 0]\n')),
    Case("sweep-unknown-policy", ["sweep", "s.toml", "--out", "o"],
         ("s.toml", "'grid.policy'", "teleport"), sweep('policy = ["route", "teleport"]\n')),
    Case("sweep-not-a-table", ["sweep", "s.toml", "--out", "o"],
         ("s.toml", "'grid.name.first'"), sweep('"name.first" = ["a"]\n')),
    Case("sweep-missing-base", ["sweep", "s.toml"], ("s.toml", "'sweep.base'"),
         {"s.toml": SWEEP.replace('"tiny.toml"', '"gone.toml"') + "stack = ['ibgda']\n"}),
    Case("sweep-trace-missing", ["sweep", "s.toml", "--out", "o"],
         ("s.toml point 0", "'workload.trace'", "t2.jsonl: no such file"),
         {**sweep("stack = ['ibgda']\n"), "tiny.toml": TINY.replace("t.jsonl", "t2.jsonl")}),
    Case("sweep-bad-trace-line", ["sweep", "s.toml", "--out", "o"], ("t.jsonl:1", "--skip-bad"),
         {**sweep("stack = ['ibgda']\n"), "t.jsonl": "nope\n"}),
    Case("sweep-unknown-section", ["sweep", "s.toml"], ("s.toml", "'grids'"),
         {"s.toml": "[sweep]\nkind = 'predict'\n[grids]\nblocks = [1]\n"}),
    Case("sweep-predict-unknown-model", ["sweep", "p.toml", "--out", "o"],
         ("p.toml", "model='gpt-9'"),
         {"p.toml": "[sweep]\nkind = 'predict'\n[grid]\nmodel = ['gpt-9']\n"}),
    *(Case(f"sweep-predict-{name}", ["sweep", "p.toml", "--out", "o"], ("p.toml", *words),
           {"p.toml": f"[sweep]\nkind = 'predict'\n[grid]\n{grid}\n"})
      for name, grid, words in (
          ("same-gpu", "dst = ['n0/gpu0']", ("field 'dst'", "home's own GPU")),
          ("half-a-query", "batch = [1, 0.5]", ("batch=0.5", "field 'batch'", "whole")),
          ("fractional-block", "block_tokens = [1.5]", ("field 'block_tokens'", "whole")),
          ("unknown-dtype", "kv_dtype = ['bogus']", ("kv dtype 'bogus'",)),
          ("unknown-layout", "layout = ['x']", ("layout 'x'",)),
          ("reuse-below-one", "reuse = [0.5]", ("reuse=0.5",)),
          ("blocks-past-the-bound", "blocks = [1e300]", ("field 'blocks'", "1e+15")),
          ("topology-beside-it-missing", "topology = ['t/ring.toml']", ("t/ring.toml",)))),
    Case("sweep-generator-table-of-another-kind", ["sweep", "s.toml", "--out", "o"],
         ("s.toml", "'workload.agentic'", "not used with kind = 'trace'"),
         sweep('"workload.agentic.subagents" = [4, 8]\n')),
    Case("sweep-run-block-size-not-dividing-the-traces", ["sweep", "s.toml", "--out", "o"],
         ("s.toml point 1", "'placement.block_tokens'", "does not divide"),
         sweep('"placement.block_tokens" = [64, 100]\n')),
    Case("sweep-scheduler-with-the-local-backend",
         ["sweep", "s.toml", "--backend", "local", "--scheduler", "tcp://127.0.0.1:1"],
         ("--scheduler", "--backend local", "drop one"), sweep("stack = ['ibgda']\n")),
    Case("sweep-out-under-a-file", ["sweep", "s.toml", "--out", "f/o"], ("--out", "f/o"),
         {**sweep("stack = ['ibgda']\n"), "f": "a file"}),
    *(Case(f"sweep-{name}", ["sweep", "s.toml", "--out", "o"], ("s.toml", *words),
           {**tiny(), "s.toml": text})
      for name, text, words in (
          ("base-not-a-table", 'base = "x"\n' + SWEEP + "stack = ['ibgda']\n",
           ("field 'base'", "table")),
          ("random-not-a-table", "random = 5\n" + SWEEP + "stack = ['ibgda']\n",
           ("field 'random'", "table")),
          *((f"random-{what}", SWEEP.replace("[sweep]\n", "[sweep]\nsamples = 2\n")
             + "stack = ['ibgda']\n[random]\n\"engine.max_batch\" = { " + spec + " }\n",
             ("'random.engine.max_batch'", need))
            for what, spec, need in (
                ("unknown-key", "low = 1, high = 4, integr = true", "low = …, high = …"),
                ("flag-not-a-bool", 'low = 1, high = 4, integer = "no"', "true or false"),
                ("infinite-range", "low = -inf, high = inf", "finite"),
                ("range-past-a-float", "low = -1e308, high = 1e308", "finite"),
                ("boolean-bound", "low = true, high = 4", "finite numbers"))))),
    # -- predict ---------------------------------------------------------------------------------
    Case("predict-unknown-model", ["predict", "--model", "gpt-9", "--blocks", "8"],
         ("--model", "gpt-9")),
    Case("predict-unknown-stack", ["predict", "--stack", "tcp", "--blocks", "8"],
         ("--stack", "tcp")),
    Case("predict-src-not-a-gpu", ["predict", "--src", "n0/nic0", "--blocks", "8"],
         ("--src", "n0/nic0")),
    Case("predict-zero-blocks", ["predict", "--blocks", "0"], ("--blocks",)),
    Case("predict-bad-sweep", ["predict", "--sweep", "blocks=8:2"], ("--sweep",)),
    Case("predict-plot-missing-folder", ["predict", "--sweep", "blocks=1:8", "--plot", "d/c.png"],
         ("--plot", "d/c.png")),
    Case("predict-unknown-topology", ["predict", "--topology", "torus:nodes=2", "--blocks", "8"],
         ("torus",)),
    Case("predict-not-a-number", ["predict", "--blocks", "many"], ("--blocks", "many")),
    Case("predict-more-heads-than-the-model", ["predict", "--blocks", "8", "--heads", "1000"],
         ("--heads 1000", "128 query heads")),
    Case("predict-blocks-past-the-bound", ["predict", "--blocks", "1e300"],
         ("--blocks", "1e+15")),
    Case("predict-sweep-past-the-bound", ["predict", "--sweep", "blocks=1:1e300", "--json"],
         ("--sweep", "1e+15")),
    Case("kernel-fractional-count", ["kernel", "gemm", "--gpu", "H100", "--m", "1.5", "--n", "8",
                                     "--k", "8"], ("--m 1.5", "integer")),
    *(Case(f"kernel-{name}", ["kernel", *argv], (f"kernel {what}:", flag, "does not apply"))
      for name, argv, what, flag in (
          ("size-of-another-operator", ["gemm", "--gpu", "H100", "--m", "8", "--n", "8", "--k",
                                        "8", "--batch", "4"], "gemm", "--batch"),
          ("page-tokens-without-paged", ["attention", "--gpu", "H100", "--batch", "1",
                                         "--context", "64", "--q-heads", "8", "--kv-heads", "8",
                                         "--page-tokens", "32"], "attention", "--page-tokens"),
          ("kv-heads-with-mla", ["attention", "--gpu", "H100", "--batch", "1", "--context", "64",
                                 "--mla", "--kv-heads", "8"], "attention --mla", "--kv-heads"),
          ("fabric-of-a-copy", ["copy", "--gpu", "H100", "--bytes", "64", "--fabric", "rdma"],
           "copy", "--fabric"),
          ("list-with-a-gpu", ["list", "--gpu", "H100"], "list", "--gpu"))),
    Case("kernel-size-past-the-bound", ["kernel", "gemm", "--gpu", "H100", "--m", "1e300", "--n",
                                        "8", "--k", "8", "--json"], ("--m 1e300", "1e+15")),
    *(Case(f"kernel-profile-{name}", ["kernel", "gemm", "--gpu", "H200", "--profile", "p.toml",
                                      "--m", "8", "--n", "8", "--k", "8"], ("p.toml", *words),
           profile(old, new))
      for name, old, new, words in (
          ("parameter-not-a-number", GEMM_T0, "t0 = nan\n", ("gemm t0 = nan", "> 0")),
          ("parameter-negative", GEMM_T0, "t0 = -1.0\n", ("gemm t0 = -1.0", "> 0")),
          ("parameter-missing", GEMM_T0, "", ("gemm params lack t0",)),
          ("cuda-graphs-a-string", "cuda_graphs = true", 'cuda_graphs = "false"',
           ("profile.cuda_graphs", "true or false")),
          ("unknown-gpu", 'gpu = "H200"', 'gpu = "H999"', ("profile.gpu", "H999")))),
    Case("run-profile-file-malformed", ["run", "tiny.toml"],
         ("tiny.toml", "'calibration.profile'", "p.toml", "gemm t0 = nan"),
         {**tiny("seed = 1", 'seed = 1\n[calibration]\nprofile = "p.toml"'),
          **profile(GEMM_T0, "t0 = nan\n")}),
    # -- trace -----------------------------------------------------------------------------------
    Case("trace-stats-empty-file", ["trace", "stats", "e.jsonl"], ("e.jsonl", "no requests"),
         {"e.jsonl": ""}),
    Case("trace-stats-bad-line", ["trace", "stats", "t.jsonl"], ("t.jsonl:2", "--skip-bad"),
         {"t.jsonl": TRACE.replace("\n", '\n{"timestamp": -1}\n', 1)}),
    Case("trace-stats-not-utf8", ["trace", "stats", "t.jsonl"], ("t.jsonl:2", "not UTF-8"),
         {"t.jsonl": TRACE.encode().replace(b"\n", b"\n\xff\n", 1)}),
    Case("trace-stats-azure-not-utf8", ["trace", "stats", "a.csv"], ("a.csv:2", "not UTF-8"),
         {"a.csv": b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 \xe9,3,4\n"}),
    Case("trace-stats-unknown-format", ["trace", "stats", "t.txt"], ("t.txt", "format"),
         {"t.txt": TRACE}),
    Case("run-parquet-count-past-int64", ["run", "tiny.toml"],
         ("t.parquet", "'output_tokens'", "1e+30", "2^63"),
         {**tiny('trace = "t.jsonl"', 'trace = "t.parquet"'),
          "t.parquet": parquet(output_tokens=[1e30])}),
    Case("run-trace-a-folder", ["run", "tiny.toml"],
         ("tiny.toml", "'workload.trace'", "t.jsonl", "folder"),
         {"tiny.toml": TINY, "t.jsonl/t.jsonl": TRACE}),
    Case("trace-stats-a-folder", ["trace", "stats", "t.jsonl"], ("t.jsonl", "folder", ".jsonl"),
         {"t.jsonl/t.jsonl": TRACE}),
    Case("trace-stats-not-parquet", ["trace", "stats", "t.parquet"], ("t.parquet", "Parquet"),
         {"t.parquet": "not parquet"}),
    Case("trace-stats-not-gzip", ["trace", "stats", "t.jsonl.gz"], ("t.jsonl.gz", "gzip"),
         {"t.jsonl.gz": TRACE}),
    Case("trace-stats-gzip-cut-short", ["trace", "stats", "a.csv.gz"], ("a.csv.gz", "gzip"),
         {"a.csv.gz": gzip.compress(AZURE.encode() * 20)[:60]}),
    Case("trace-stats-mooncake-huge-output", ["trace", "stats", "t.jsonl"],
         ("t.jsonl:1", "'output_length'", "100,000,000"),
         {"t.jsonl": LINE.replace("4,", "99999999999999999999,") % (0, "1, 2, 3, 4, 5, 6")}),
    Case("trace-stats-azure-huge-context", ["trace", "stats", "a.csv"],
         ("a.csv:3", "ContextTokens", "100,000,000"),
         {"a.csv": AZURE + "2023-11-16 18:15:48,9999999999999,4\n"}),
    Case("run-trace-timestamp-past-the-bound", ["run", "tiny.toml"],
         ("t.jsonl:1", "'timestamp' 1e+300 ms", "1e+10 ms"),
         tiny(trace=TRACE.replace('"timestamp": 0,', '"timestamp": 1e300,', 1))),
    Case("trace-stats-azure-span-past-the-bound", ["trace", "stats", "a.csv"],
         ("a.csv", "TIMESTAMP", "1e+07 s"), {"a.csv": AZURE + "2200-01-01,100,9\n"}),
    Case("trace-stats-azure-after-2262", ["trace", "stats", "a.csv"],
         ("a.csv:3", "TIMESTAMP", "2262"), {"a.csv": AZURE + "3000-01-01,100,9\n"}),
    Case("trace-gen-bad-option", ["trace", "gen", "agentic", "--subagents", "0", "-o", "a.parquet"],
         ("--subagents",)),
    *(Case(f"trace-{cmd}-block-tokens-of-a-mooncake-trace",
           ["trace", cmd, "t.jsonl", "--block-tokens", "64", *extra],
           ("--block-tokens 64", "only for Azure", "t.jsonl", "drop it"), {"t.jsonl": TRACE})
      for cmd, extra in (("stats", []), ("convert", ["-o", "t.parquet"]))),
    Case("trace-stats-zero-block-tokens", ["trace", "stats", "a.csv", "--block-tokens", "0"],
         ("--block-tokens",), {"a.csv": AZURE}),
    Case("trace-gen-selections-zero-top-k", ["trace", "gen", "selections", "t.jsonl",
                                             "--top-k-tokens", "0", "-o", "s.parquet"],
         ("--top-k-tokens",), {"t.jsonl": TRACE}),
    Case("trace-gen-options-out-of-order", ["trace", "gen", "agentic", "--repo-min-tokens",
                                            "100000", "--repo-max-tokens", "10", "-o",
                                            "a.parquet"],
         ("--repo-min-tokens must be <= --repo-max-tokens",)),
    Case("trace-gen-selections-too-many", ["trace", "gen", "selections", "t.jsonl", "-o",
                                           "s.parquet", "--layers", "100000000", "--steps",
                                           "100000000"],
         ("trace gen selections", "1,200,000,000 selections", "memory", "lower --steps"),
         {"t.jsonl": TRACE}),
    Case("trace-gen-negative-seed", ["trace", "gen", "rag", "--seed", "-1", "-o", "a.parquet"],
         ("--seed", "-1")),
    Case("trace-gen-infinite-duration", ["trace", "gen", "rag", "--duration-time", "inf", "-o",
                                         "a.parquet"], ("--duration-time", "finite")),
    Case("trace-gen-duration-past-the-bound", ["trace", "gen", "agentic", "--duration-time",
                                               "1e8", "-o", "a.parquet"],
         ("--duration-time 1e+08", "<= 1e+07")),
    # tasks up to 1e7 s whose later turns come after it: a file the reader would refuse
    Case("trace-gen-turns-past-the-bound", ["trace", "gen", "agentic", "--duration-time", "1e7",
                                            "--task-rate", "1e-6", "--subagents", "1",
                                            "--think-time-mean", "1e5", "--repo-tokens", "4096",
                                            "--repo-min-tokens", "2048", "--repo-max-tokens",
                                            "8192", "-o", "a.parquet"],
         ("trace gen agentic", "1.09236e+07 s", "a.parquet could not be read back")),
    Case("trace-gen-infinite-param", ["trace", "gen", "agentic", "--preset", "copilot_2026",
                                      "--param", "sessions=inf", "-o", "a.parquet"],
         ("--param", "sessions=inf")),
    Case("trace-gen-fractional-count", ["trace", "gen", "agentic", "--preset", "copilot_2026",
                                        "--param", "sessions=2.7", "-o", "a.parquet"],
         ("--param", "sessions=2.7")),
    *(Case(f"trace-gen-{name}-too-large", ["trace", "gen", *argv, "-o", "a.parquet"],
           (f"trace gen {argv[0]}", "memory", f"lower {lower}"))
      for name, argv, lower in (
          ("rag", ["rag", "--request-rate", "1e12"], "--request-rate (1e+12)"),
          ("nested", ["nested", "--request-rate", "1e12"], "--request-rate (1e+12)"),
          ("agentic", ["agentic", "--task-rate", "1e9"], "--task-rate (1e+09)"),
          ("preset", ["agentic", "--preset", "copilot_2026", "--param",
                      "sessions=4000000000000"], "--param sessions=4000000000000"))),
    Case("trace-gen-missing-folder", ["trace", "gen", "agentic", "-o", "d/a.parquet"],
         ("-o", "d/a.parquet")),
    Case("trace-convert-bad-suffix", ["trace", "convert", "t.jsonl", "-o", "t.csv"],
         ("-o", "t.csv", ".parquet"), {"t.jsonl": TRACE}),
    # an empty name: it was shown as "-o ." (the current folder)
    Case("trace-convert-empty-output", ["trace", "convert", "t.jsonl", "-o", ""],
         ("-o ''", "give a file name ending in .parquet"), {"t.jsonl": TRACE}),
    # -- topology --------------------------------------------------------------------------------
    Case("topology-unknown-preset", ["topology", "show", "dgx_z100"], ("dgx_z100",)),
    Case("topology-too-many-gpus", ["topology", "show", "dgx_h100:nodes=1e6"],
         ("dgx_h100", "nodes=1000000", "65,536")),
    *(Case(f"topology-oversubscription-{name}",
           ["topology", "show", f"dgx_h100:oversubscription={v}"],
           ("dgx_h100", f"oversubscription={float(v)!r}", "<= 1000"))
      for name, v in (("infinite", "inf"), ("past-the-bound", "1e300"))),
    Case("topology-parameter-twice", ["topology", "show", "dgx_h100:nodes=1,nodes=2"],
         ("dgx_h100:nodes=1,nodes=2", "nodes is given twice")),
    Case("topology-zero-bandwidth", ["topology", "show", "two.toml"], ("two.toml", "bandwidth"),
         {"two.toml": TWO_GPUS + "bandwidth = 0.0\n"}),
    Case("topology-link-twice", ["topology", "show", "two.toml"],
         ("two.toml", "links[1]", "n0/gpu0 -> n0/gpu1", "already linked", "keep one"),
         {"two.toml": TWO_GPUS + "bandwidth = 1e9\n[[links]]"
          + TWO_GPUS.split("[[links]]")[1] + "bandwidth = 2e9\n"}),
    # a file's key written after a [[nodes]] table lands in that node (TOML): was read as a
    # node attribute, and the user was told the GPUs cannot reach each other
    Case("topology-file-key-inside-a-node", ["topology", "show", "two.toml"],
         ("two.toml", "nodes[1] (n0/gpu1)", "'links' is the file's", "above the first [[nodes]]"),
         {"two.toml": TWO_GPUS.split("[[links]]")[0] + "links = 5\n"}),
    Case("topology-disconnected", ["topology", "show", "two.toml"], ("two.toml",),
         {"two.toml": TWO_GPUS.split("[[links]]")[0]}),
    Case("topology-bad-figure-suffix", ["topology", "show", "dgx_h100", "-o", "g.txt"],
         ("-o", "g.txt")),
    Case("topology-unknown-path-node", ["topology", "show", "dgx_h100", "--path", "n0/gpu0",
                                        "n9/gpu0"], ("n9/gpu0",)),
    Case("topology-deployment-missing", ["topology", "show", "dgx_h100", "--deployment",
                                         "tiny.toml"], ("tiny.toml", "'deployment'"), tiny()),
    Case("topology-deployment-too-large", ["topology", "show", "dgx_h100:nodes=1",
                                           "--deployment", "tiny.toml"],
         ("tiny.toml", "'deployment.instances'"), deploy("attention_dp = 16")),
    # -- calibrate -------------------------------------------------------------------------------
    Case("calibrate-missing-file", ["calibrate", "m.csv"], ("m.csv",)),
    Case("calibrate-not-utf8", ["calibrate", "m.csv"], ("m.csv", "text"),
         {"m.csv": b"batch,tokens,seconds\n\xff\xfe\n"}),
    Case("calibrate-bad-header", ["calibrate", "m.csv"], ("m.csv", "header"),
         {"m.csv": "a,b\n1,2\n"}),
    Case("calibrate-unknown-model", ["calibrate", "m.csv", "--model", "gpt-9"],
         ("--model", "gpt-9"), {"m.csv": CSV}),
    Case("calibrate-unknown-gpu", ["calibrate", "m.csv", "--gpu", "Z9"], ("--gpu", "Z9"),
         {"m.csv": CSV}),
    Case("calibrate-output-missing-folder", ["calibrate", "m.csv", "-o", "d/c.toml"],
         ("-o", "d/c.toml"), {"m.csv": CSV}),
    Case("calibrate-output-not-toml", ["calibrate", "m.csv", "-o", "c.txt"],
         ("-o", "c.txt", ".toml"), {"m.csv": CSV}),
    Case("calibrate-line-rate-below-the-rows", ["calibrate", "p.csv", "--line-rate", "1e-7"],
         ("p.csv", "--line-rate 1e-07 GB/s", "faster than the wire"), {"p.csv": PING}),
    Case("calibrate-path-latency-above-the-rows", ["calibrate", "p.csv", "--path-latency", "1e9"],
         ("p.csv", "--path-latency", "fixed time"), {"p.csv": PING}),
    Case("calibrate-path-latency-not-a-number", ["calibrate", "p.csv", "--path-latency", "nan"],
         ("--path-latency nan", "finite"), {"p.csv": PING}),
    Case("calibrate-line-rate-infinite", ["calibrate", "p.csv", "--line-rate", "inf"],
         ("--line-rate inf", "finite"), {"p.csv": PING}),
    Case("calibrate-time-falls-with-size", ["calibrate", "p.csv"], ("p.csv", "does not grow"),
         {"p.csv": "bytes,seconds\n1024,3e-5\n65536,2e-5\n1048576,1e-5\n"}),
    # a folder of measurements (like calibration/h200/): the row at fault, by its line
    Case("calibrate-folder-time-not-a-number", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv line 3", "time_s", "'abc'"), {"h/gemm.csv": GEMM % ("bf16", "abc")}),
    Case("calibrate-folder-negative-time", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv line 3", "time_s", "-4.5e-05"), {"h/gemm.csv": GEMM % ("bf16", "-4.5e-05")}),
    Case("calibrate-folder-zero-time", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv line 3", "time_s", "0.0"), {"h/gemm.csv": GEMM % ("bf16", "0.0")}),
    Case("calibrate-folder-time-nan", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv line 3", "time_s", "nan"), {"h/gemm.csv": GEMM % ("bf16", "nan")}),
    Case("calibrate-folder-header-only", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv", "no measurement rows"), {"h/gemm.csv": GEMM.split("\n")[0] + "\n"}),
    Case("calibrate-folder-unknown-dtype", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv:3", "'fp4'"), {"h/gemm.csv": GEMM % ("fp4", "4.6e-05")}),
]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"/")
            for p in sorted(folder.rglob("*"))}


def test_the_table_is_large_and_covers_every_command():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv[0] for c in CASES}
    assert {"run", "sweep", "predict", "trace", "topology", "calibrate"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, monkeypatch, capsys):
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(case.argv)
    out, err = capsys.readouterr()
    assert exit_.value.code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and out == ""
    for needle in case.needles:
        assert needle in lines[0]
    assert _tree(tmp_path) == before  # nothing created, nothing half-written, nothing removed


def test_a_missing_trace_names_the_scenario_the_field_and_the_folder_it_was_looked_in(
        tmp_path, monkeypatch, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tiny.toml").write_text(TINY.replace("t.jsonl", "nosuch.parquet"))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["run", "sub/tiny.toml", "--no-write"], capsys)
    assert code == 2 and out == ""
    from workloads.loaders import SHIPPED

    assert err == (f"error: sub/tiny.toml: field 'workload.trace': sub/nosuch.parquet: no such "
                   f"file (looked for in {tmp_path / 'sub'}: a relative path is read from the "
                   f"scenario file's folder; shipped traces: {', '.join(sorted(SHIPPED))})\n")


# -- files a Windows editor saved, with a byte-order mark, read as without one -------------------

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize(("argv", "files"), [
    (["run", "tiny.toml", "--no-write", "--policy", "route", "--jobs", "1"],
     {"tiny.toml": BOM + TINY.encode(), "t.jsonl": TRACE}),
    (["topology", "show", "t.toml"], {"t.toml": BOM + b'preset = "single_node"\n'}),
    (["calibrate", "ping.csv", "-o", "c.toml"], {"ping.csv": BOM + PING.encode()}),
    (["kernel", "gemm", "--gpu", "H200", "--profile", "p.toml", "--m", "8", "--n", "8", "--k",
      "8"], {"p.toml": BOM + H200.encode()}),
], ids=["scenario", "topology", "calibration-csv", "kernel-profile"])
def test_a_file_opening_with_a_byte_order_mark_is_read(argv, files, tmp_path, monkeypatch,
                                                         capsys):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(argv, capsys)
    assert code == 0, err


# -- empty and degenerate runs are results --------------------------------------------------------

TABLES = ("requests", "rounds", "iterations", "gpus", "links", "link_timeline")


def _run(argv, capsys):
    return run_main(argv, capsys, warnings_as_errors=True)  # no matplotlib warning on the way


def test_a_run_without_requests_is_a_complete_result_with_notes(tmp_path, capsys):
    # the reproduction: this seed draws no task in the 30 s window
    scenario = tmp_path / "d.toml"
    scenario.write_text(DEFAULT.replace("subagents = 32", "subagents = 8")
                        .replace("turns_mean = 2.0", "turns_mean = 1.5"))
    out = tmp_path / "o"
    code, _, err = _run(["run", str(scenario), "--seed", "2160069381", "--out", str(out)],
                        capsys)
    assert code == 0, err
    import pandas as pd

    for t in ("requests", "rounds", "iterations", "link_timeline"):  # every table, no rows
        assert len(pd.read_parquet(out / f"{t}.parquet")) == 0
    assert set(pd.read_parquet(out / "gpus.parquet")["policy"]) == {"route", "fetch", "adaptive"}
    summary = json.loads((out / "summary.json").read_text())
    for policy in ("route", "fetch", "adaptive"):
        assert summary["policies"][policy]["requests"] == 0
        assert "no requests entered the run" in summary["policies"][policy]["notes"][0]
    assert not list(out.glob("*.png"))  # no empty pictures ...
    assert set(summary["plots_skipped"]) == {"latency_cdf.png", "phase_breakdown.png",
                                             "link_utilization.png", "closed_form_scatter.png"}
    assert err.count("skipped ") == 4  # ... each skip said why
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 2160069381
    assert manifest["engine"] == dict.fromkeys(manifest["policies"], "exact")  # per policy
    assert set(manifest["files"]) == {p.name for p in out.iterdir()}


def test_an_empty_trace_and_a_policy_that_never_routes_are_results(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "t.jsonl").write_text("")
    code, out, err = _run(["run", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "e"),
                           "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["policies"]["route"]["requests"] == 0 and payload["notes"]["route"]
    assert len(payload["plots_skipped"]) == 4
    (tmp_path / "t.jsonl").write_text(TRACE)
    code, out, err = _run(["run", str(tmp_path / "tiny.toml"), "--policy", "route,colocated",
                           "--out", str(tmp_path / "c"), "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert "no rounds" in payload["notes"]["colocated"][0] and "route" not in payload["notes"]
    assert payload["plots_skipped"] == {}  # route's rounds are drawn; colocated is named
    assert sorted(p.name for p in (tmp_path / "c").glob("*.png")) == [
        "closed_form_scatter.png", "latency_cdf.png", "link_utilization.png",
        "phase_breakdown.png"]


def test_a_second_run_replaces_the_first_whole_and_never_mixes(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "t.jsonl").write_text(TRACE)
    out = tmp_path / "o"
    assert _run(["run", str(tmp_path / "tiny.toml"), "--out", str(out)], capsys)[0] == 0
    first = json.loads((out / "manifest.json").read_text())
    assert first["policies"] == ["route", "fetch"]
    assert (out / "rounds.parquet").is_file() and (out / "phase_breakdown.png").is_file()
    code, _, err = _run(["run", str(tmp_path / "tiny.toml"), "--out", str(out), "--policy",
                         "colocated", "--overwrite"], capsys)
    assert code == 0, err
    second = json.loads((out / "manifest.json").read_text())
    assert second["policies"] == ["colocated"]
    assert set(second["files"]) == {p.name for p in out.iterdir()}  # nothing of the first
    assert not (out / "phase_breakdown.png").exists()
    import pandas as pd

    for t in TABLES:
        assert set(pd.read_parquet(out / f"{t}.parquet")["policy"]) <= {"colocated"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "t.jsonl", "tiny.toml"]


# -- Ctrl-C --------------------------------------------------------------------------------------


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _assert_group_ends(pgid: int) -> None:
    """No process is left in group ``pgid`` within 2 s (the resource tracker notices its
    client's exit a moment later)."""
    gone = time.monotonic() + 2
    while time.monotonic() < gone:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_ctrl_c_stops_a_sweep_within_two_seconds_and_keeps_finished_points(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "t.jsonl").write_text(TRACE)
    # 48 points: enough that the sweep cannot end in the moment between the first point's
    # file and the signal on a loaded machine (with 24, it once did: exit 0, not 130)
    batches = ", ".join(str(b) for b in range(1, 17))
    (tmp_path / "s.toml").write_text(SWEEP + f'"engine.max_batch" = [{batches}]\n'
                                     'policy = ["route", "fetch", "local"]\n')
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli.main", "sweep", "s.toml",
                             "--out", "o", "--workers", "2"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True,  # its own process group, like a terminal's
                            # foreground job: Ctrl-C heard even when pytest runs in the
                            # background (which ignores SIGINT, and children inherit that)
                            preexec_fn=_default_sigint)
    points = tmp_path / "o" / "points"
    deadline = time.monotonic() + 60
    while not (points.is_dir() and any(points.glob("*.parquet"))):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _, err = proc.communicate(timeout=30)
    latency = time.monotonic() - sent
    assert latency < 2.0, f"{latency:.2f} s"
    assert proc.returncode == 130
    kept = len(list(points.glob("*.parquet")))
    assert 1 <= kept < 48
    assert f"{kept} of 48 points finished" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "results.parquet").exists()
    _assert_group_ends(proc.pid)


def test_ctrl_c_stops_policies_running_at_once_and_writes_nothing(tmp_path):
    """``kvfabric run --jobs 2``: Ctrl-C while two policies run in their processes ends them
    within two seconds, exit 130, "aborted", no output folder and no process left behind."""
    from clitools import small_scenario

    small_scenario(tmp_path, requests=20_000, output_tokens=200, gap=1e-4,
                   policies=["route", "fetch", "local"])
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli.main", "run", "tiny.toml",
                             "--jobs", "2", "--out", "o"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=_default_sigint)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 60
    # the two runs' workers (and the resource tracker) have started, and had time to import
    while len(children.read_text().split()) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(3.0)
    assert proc.poll() is None  # 20,000 requests: still running
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    latency = time.monotonic() - sent
    assert latency < 2.0, f"{latency:.2f} s"
    assert proc.returncode == 130 and "aborted" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    _assert_group_ends(proc.pid)


def test_the_default_folder_is_replaced_without_asking(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "t.jsonl").write_text(TRACE)
    monkeypatch.chdir(tmp_path)
    for policy in ("route", "colocated"):
        code, _, err = _run(["run", "tiny.toml", "--policy", policy], capsys)
        assert code == 0, err
    manifest = json.loads((tmp_path / "kvfabric_out" / "tiny" / "manifest.json").read_text())
    assert manifest["policies"] == ["colocated"]
    assert sorted(p.name for p in (tmp_path / "kvfabric_out").iterdir()) == ["tiny"]


def test_a_write_protected_out_folder_is_named_not_a_temporary_file(tmp_path, monkeypatch,
                                                                   capsys):
    # root ignores permission bits, so the refusal a read-only folder gives is simulated
    import tempfile

    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "t.jsonl").write_text(TRACE)
    (tmp_path / "ro").mkdir()

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(Path(dir) / ".x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "tiny.toml", "--out", "ro/result"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "--out ro/result: ro cannot be written (Permission denied)" in err
    assert ".tmp" not in err
    assert _tree(tmp_path) == before
