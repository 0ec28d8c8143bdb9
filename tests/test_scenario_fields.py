"""Scenario fields one by one: each bound at its edge (the smallest value accepted, read through
to the spec, and the nearest refused, named), integers where numbers are asked, the sections a
scenario cannot do without, the policy list's forms, calibration tables frozen and thawed, and
the generator tables each workload kind checks."""

from __future__ import annotations

import pickle

import pytest

from simulator.errors import UserError
from simulator.scenario import Scenario

BASE = {"topology": {"preset": "dgx_h100"}, "model": {"name": "deepseek-v3.2"},
        "workload": {"trace": "mooncake_conversation"}}


def scenario(**sections) -> Scenario:
    """:data:`BASE` with some sections (or top-level fields) replaced."""
    return Scenario.from_dict({**BASE, **sections})


def refused(field: str, hint: str = "", **sections) -> str:
    """The error of :func:`scenario` with ``sections``; it must name ``field`` (and ``hint``)."""
    with pytest.raises(UserError) as exc:
        scenario(**sections)
    msg = str(exc.value)
    assert msg.startswith("<dict>: field ") and f"field '{field}'" in msg, msg
    assert hint in msg, msg
    return msg


# (section, key, the edge accepted, the spec's attribute, the nearest value refused, its hint)
EDGES = [
    ("topology", "nodes", 1, "nodes", 0, "node count >= 1"),
    ("workload", "time_scale", 1e-9, "time_scale", 0.0, "factor > 0"),
    ("workload", "concurrency", 1, "concurrency", 0, "outstanding requests >= 1"),
    ("placement", "block_tokens", 1, "block_tokens", 0, "tokens per block >= 1"),
    ("placement", "reserve_fraction", 0.0, "reserve_fraction", 1.0, "0 <= x < 1"),
    ("placement", "reserve_fraction", 0.999, "reserve_fraction", -1e-9, "0 <= x < 1"),
    ("placement", "weights_per_gpu", 0.0, "weights_per_gpu", -1.0, "bytes >= 0"),
    ("placement", "host_capacity", 0.0, "host_capacity", -1.0, "bytes >= 0"),
    ("engine", "max_batch", 1, "max_batch", 0, "batch size >= 1"),
    ("engine", "layer_groups", 0, "layer_groups", -1, "0 (every layer)"),
    ("engine", "duration", 1e-9, "duration", 0.0, "simulated seconds > 0"),
    ("engine", "max_requests", 1, "max_requests", 0, "count >= 1"),
]


@pytest.mark.parametrize(("section", "key", "ok", "attr", "bad", "hint"), EDGES,
                         ids=[f"{e[0]}.{e[1]}={e[2]}" for e in EDGES])
def test_each_bound_accepts_its_edge_and_refuses_the_value_past_it(section, key, ok, attr, bad,
                                                                    hint):
    spec = getattr(scenario(**{section: {**BASE.get(section, {}), key: ok}}), section)
    assert getattr(spec, attr) == ok
    msg = refused(f"{section}.{key}", hint, **{section: {**BASE.get(section, {}), key: bad}})
    assert f"invalid value {bad!r}; use " in msg


def test_the_seed_starts_at_zero_and_is_zero_when_not_given():
    assert scenario().seed == 0
    assert scenario(seed=0).seed == 0 and scenario(seed=7).seed == 7
    refused("seed", ">= 0", seed=-1)


def test_a_scenario_built_in_python_gets_the_default_serving():
    from simulator.engine.scheduler import ServingSpec
    from simulator.scenario import ModelSpec, TopologySpec, WorkloadSpec

    sc = Scenario(name="py", topology=TopologySpec(), model=ModelSpec(),
                  workload=WorkloadSpec(trace="mooncake_conversation"))
    assert sc.serving == ServingSpec() and sc.serving == scenario().serving


@pytest.mark.parametrize(("section", "key", "value"), [
    ("workload", "time_scale", 2), ("engine", "duration", 60),
    ("placement", "reserve_fraction", 0), ("placement", "host_capacity", 10**12),
])
def test_an_integer_where_a_number_is_asked_is_that_number(section, key, value):
    got = getattr(getattr(scenario(**{section: {**BASE.get(section, {}), key: value}}), section),
                  key)
    assert got == value and type(got) is float


