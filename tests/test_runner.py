"""simulator.runner: the one entry above both engines — the checks that refuse a scenario before
any work (word for word, at their edges), the memory they weigh it against, and where ``run``
makes them.

Each check is asked directly (``check`` takes the memory a run may use, so no test depends on
this machine's); ``run`` is held to checking before it loads a trace.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator import runner
from simulator.errors import UserError
from simulator.runner import check, memory_bytes
from simulator.scenario import Scenario
from simulator.units import fmt_bytes
from tests.tracetools import two_prompts_sharing_a_prefix

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> Scenario:
    return Scenario.load(ROOT / "scenarios" / f"{name}.toml")


def mooncake(**topology) -> Scenario:
    """The Mooncake replay (2 × DGX H100, a trace: no generated workload to size) with its
    ``[topology]`` fields changed."""
    sc = load("mooncake_conversation")
    return sc.with_changes(topology=dataclasses.replace(sc.topology, **topology))


def test_memory_is_the_machines_or_a_smaller_container_limit(tmp_path):
    physical = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    limit = tmp_path / "memory.max"
    limit.write_text(f"{int(physical) // 2}\n")
    assert memory_bytes(str(limit)) == int(physical) // 2
    limit.write_text(f"{int(physical) * 2}\n")  # a limit above the machine's memory binds not
    assert memory_bytes(str(limit)) == physical
    limit.write_text("max\n")  # cgroup v2: no limit
    assert memory_bytes(str(limit)) == physical
    assert memory_bytes(str(tmp_path / "absent")) == physical  # no cgroup v2 here


def test_a_preset_cluster_too_large_for_memory_is_refused_by_its_node_count():
    sc = mooncake()  # 2 nodes: 2 × 200 KB of graph and link state by the runner's bound
    with pytest.raises(UserError) as err:
        check(sc, ("fetch",), memory=3.99e5)
    assert str(err.value) == (f"{sc.source}: field 'topology.nodes': 2 nodes need about "
                              "400 KB of memory, more than this machine's 399 KB; lower "
                              "topology.nodes")
    assert len(check(sc, ("fetch",), memory=4e5)) > 0  # exactly what it needs: it runs


@pytest.mark.parametrize("how", ["graph", "spec", "file"])
def test_a_cluster_not_built_from_a_preset_here_is_not_sized_by_its_node_count(how, tmp_path):
    # a graph handed in, a spec string or a topology file: the preset's node count is not
    # what the run builds, so memory far below its bound refuses nothing
    sc = mooncake()
    graph = None
    if how == "graph":
        graph = sc.topology.build()
    elif how == "spec":
        sc = mooncake(spec="dgx_h100:nodes=2")
    else:
        path = tmp_path / "two.toml"
        path.write_text((ROOT / "topologies" / "presets" / "dgx_h100.toml").read_text())
        sc = mooncake(file=str(path))
    got = check(sc, ("fetch",), memory=1.0, graph=graph)
    assert got is graph if graph is not None else len(got) > 0


def test_no_gpu_with_room_for_a_kv_block_is_refused_with_the_field_to_change():
    sc = load("mooncake_conversation")
    sc = sc.with_changes(placement=dataclasses.replace(sc.placement, weights_per_gpu=80e9))
    with pytest.raises(UserError) as err:
        check(sc, ("fetch",))
    assert str(err.value) == (
        f"{sc.source}: field 'placement.weights_per_gpu': no GPU has room for a single KV "
        "block (80 GB of weights per GPU, reserve 10%); use more GPUs, a smaller model, or set "
        "placement.weights_per_gpu / placement.reserve_fraction lower")
    # a policy with a decode loop of its own (the pools) is held to its pools' rules instead,
    # before any work: here, Lamina's attention pool of H20s that this cluster does not have
    with pytest.raises(UserError, match="field 'disaggregation.attention_gpus': 4 H20 GPUs "
                                        "asked, the topology has 0.* no .disaggregation. sec"):
        check(sc, ("disaggregated",))
    lamina = load("lamina_llama3_70b")
    lamina = lamina.with_changes(placement=dataclasses.replace(lamina.placement,
                                                               weights_per_gpu=80e9))
    assert len(check(lamina, ("disaggregated", "homogeneous"))) > 0
    with pytest.raises(UserError, match="field 'disaggregation.model_gpus': 40 H100 GPUs asked"):
        check(lamina.with_changes(disaggregation=dataclasses.replace(
            lamina.disaggregation, model_gpus=40)), ("disaggregated",))


def test_run_checks_the_scenario_before_it_loads_the_trace(monkeypatch):
    sc = load("mooncake_conversation")
    sc = sc.with_changes(placement=dataclasses.replace(sc.placement, weights_per_gpu=80e9))
    loaded = []
    monkeypatch.setattr(runner, "load_trace", lambda *args: loaded.append(args))
    with pytest.raises(UserError, match="field 'placement.weights_per_gpu'"):
        runner.run(sc, "fetch")
    assert loaded == []  # refused before any work


@pytest.mark.parametrize(("size", "counts"), [
    ((1_234.0, 9_999_999.0), "about 1,234 requests with 9,999,999 block references"),
    ((1.0e7, 2.5e7), "about 1e+07 requests with 2.5e+07 block references"),
])
def test_a_generated_workload_too_large_for_memory_names_its_size_and_what_to_lower(size,
                                                                                    counts):
    need = size[0] * runner.REQUEST_BYTES + size[1] * runner.BLOCK_REF_BYTES
    with pytest.raises(UserError) as err:
        runner._check_generated_size("s.toml", "agentic", size, need * 0.999, "subagents (8)")
    assert str(err.value) == (f"s.toml: field 'workload.agentic': {counts} need about "
                              f"{fmt_bytes(need)} of memory, more than this machine's "
                              f"{fmt_bytes(need * 0.999)}; lower workload.agentic.subagents (8)")
    runner._check_generated_size("s.toml", "agentic", size, need, "subagents (8)")  # it fits


def refused_for_size(sc: Scenario, kind: str, size: tuple[float, float], lower: str,
                     least: bool = False) -> None:
    """``check`` refuses ``sc`` just short of the memory its generated workload of ``size``
    (requests, block references) needs — the whole message, ``lower`` naming the fields after
    ``workload.<kind>.`` — and passes it at that memory (above two preset nodes' bound: that
    check comes first)."""
    requests, refs = size
    need = requests * runner.REQUEST_BYTES + refs * runner.BLOCK_REF_BYTES
    short = need * 0.999
    assert short > 2 * runner.TOPOLOGY_NODE_BYTES
    with pytest.raises(UserError) as err:
        check(sc, ("fetch",), memory=short)
    about = "at least" if least else "about"
    assert str(err.value) == (
        f"{sc.source}: field 'workload.{kind}': about {requests:,.0f} requests with "
        f"{'at least ' if least else ''}{refs:,.0f} block references need {about} "
        f"{fmt_bytes(need)} of memory, more than this machine's {fmt_bytes(short)}; lower "
        f"workload.{kind}.{lower}")
    assert len(check(sc, ("fetch",), memory=need)) > 0


def test_an_agentic_workload_too_large_for_memory_names_the_fields_that_size_it():
    from simulator.engine.trace import agentic_params

    sc = load("agentic_repo")
    p = agentic_params(sc)
    refused_for_size(sc, "agentic", p.expected_size(),
                     f"task_rate ({p.task_rate:g}), duration_time ({p.duration_time:g}), "
                     f"subagents ({p.subagents:g}) or turns_mean ({p.turns_mean:g})")


def test_a_mixed_fleet_too_large_for_memory_names_its_duration_and_rates():
    from workloads.mixed import MixedFleetParams

    sc = load("mixed_fleet")
    p = MixedFleetParams(block_tokens=sc.placement.block_tokens, **sc.workload.mixed_params())
    refused_for_size(sc, "mixed", p.expected_size(),
                     f"duration_time ({p.duration_time:g}) or its rates")


def _spans(name: str, **changes) -> Scenario:
    sc = load(name)
    table = {**sc.workload.spans_params(), **changes}
    return sc.with_changes(workload=dataclasses.replace(sc.workload,
                                                        spans=tuple(sorted(table.items()))))


def test_a_rag_workload_too_large_for_memory_names_its_rate_duration_and_documents():
    from simulator.engine.trace import span_params

    sc = _spans("rag_spans")
    p = span_params(sc)
    refused_for_size(sc, "spans", p.expected_size(),
                     f"request_rate ({p.request_rate:g}), duration_time ({p.duration_time:g}), "
                     f"docs_per_request ({p.docs_per_request:g}) or n_documents ({p.n_documents:g})")


def test_a_nested_workload_too_large_for_memory_names_its_rate_duration_and_candidates():
    from simulator.engine.trace import span_params

    sc = _spans("nested_generation", duration_time=600.0)
    p = span_params(sc)
    refused_for_size(sc, "spans", p.expected_size(),
                     f"request_rate ({p.request_rate:g}), duration_time ({p.duration_time:g}) "
                     f"or candidates ({p.candidates:g})")


def test_a_preset_workload_too_large_for_memory_names_its_sessions():
    from simulator.engine.trace import agentic_params

    sc = load("copilot_agents")
    p = agentic_params(sc)
    refused_for_size(sc, "agentic", p.expected_size(), f"sessions ({p.sessions})", least=True)
    # sessions = 0: every session that starts within duration_time
    sc = sc.with_changes(workload=dataclasses.replace(
        sc.workload, agentic=(("preset", "copilot_2026"), ("sessions", 0))))
    p = agentic_params(sc)
    refused_for_size(sc, "agentic", p.expected_size(),
                     f"session_rate ({p.session_rate:g}) or duration_time ({p.duration_time:g})",
                     least=True)


def _with_weights(sc: Scenario, weights: float) -> Scenario:
    return sc.with_changes(placement=dataclasses.replace(sc.placement, weights_per_gpu=weights))


def test_kv_room_is_one_whole_block_after_weights_and_reserve():
    # DeepSeek-V3.2 on H100s: a block is block_tokens x 1,152 B x 61 layers; an 80 GB GPU keeps
    # 90 % of its HBM; half a block of room is none, a block and a half is one
    sc = load("mooncake_conversation")
    block = sc.placement.block_tokens * 1152.0 * 61
    usable = 80e9 * (1 - sc.placement.reserve_fraction)
    assert len(check(_with_weights(sc, usable - 1.5 * block), ("fetch",))) > 0
    with pytest.raises(UserError, match="no GPU has room for a single KV block"):
        check(_with_weights(sc, usable - 0.5 * block), ("fetch",))


def test_one_gpu_kind_with_room_is_enough():
    # 75 GB of weights fill an H100's 72 usable GB but leave 11.4 of an H20's 86.4: the H20s
    # hold the KV, so the cluster can run
    sc = mooncake(spec="lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4")
    assert len(check(_with_weights(sc, 75e9), ("fetch",))) > 0
    with pytest.raises(UserError, match="no GPU has room"):
        check(_with_weights(sc, 87e9), ("fetch",))  # and none past the H20's 86.4


def _with_selections(path: Path) -> Scenario:
    sc = load("mooncake_conversation")
    return sc.with_changes(workload=dataclasses.replace(sc.workload, selections=str(path)))


def test_a_selection_trace_is_checked_for_its_file_format_and_columns(tmp_path):
    where = "mooncake_conversation.toml: field 'workload.selections'"
    path = tmp_path / "sel.parquet"
    with pytest.raises(UserError) as err:
        check(_with_selections(path), ("fetch",))
    assert str(err.value).endswith(f"{where}: file {str(path)!r} not found; write one with "
                                   "`kvfabric trace gen selections` or fix the path")
    path.write_text("not parquet")
    with pytest.raises(UserError, match=r"field 'workload.selections': .* is not a readable "
                                         r"Parquet file \("):
        check(_with_selections(path), ("fetch",))
    pq.write_table(pa.table({"request_id": [0], "step": [0], "block_ids": [[1]]}), path)
    with pytest.raises(UserError) as err:
        check(_with_selections(path), ("fetch",))
    assert str(err.value).endswith(
        f"{where}: {path} has no column 'layer'; a selection trace needs "
        "['request_id', 'step', 'layer', 'block_ids']")
    pq.write_table(pa.table({"request_id": [0], "step": [0], "layer": [0],
                             "block_ids": [[1]]}), path)
    assert len(check(_with_selections(path), ("fetch",))) > 0


def test_a_selection_trace_of_another_block_size_is_refused_before_any_work(tmp_path):
    # its block ids name 16-token blocks; the scenario's are 64 tokens: replayed, they were
    # other blocks, or none
    from workloads.selections import write_selections

    path = tmp_path / "sel.parquet"
    sel = pa.table({"request_id": [0], "step": [0], "layer": [0], "block_ids": [[1]]})
    write_selections(sel.to_pandas(), path, block_tokens=16)
    with pytest.raises(UserError) as err:
        check(_with_selections(path), ("fetch",))
    assert str(err.value).endswith(
        f"mooncake_conversation.toml: field 'workload.selections': {path} selects 16-token "
        "blocks, but placement.block_tokens is 64; write it again with `kvfabric trace gen "
        "selections --block-tokens 64`")
    write_selections(sel.to_pandas(), path, block_tokens=64)
    assert len(check(_with_selections(path), ("fetch",))) > 0


def test_compare_reuse_tabulates_each_rules_run_of_one_trace():
    # two prompts of 150 tokens (64-token blocks: 64 + 64 + 22) sharing their first two
    # blocks, the second arriving once the first is done: under prefix and span reuse it reuses
    # those two and computes its last block's 22 tokens (engine.reuse: not the page's empty
    # slots; until stop 68 a whole block), under none it computes all 150 tokens again
    sc = mooncake(nodes=1)
    assert sc.placement.block_tokens == 64
    tr = two_prompts_sharing_a_prefix()
    table = runner.compare_reuse(sc, "fetch", trace=tr)
    assert table["rule"].tolist() == ["prefix", "span", "none"]
    assert table["requests"].tolist() == [2, 2, 2] and table["completed"].tolist() == [2, 2, 2]
    assert table["prefill_tokens"].tolist() == [150 + 22, 150 + 22, 150 + 150]
    assert table["reused_fraction"].tolist() == [2 / 6, 2 / 6, 0.0]
    for row in table.itertuples():
        sc_rule = sc.with_changes(placement=dataclasses.replace(sc.placement, reuse=row.rule))
        alone = runner.run(sc_rule, "fetch", trace=tr).summary
        assert (row.ttft_p50, row.ttft_p99) == (alone["ttft_p50"], alone["ttft_p99"])
    assert table["ttft_p50"].iloc[0] < table["ttft_p50"].iloc[2]  # reuse shortens a prefill


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_trace_handed_over_is_checked_for_what_the_engines_rely_on(engine, monkeypatch):
    # run(trace=...) skips loading, and with it validation: rows out of arrival order entered
    # late (an arrival at 0 recorded at 10 s), and a request id of 2^40 shared its generated
    # blocks with request 0's (-(id · 2^24 + j) - 1 wraps in int64). Both are refused before
    # any work, naming the row
    from simulator.engine import exact, fast

    def no_work(*_a, **_k):
        raise AssertionError("the engine ran")

    monkeypatch.setattr(exact, "simulate", no_work)
    monkeypatch.setattr(fast, "simulate", no_work)
    sc = mooncake(nodes=1)
    tr = two_prompts_sharing_a_prefix()
    late_first = tr.iloc[::-1].reset_index(drop=True)
    with pytest.raises(UserError, match=r"column 'arrival_at', row 1: .*not sorted"):
        runner.run(sc, "fetch", trace=late_first, engine=engine)
    with pytest.raises(UserError, match=r"column 'request_id', row 1: 1099511627776 is outside"):
        runner.run(sc, "fetch", trace=tr.assign(request_id=[0, 2**40]), engine=engine)
    # a NaN arrival compares false with its neighbours: it entered at the previous one's time
    with pytest.raises(UserError, match=r"column 'arrival_at', row 1: nan is not a finite"):
        runner.run(sc, "fetch", trace=tr.assign(arrival_at=[0.0, float("nan")]), engine=engine)
    with pytest.raises(UserError, match=r"column 'request_id', row 1: id 0 repeats"):
        runner.run(sc, "fetch", trace=tr.assign(request_id=[0, 0]), engine=engine)