def test_a_boolean_is_not_a_number_nor_a_number_a_string():
    refused("engine.max_batch", "expected an integer, got a boolean", engine={"max_batch": True})
    refused("engine.duration", "expected a number, got a boolean", engine={"duration": False})
    refused("model.name", "expected a string, got 3", model={"name": 3})
    refused("engine.duration", "must be a finite number, got inf",
            engine={"duration": float("inf")})


@pytest.mark.parametrize("section", ["topology", "model", "workload"])
def test_a_scenario_without_a_required_section_says_which(section):
    data = {k: v for k, v in BASE.items() if k != section}
    with pytest.raises(UserError, match=rf"field '{section}': missing; add a \[{section}\] section"):
        Scenario.from_dict(data)


def test_a_section_that_is_not_a_table_is_named():
    refused("engine", "must be a table ([engine]), got int", engine=3)


@pytest.mark.parametrize("policies", [3, [], ["route", 3], "", " , "])
def test_a_policy_list_must_be_names(policies):
    refused("policies", "must be a non-empty list of policy names", policies=policies)


def test_policies_given_as_a_comma_string_are_that_list():
    assert scenario(policies="route, fetch,local").policies == ("route", "fetch", "local")
    refused("policies", "lists fetch twice", policies=["fetch", "route", "fetch"])


def test_calibration_tables_are_frozen_and_given_back_as_written():
    cal = {"launch_time": 4e-6, "kernels": {"memory_efficiency": 0.8, "sizes": [1, 2, [3, 4]]},
           "links": [{"name": "nvlink", "rate": 4.5e11}, {"name": "pcie", "rate": 5.0e10}],
           "note": "as measured", "empty": [], "flag": True}
    sc = scenario(calibration=cal)
    hash(sc)  # a scenario stays hashable: every table and list frozen into tuples
    assert sc.calibration_dict() == {
        "launch_time": 4e-6, "kernels": {"memory_efficiency": 0.8, "sizes": (1, 2, (3, 4))},
        "links": ({"name": "nvlink", "rate": 4.5e11}, {"name": "pcie", "rate": 5.0e10}),
        "note": "as measured", "empty": (), "flag": True}
    again = pickle.loads(pickle.dumps(sc))  # as a sweep hands it to a worker process
    assert again == sc and again.calibration_dict() == sc.calibration_dict()
    # an array of two-item arrays led by names is an array, not a table
    sc = scenario(calibration={"pairs": [["a", 1], ["b", 2]], "table": {"a": 1}})
    assert sc.calibration_dict() == {"pairs": (("a", 1), ("b", 2)), "table": {"a": 1}}
    assert sc.calibration == (("pairs", (("a", 1), ("b", 2))), ("table", (("a", 1),)))
    refused("calibration", "must be a table", calibration=3)


def test_a_mixed_fleet_table_is_checked_when_it_is_the_workload_and_refused_otherwise():
    mixed = {"subagents": 4, "chat_rate": 0.0}
    sc = scenario(workload={"kind": "mixed", "mixed": mixed})
    assert sc.workload.mixed_params() == mixed
    refused("workload.mixed.subagents", "subagents must be > 0",
            workload={"kind": "mixed", "mixed": {"subagents": 0}})
    refused("workload.mixed.colour", "unknown field",
            workload={"kind": "mixed", "mixed": {"colour": 1}})
    refused("workload.mixed.chat_rate", "expected a number, got 'fast'",
            workload={"kind": "mixed", "mixed": {"chat_rate": "fast"}})
    refused("workload.mixed", "must be a table", workload={"kind": "mixed", "mixed": [1]})
    # under another kind the table would be ignored: refused, unless empty
    refused("workload.mixed", "not used with kind = 'agentic'; remove it, or set kind = 'mixed'",
            workload={"kind": "agentic", "mixed": {"subagents": 0}})
    assert scenario(workload={"kind": "agentic", "mixed": {}}).workload.mixed_params() == {}


def test_a_preset_agentic_workload_checks_its_overrides_by_name():
    agentic = {"preset": "copilot_2026", "sessions": 4, "turns_mean": 2.0}
    assert dict(scenario(workload={"kind": "agentic", "agentic": agentic}).workload.agentic) \
        == agentic
    refused("workload.agentic.bogus", "unknown field; known fields: preset, sessions",
            workload={"kind": "agentic", "agentic": {"preset": "copilot_2026", "bogus": 1}})
    refused("workload.agentic.turns_mean", "turns_mean must be >= 1", workload={
        "kind": "agentic", "agentic": {"preset": "copilot_2026", "turns_mean": 0.5}})
    refused("workload.agentic.preset", "'nope' is not one of: copilot_2026",
            workload={"kind": "agentic", "agentic": {"preset": "nope"}})
    # not a name at all (until stop 67 a list or a table raised TypeError: unhashable)
    for preset in ([], {}, ["copilot_2026"], 1):
        refused("workload.agentic.preset", f"{preset!r} is not one of: copilot_2026",
                workload={"kind": "agentic", "agentic": {"preset": preset}})
    refused("workload.agentic", "must be a table", workload={"kind": "agentic", "agentic": 1})


@pytest.mark.parametrize("block_tokens", [0, True, "64"])
def test_a_bad_block_size_is_named_as_placements_not_the_generators(block_tokens):
    # the generator's table is checked with the placement's block size only when that one is
    # good; a bad one is reported where it is written
    refused("placement.block_tokens", workload={"kind": "agentic", "agentic": {"subagents": 4}},
            placement={"block_tokens": block_tokens})


def test_a_block_size_in_the_generators_own_table_is_the_one_checked():
    sc = scenario(workload={"kind": "agentic", "agentic": {"subagents": 2}},
                  placement={"block_tokens": 50})
    assert sc.placement.block_tokens == 50
    refused("workload.agentic.block_tokens", "block_tokens must be > 0",
            workload={"kind": "agentic", "agentic": {"block_tokens": 0}})


@pytest.mark.parametrize(("scheme", "placed", "replicas"), [
    ("first_writer", "first_writer", 1), ("hash", "hash", 1), ("replicate:1", "replicate", 1),
    ("replicate:3", "replicate", 3)])
def test_a_placement_scheme_and_its_replicas(scheme, placed, replicas):
    spec = scenario(placement={"scheme": scheme}).placement
    assert (spec.scheme, spec.replicas) == (placed, replicas)


@pytest.mark.parametrize("scheme", ["replicate:0", "replicate:", "replicate:-1", "replicate2"])
def test_a_replica_count_must_be_a_whole_number_from_one(scheme):
    refused("placement.scheme", "write replicate:K with K >= 1", placement={"scheme": scheme})


@pytest.mark.parametrize(("value", "hint"), [
    ("x", "expected an integer, got 'x'"), (float("inf"), "expected an integer, got inf"),
    (1e30, "expected an integer, got 1e+30"), (True, "expected an integer, got a boolean"),
    ([], "expected an integer, got []"), (2.0, "expected an integer, got 2.0"),
    (-1, "sessions must be >= 0")])
def test_a_preset_override_is_checked_for_its_type_and_range(value, hint):
    # only the names were checked once: these raised TypeError in the generator, or ran as 0
    refused("workload.agentic.sessions", hint, workload={
        "kind": "agentic", "agentic": {"preset": "copilot_2026", "sessions": value}})
    refused("workload.agentic.session_rate", "must be a finite number", workload={
        "kind": "agentic", "agentic": {"preset": "copilot_2026", "session_rate": float("nan")}})


RAG = {"shape": "rag", "n_documents": 20, "docs_per_request": 4, "permute": False}
NESTED = {"shape": "nested", "candidates": 3, "temperature": 0.0, "judge_output_tokens": 8}


def spans(table: dict) -> dict:
    return {"workload": {"kind": "spans", "spans": table}}


def test_a_span_workload_checks_its_table_at_load_by_its_shape():
    assert scenario(**spans(RAG)).workload.spans_params() == RAG
    assert scenario(**spans(NESTED)).workload.spans_params() == NESTED
    assert scenario(**spans({})).workload.spans_params() == {}  # rag, its defaults
    refused("workload.spans.colour", "unknown field; known fields: shape, duration_time",
            **spans({**RAG, "colour": 1}))
    refused("workload.spans.candidates", "unknown field", **spans({**RAG, "candidates": 2}))
    refused("workload.spans.permute", "unknown field", **spans({**NESTED, "permute": True}))
    refused("workload.spans.shape", "'tree' is not one of: rag, nested",
            **spans({"shape": "tree"}))
    refused("workload.spans.shape", "expected a string, got 3", **spans({"shape": 3}))
    refused("workload.spans", "must be a table", workload={"kind": "spans", "spans": [1]})
    # the generator's own ranges, named by field
    refused("workload.spans.docs_per_request", "docs_per_request must be <= n_documents",
            **spans({**RAG, "docs_per_request": 21}))
    refused("workload.spans.candidates", "candidates must be > 0",
            **spans({**NESTED, "candidates": 0}))
    # under another kind the table would be ignored: refused, unless empty
    refused("workload.spans", "not used with kind = 'mixed'; remove it, or set kind = 'spans'",
            workload={"kind": "mixed", "spans": {"colour": 1}})
    refused("workload.agentic", "not used with kind = 'trace'",
            workload={"trace": "mooncake_conversation", "agentic": {"subagents": 4}})
    assert scenario(workload={"kind": "mixed", "spans": {}}).workload.spans_params() == {}


@pytest.mark.parametrize(("table", "field", "hint"), [
    ({**RAG, "n_documents": float("inf")}, "n_documents", "expected an integer, got inf"),
    ({**RAG, "n_documents": True}, "n_documents", "expected an integer, got a boolean"),
    ({**RAG, "docs_per_request": 4.5}, "docs_per_request", "expected an integer"),
    ({**RAG, "permute": 1}, "permute", "expected true/false, got 1"),
    ({**RAG, "permute": "yes"}, "permute", "expected true/false, got 'yes'"),
    ({**RAG, "duration_time": "x"}, "duration_time", "expected a number, got 'x'"),
    ({**RAG, "duration_time": True}, "duration_time", "expected a number, got a boolean"),
    ({**RAG, "request_rate": float("inf")}, "request_rate", "must be a finite number"),
    ({**RAG, "output_tokens_mean": float("inf")}, "output_tokens_mean", "finite number"),
    ({**RAG, "output_tokens_mean": 1e30}, "output_tokens_mean", "<= 100,000,000 tokens"),
    ({**RAG, "doc_tokens": 2**63}, "doc_tokens", "<= 100,000,000 tokens"),
    ({**NESTED, "candidates": float("inf")}, "candidates", "expected an integer, got inf"),
    ({**NESTED, "judge_output_tokens": 1e30}, "judge_output_tokens", "expected an integer"),
    ({**NESTED, "answer_tokens": 10**9}, "answer_tokens", "<= 100,000,000 tokens"),
    ({**NESTED, "temperature": float("inf")}, "temperature", "must be a finite number"),
    ({**NESTED, "reuse_generated": 1}, "reuse_generated", "expected true/false"),
    ({**NESTED, "duration_time": 1e30}, "duration_time", "use seconds <= 1e+07"),
    ({**NESTED, "call_overhead_time": 2**63}, "call_overhead_time", "use seconds <= 1e+07"),
])
def test_a_span_field_of_the_wrong_type_or_past_its_bound_is_named(table, field, hint):
    refused(f"workload.spans.{field}", hint, **spans(table))


def test_a_generators_times_and_token_sizes_stop_at_the_projects_bounds():
    # a time [s] at most [engine] duration's bound (1e7 s), a size at most a request's tokens
    # (MAX_REQUEST_TOKENS): the edge accepted, the value past it refused by name
    assert scenario(**spans({**RAG, "duration_time": 1e7})).workload.spans_params()
    assert scenario(**spans({**RAG, "question_tokens": 100_000_000}))
    refused("workload.spans.question_tokens", "<= 100,000,000 tokens",
            **spans({**RAG, "question_tokens": 100_000_001}))
    for kind, key in [("agentic", "think_time_mean"), ("agentic", "duration_time"),
                      ("mixed", "private_think_time_mean")]:
        scenario(workload={"kind": kind, kind: {key: 1e7}})
        refused(f"workload.{kind}.{key}", "use seconds <= 1e+07 (116 days",
                workload={"kind": kind, kind: {key: 1.0000001e7}})
    refused("workload.agentic.think_time_mean", "use seconds <= 1e+07", workload={
        "kind": "agentic", "agentic": {"preset": "copilot_2026", "think_time_mean": 1e30}})


@pytest.mark.parametrize("trace", ["", "  "])
def test_an_empty_trace_path_is_named(trace):
    refused("workload.trace", "name a trace file", workload={"trace": trace})
