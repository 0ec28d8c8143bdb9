"""A sweep as data, in this process: the file format's defaults and refusals, random draws,
points, and one point computed by :func:`run_point` (which the executor runs in spawned
workers, out of reach of anything that watches this process).

Known answers come from the file format (docs in :mod:`simulator.sweep.spec`), from the
independent oracle (:mod:`simulator.testing.oracle`) for a ``predict`` point, and from the
number of requests in a trace file for a ``run`` point.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from simulator.errors import UserError
from simulator.sweep.points import run_point
from simulator.sweep.spec import (
    PREDICT_DEFAULTS,
    Distribution,
    Point,
    Sweep,
    set_dotted,
    workload_fields,
)

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def predict(head: dict | None = None, grid: dict | None = None, **rest) -> Sweep:
    return Sweep.from_dict({"sweep": {"kind": "predict", **(head or {})},
                            "grid": grid or {"blocks": [8]}, **rest}, source="s.toml")


# -- the file format: defaults ------------------------------------------------------------------


def test_defaults_are_what_the_file_format_says():
    # seed = 0, samples = 0 (the full grid), name = the file's stem, kind = "run"
    sw = predict(grid={"blocks": [1, 2, 3], "stack": ["nccl", "ibgda"]})
    assert (sw.seed, sw.samples, sw.name, sw.kind) == (0, 0, "s", "predict")
    assert len(sw.points()) == 6  # the full grid
    with pytest.raises(UserError, match="field 'sweep.base'"):  # kind defaults to "run"
        Sweep.from_dict({"sweep": {}, "grid": {"a": [1]}})
    named = predict(head={"name": "mine"})
    assert named.name == "mine"


@pytest.mark.parametrize("seed", [0, 5])
def test_a_sweep_seed_of_zero_or_more_is_accepted(seed):
    assert predict(head={"seed": seed}).seed == seed


@pytest.mark.parametrize("samples", [0, 4])
def test_samples_of_zero_or_more_are_accepted(samples):
    assert predict(head={"samples": samples}).samples == samples


# -- the file format: refusals, each naming its field -------------------------------------------


@pytest.mark.parametrize(("data", "field"), [
    ({"sweep": {"kind": "predict"}, "grid": {"a": [1]}, "extra": {}}, "extra"),
    ({"sweep": {"kind": "predict"}, "grid": {"a": [1]}, "zz": {}, "yy": {}}, "yy"),
    ({"sweep": [1], "grid": {"a": [1]}}, "sweep"),
    ({"sweep": {"kind": "predict", "sede": 1}, "grid": {"a": [1]}}, "sweep.sede"),
    ({"sweep": {"kind": "predict", "seed": True}, "grid": {"a": [1]}}, "sweep.seed"),
    ({"sweep": {"kind": "predict", "seed": 1.5}, "grid": {"a": [1]}}, "sweep.seed"),
    ({"sweep": {"kind": "predict", "seed": -1}, "grid": {"a": [1]}}, "sweep.seed"),
    ({"sweep": {"kind": "predict", "samples": -1}, "grid": {"a": [1]}}, "sweep.samples"),
    ({"sweep": {"kind": "predict", "samples": True}, "grid": {"a": [1]}}, "sweep.samples"),
    ({"sweep": {"kind": "predict", "samples": "2"}, "grid": {"a": [1]}}, "sweep.samples"),
    ({"sweep": {"kind": "run", "base": 3}, "grid": {"a": [1]}}, "sweep.base"),
    ({"sweep": {"kind": "run", "base": "no_such_scenario.toml"}, "grid": {"a": [1]}},
     "sweep.base"),
    ({"sweep": {"kind": "predict"}, "grid": [1]}, "grid"),
    ({"sweep": {"kind": "predict"}, "grid": {"a": 1}}, "grid.a"),
    ({"sweep": {"kind": "predict", "samples": 2}, "grid": {"a": [1]},
      "random": {"b": {"low": 1}}}, "random.b"),
    ({"sweep": {"kind": "predict", "samples": 2}, "grid": {"a": [1]},
      "random": {"b": [1, 2]}}, "random.b"),
    ({"sweep": {"kind": "predict", "samples": 2}, "grid": {"a": [1]},
      "random": {"b": {"low": 2, "high": 1}}}, "random.b"),
    ({"sweep": {"kind": "predict", "samples": 2}, "grid": {"a": [1]},
      "random": {"b": {"low": "1", "high": 2}}}, "random.b"),
    ({"sweep": {"kind": "predict", "samples": 2}, "grid": {"a": [1]},
      "random": {"b": {"low": 1, "high": "2"}}}, "random.b"),
    ({"sweep": {"kind": "predict", "samples": 2}, "grid": {"a": [1]},
      "random": {"b": {"low": 0, "high": 2, "log": True}}}, "random.b"),
    ({"sweep": {"kind": "predict", "samples": 2}, "grid": {"a": [1]},
      "random": {"b": {"low": -1, "high": 2, "log": True}}}, "random.b"),
])
def test_a_bad_sweep_is_refused_naming_its_field(data, field):
    with pytest.raises(UserError, match=f"^s.toml: field '{field}':"):
        Sweep.from_dict(data, source="s.toml")


def test_a_grid_field_inside_a_value_of_the_base_scenario_is_refused():
    # `name` is a string in the base: `name.x` cannot be set; through a table it can
    data = {"sweep": {"kind": "run", "base": "agentic_repo.toml"}, "grid": {"name.x": [1]}}
    with pytest.raises(UserError, match=r"field 'grid.name.x': 'name' is not a table"):
        Sweep.from_dict(data, source="s.toml", base_dir=SCENARIOS)
    deeper = {"sweep": {"kind": "run", "base": "agentic_repo.toml"},
              "grid": {"model.name.x": [1]}}
    with pytest.raises(UserError, match=r"'model.name' is not a table"):
        Sweep.from_dict(deeper, source="s.toml", base_dir=SCENARIOS)
    ok = {"sweep": {"kind": "run", "base": "agentic_repo.toml"},
          "grid": {"engine.new_table.x": [1], "stack": ["ibgda"]}}
    assert len(Sweep.from_dict(ok, base_dir=SCENARIOS).points()) == 1
    # the random fields are checked the same way
    rnd = {"sweep": {"kind": "run", "base": "agentic_repo.toml", "samples": 2},
           "grid": {"stack": ["ibgda"]}, "random": {"name.x": {"low": 1, "high": 2}}}
    with pytest.raises(UserError, match=r"field 'grid.name.x'"):
        Sweep.from_dict(rnd, source="s.toml", base_dir=SCENARIOS)


def test_a_random_range_may_be_a_single_value_and_log_needs_a_positive_low():
    sw = predict(head={"samples": 3}, random={"reuse": {"low": 2, "high": 2},
                                              "batch": {"low": 0.5, "high": 0.5, "log": True}})
    pts = sw.points()
    assert len(pts) == 1  # every draw the same point: computed once
    assert pts[0].as_dict == {"blocks": 8, "reuse": 2.0, "batch": pytest.approx(0.5)}
    # the flags are read as given, and default to false
    (_, b), (_, r) = sw.random
    assert (b.log, b.integer, r.log, r.integer) == (True, False, False, False)
    on = predict(head={"samples": 1}, random={"x": {"low": 1, "high": 3, "integer": True}})
    assert on.random[0][1] == Distribution(1.0, 3.0, False, True)


def test_a_sweep_of_random_fields_alone_needs_no_grid():
    sw = Sweep.from_dict({"sweep": {"kind": "predict", "samples": 3},
                          "random": {"blocks": {"low": 1, "high": 64, "integer": True}}},
                         source="s.toml")
    pts = sw.points()
    assert 1 <= len(pts) <= 3 and all(set(p.as_dict) == {"blocks"} for p in pts)
    with pytest.raises(UserError, match="^s.toml: field 'grid':"):  # neither: nothing to sweep
        Sweep.from_dict({"sweep": {"kind": "predict", "samples": 3}, "random": {}},
                        source="s.toml")


# -- random draws -------------------------------------------------------------------------------


def _binomial_ok(hits: int, n: int, p: float, z: float = 5.0) -> bool:
    """``hits`` of ``n`` within z standard deviations of a Binomial(n, p)."""
    return abs(hits - n * p) <= z * math.sqrt(n * p * (1 - p))


def test_distribution_draws_have_the_documented_law():
    rng, n = np.random.default_rng(1), 4000
    # uniform on [2, 8]: P(x < 4) = 1/3; log-uniform: P(x < 4) = log(2)/log(4) = 1/2
    uni = [Distribution(2, 8).draw(rng) for _ in range(n)]
    log = [Distribution(2, 8, log=True).draw(rng) for _ in range(n)]
    assert all(2 <= x <= 8 for x in uni + log)
    assert all(isinstance(x, float) for x in uni + log)
    assert _binomial_ok(sum(x < 4 for x in uni), n, 1 / 3)
    assert _binomial_ok(sum(x < 4 for x in log), n, 1 / 2)
    # integers are rounded (not floored): on [0, 1], 0 and 1 each half the time
    ints = [Distribution(0, 1, integer=True).draw(rng) for _ in range(n)]
    assert all(isinstance(x, int) for x in ints)
    assert _binomial_ok(sum(ints), n, 1 / 2)


def test_random_samples_draw_every_grid_value_and_every_random_field():
    sw = predict(head={"samples": 200, "seed": 4}, grid={"stack": ["nccl", "ibgda", "ideal"]},
                 random={"blocks": {"low": 1, "high": 4096, "log": True, "integer": True}})
    pts = sw.points()
    assert [p.index for p in pts] == list(range(len(pts)))
    assert len(pts) > 150  # a few repeats at most (3 stacks x ~4,000 block counts)
    stacks = [p.as_dict["stack"] for p in pts]
    assert all(_binomial_ok(stacks.count(s), len(pts), 1 / 3) for s in ("nccl", "ibgda", "ideal"))
    assert all(set(p.as_dict) == {"stack", "blocks"} for p in pts)
    assert len({p.point_id for p in pts}) == len(pts)
    # another sweep seed: other draws
    other = predict(head={"samples": 200, "seed": 5}, grid={"stack": ["nccl", "ibgda", "ideal"]},
                    random={"blocks": {"low": 1, "high": 4096, "log": True, "integer": True}})
    assert [p.as_dict for p in other.points()] != [p.as_dict for p in pts]


# -- points and the scenario they run ----------------------------------------------------------


def test_scenario_data_sets_each_dotted_field_but_not_the_policy():
    sw = Sweep.from_dict({"sweep": {"kind": "run", "base": "agentic_repo.toml"},
                          "grid": {"stack": ["nccl"], "policy": ["fetch"],
                                   "workload.agentic.subagents": [3]}}, base_dir=SCENARIOS)
    data = sw.scenario_data(sw.points()[0].as_dict)
    assert data["stack"] == "nccl" and data["workload"]["agentic"]["subagents"] == 3
    assert "policy" not in data
    assert sw.base["stack"] != "nccl"  # the base itself is left alone
    assert sw.base["workload"]["agentic"]["subagents"] != 3


def test_set_dotted_creates_tables_and_refuses_to_pass_through_a_value():
    data: dict = {"a": {"b": 1}, "c": 2}
    set_dotted(data, "a.x.y", 3)
    set_dotted(data, "d", 4)
    assert data == {"a": {"b": 1, "x": {"y": 3}}, "c": 2, "d": 4}
    with pytest.raises(UserError, match="'c' is not a table"):
        set_dotted(data, "c.z", 5)


def test_workload_fields_are_the_seed_and_the_workload_section():
    params = {"seed": 1, "workload.agentic.subagents": 4, "stack": "nccl", "policy": "route",
              "workloads.x": 1}
    assert workload_fields(params) == {"seed": 1, "workload.agentic.subagents": 4}


def test_the_base_section_is_merged_into_the_scenario_table_by_table():
    sw = Sweep.from_dict({"sweep": {"kind": "run", "base": "agentic_repo.toml"},
                          "grid": {"stack": ["nccl"]},
                          "base": {"engine": {"max_batch": 3}, "seed": 9,
                                   "model": "llama-3.1-8b", "stack": {"name": "x"}}},
                         base_dir=SCENARIOS)
    import tomllib

    file = tomllib.loads((SCENARIOS / "agentic_repo.toml").read_text())
    assert sw.base["engine"] == {**file["engine"], "max_batch": 3}  # the other keys kept
    assert sw.base["seed"] == 9 and sw.base["topology"] == file["topology"]
    # where a table meets a value (either way round) the [base] one replaces it whole
    assert isinstance(file["model"], dict) and isinstance(file["stack"], str)
    assert sw.base["model"] == "llama-3.1-8b" and sw.base["stack"] == {"name": "x"}


def test_input_files_are_the_local_files_a_point_reads():
    assert all(p.key for p in predict().points())
    assert predict()._input_files({"blocks": 8}) == []  # a preset spec: no file
    sw = Sweep.from_dict({"sweep": {"kind": "run", "base": "mooncake_conversation.toml"},
                          "grid": {"stack": ["nccl"]}}, base_dir=SCENARIOS)
    # a trace given by name (the shipped one) is no file beside the scenario: nothing to read
    assert sw._input_files(sw.points()[0].as_dict) == []
    assert sw._input_files({"workload.trace": str(SCENARIOS / "agentic_repo.toml")}) == [
        str((SCENARIOS / "agentic_repo.toml").resolve())]


def test_a_predict_points_topology_file_is_read_beside_the_sweep_and_keys_its_points(
        tmp_path, monkeypatch):
    import topologies

    (tmp_path / "sub" / "t").mkdir(parents=True)
    ring = tmp_path / "sub" / "t" / "two.toml"
    topologies.dump(topologies.parse_spec("single_node:gpus=2"), ring)
    data = {"sweep": {"kind": "predict"}, "base": {"src": "n0/gpu0", "dst": "n0/gpu1"},
            "grid": {"topology": ["t/two.toml"], "blocks": [8]}}
    monkeypatch.chdir(tmp_path)  # not the sweep's folder
    sw = Sweep.from_dict(data, base_dir=tmp_path / "sub")
    (point,) = sw.points()
    assert sw._input_files(point.as_dict) == [str(ring.resolve())]
    rows = run_point("predict", sw.base, sw.base_dir, point)["rows"]
    assert [r["option"] for r in rows] == ["route", "fetch", "local"]
    topologies.dump(topologies.parse_spec("single_node:gpus=2,nvlink=nvlink3"), ring)
    assert sw.points()[0].key != point.key  # the file changed: the point is computed again
    # a file in the working folder but not beside the sweep is not read
    topologies.dump(topologies.parse_spec("single_node:gpus=2"), tmp_path / "here.toml")
    sw = Sweep.from_dict({**data, "grid": {"topology": ["here.toml"], "blocks": [8]}},
                         base_dir=tmp_path / "sub")
    got = run_point("predict", sw.base, sw.base_dir, sw.points()[0])
    assert str(tmp_path / "sub" / "here.toml") in got["error"] and "not found" in got["error"]
    # a shipped preset file not beside the sweep is still found
    sw = Sweep.from_dict({**data, "grid": {"topology": ["topologies/presets/single_node.toml"],
                                           "blocks": [8]}}, base_dir=tmp_path / "sub")
    assert "rows" in run_point("predict", sw.base, sw.base_dir, sw.points()[0])


# -- one point, computed here -------------------------------------------------------------------


def test_a_predict_point_is_the_oracle_round_for_each_option():
    import topologies
    from simulator.gpu.profiled import default_kernels
    from simulator.models import model
    from simulator.testing.oracle import round_phases

    base = {"topology": "dgx_h100:nodes=2", "stack": "nccl"}
    point = Point(0, (("batch", 3), ("blocks", 24), ("reuse", 2.0)), "p", 0)
    rows = run_point("predict", base, ".", point)["rows"]
    assert [r["option"] for r in rows] == ["route", "fetch", "local"]
    g = topologies.parse_spec("dgx_h100:nodes=2")
    d = PREDICT_DEFAULTS
    totals = {}
    for r in rows:
        want = round_phases(r["option"], g, model(d["model"]), default_kernels(), d["src"],
                            d["dst"], 24, 3, stack="nccl", reuse=2.0)
        for phase, attr in [("probe", "probe"), ("transfer", "transfer"),
                            ("compute", "compute"), ("return", "ret"), ("merge", "merge")]:
            assert math.isclose(r[f"{phase}_time"], getattr(want, attr), rel_tol=1e-9,
                                abs_tol=1e-18), (r["option"], phase)
        assert math.isclose(r["total_time"], want.total, rel_tol=1e-9)
        totals[r["option"]] = want.total
    assert {r["decision"] for r in rows} == {min(totals, key=totals.get)}


def test_a_failing_point_comes_back_as_an_error_not_an_exception():
    unknown = run_point("predict", {"zeta": 1, "alpha": 2}, ".", Point(0, (), "p", 0))
    assert unknown == {"error": "UserError: predict sweep: unknown field 'alpha'",
                       "detail": "predict sweep: unknown field 'alpha'"}
    # not a UserError: the detail is the traceback
    crash = run_point("predict", {"blocks": "many"}, ".", Point(0, (), "p", 0))
    assert crash["error"].startswith("ValueError: ")
    assert crash["detail"].startswith("Traceback") and "ValueError" in crash["detail"]
    assert "rows" not in unknown and "rows" not in crash


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """The Mooncake scenario on a trace of one request (and one of two, beside it)."""
    folder = tmp_path_factory.mktemp("tiny")
    text = (SCENARIOS / "mooncake_conversation.toml").read_text()
    (folder / "s.toml").write_text(text.replace('"mooncake_conversation"', '"one.jsonl"'))
    line = '{"timestamp": 0, "input_length": 300, "output_length": 3, "hash_ids": [1]}\n'
    (folder / "one.jsonl").write_text(line)
    (folder / "two.jsonl").write_text(line + line.replace("0,", "1,", 1))
    return folder


def test_a_run_point_runs_each_scenario_policy_on_the_points_scenario(tiny_run):
    from simulator.scenario import read_toml

    base = read_toml(tiny_run / "s.toml")
    every = run_point("run", base, str(tiny_run), Point(0, (), "p", 0))["rows"]
    assert [r["policy"] for r in every] == base["policies"]
    assert all(r["requests"] == 1 for r in every)
    # the point's fields are set on the scenario: another trace file
    two = run_point("run", base, str(tiny_run),
                    Point(0, (("policy", "fetch"), ("workload.trace", "two.jsonl")), "p", 0))
    assert [(r["policy"], r["requests"]) for r in two["rows"]] == [("fetch", 2)]
    # records are flat: nested summary tables become dotted columns
    row = two["rows"][0]
    assert not any(isinstance(v, dict) for v in row.values())
    assert row["options.fetch"] == row["rounds"] > 0
    assert row["note"] == ""


def test_a_run_point_notes_a_policy_that_moves_no_kv(tiny_run):
    from simulator.scenario import read_toml

    base = read_toml(tiny_run / "s.toml")
    (row,) = run_point("run", base, str(tiny_run), Point(0, (("policy", "local"),), "p", 0))[
        "rows"]
    assert row["rounds"] == 0
    assert row["note"].startswith("no rounds: no KV crossed between GPUs")


def test_ids_and_keys_are_16_hex_digits_whatever_the_order_of_the_base():
    # a point's result is the file OUT/points/<id>-<key>.parquet; reordering the tables of the
    # sweep file (or the scenario) must not change which file that is
    import re

    a = predict(base={"model": "deepseek-v3", "topology": "dgx_h100:nodes=2",
                      "stack": "nccl"}).points()
    b = predict(base={"stack": "nccl", "topology": "dgx_h100:nodes=2",
                      "model": "deepseek-v3"}).points()
    assert [p.key for p in a] == [p.key for p in b]
    assert all(re.fullmatch("[0-9a-f]{16}", s) for p in a for s in (p.point_id, p.key))
    c = predict(base={"model": "deepseek-v3", "topology": "dgx_h100:nodes=3",
                      "stack": "nccl"}).points()
    assert [p.key for p in c] != [p.key for p in a]


def test_point_ids_do_not_depend_on_the_order_of_the_fields():
    from simulator.sweep.spec import point_id

    assert point_id("run", {"stack": "nccl", "seed": 1}) == point_id("run",
                                                                     {"seed": 1, "stack": "nccl"})
    assert point_id("run", {"seed": 1}) != point_id("predict", {"seed": 1})


def test_another_installed_version_gives_other_keys(monkeypatch):
    import importlib.metadata

    before = [p.key for p in predict().points()]
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.0.0-other")
    assert [p.key for p in predict().points()] != before


def test_a_worker_task_computes_its_point():
    # that workers leave Ctrl-C to the client: tests/test_local_pool.py
    from simulator.sweep.executor import _run_task

    sw = predict()
    (p,) = sw.points()
    outcome = _run_task((sw.kind, sw.base, sw.base_dir, p, False))
    assert [r["option"] for r in outcome["rows"]] == ["route", "fetch", "local"]


# -- every point checked before any runs ------------------------------------------------------


@pytest.mark.parametrize(("grid", "message"), [
    ({"blocks": [8], "zz": [1], "aa": [1]}, "field 'aa': not a kind = \"predict\" field"),
    ({"model": ["no-such-model"]}, "no-such-model"),
    ({"stack": ["carrier-pigeon"]}, "carrier-pigeon"),
    ({"src": ["n9/gpu0"]}, "field 'src': 'n9/gpu0' is not a GPU of dgx_h100"),
    ({"dst": ["n0/nic0"]}, "field 'dst': 'n0/nic0' is not a GPU of dgx_h100"),
    ({"blocks": [0]}, "field 'blocks': 0 is not a number > 0"),
    ({"batch": [-1]}, "field 'batch'"),
    ({"reuse": [True]}, "field 'reuse'"),
    ({"block_tokens": ["64"]}, "field 'block_tokens'"),
    ({"blocks": [math.inf]}, "field 'blocks'"),
    ({"blocks": [math.nan]}, "field 'blocks'"),
    ({"bandwidth": [0]}, "field 'bandwidth'"),
])
def test_a_predict_point_that_cannot_run_is_refused_naming_the_point_and_field(grid, message):
    from simulator.sweep.check import check_points

    grid = {"blocks": [8], **grid}
    sw = predict(grid=grid, base={"topology": "dgx_h100"})
    with pytest.raises(UserError, match=re.escape(message)) as err:
        check_points(sw)
    assert str(err.value).startswith("s.toml point 0 (")


def test_predict_points_with_allowed_values_pass_the_check():
    import topologies
    from simulator.sweep.check import check_points

    g = topologies.parse_spec("dgx_h100")
    assert "n0/nic0" in g and g.nodes["n0/nic0"].get("kind") != "gpu"  # the refusal above
    check_points(predict(grid={"blocks": [0.5, 8], "bandwidth": [1e9], "src": ["n0/gpu7"],
                               "dst": ["n0/gpu1"]}, base={"topology": "dgx_h100"}))
    # at the bounds: a size of 1e15, a whole batch and block written as floats
    check_points(predict(grid={"blocks": [1e15], "batch": [2.0], "block_tokens": [64.0]},
                         base={"topology": "dgx_h100"}))


def test_a_run_sweep_over_a_trace_of_one_request_passes_the_check(tiny_run):
    from simulator.sweep.check import check_points

    # the trace's block size is read from its one row; 64 divides its 512-token blocks
    check_points(_run_sweep({"placement.block_tokens": [64]}, base="s.toml",
                            base_dir=tiny_run))


def test_a_run_sweep_over_an_empty_trace_passes_the_check(tmp_path):
    from simulator.sweep.check import check_points

    # no row to read a block size from: nothing to divide (an empty run is a result)
    text = (SCENARIOS / "mooncake_conversation.toml").read_text()
    (tmp_path / "s.toml").write_text(text.replace('"mooncake_conversation"', '"none.jsonl"'))
    (tmp_path / "none.jsonl").write_text("")
    check_points(_run_sweep({"placement.block_tokens": [64]}, base="s.toml", base_dir=tmp_path))


def _run_sweep(grid: dict, base: str = "agentic_repo.toml", base_dir: Path = SCENARIOS,
               **head) -> Sweep:
    return Sweep.from_dict({"sweep": {"kind": "run", "base": base, **head}, "grid": grid},
                           source="r.toml", base_dir=base_dir)


def test_a_run_point_with_an_unknown_policy_or_field_is_refused_naming_it():
    from simulator.sweep.check import check_points

    with pytest.raises(UserError, match=re.escape(
            "r.toml: field 'grid.policy': unknown policy 'teleport'; known: ")):
        check_points(_run_sweep({"policy": ["route", "teleport"]}))
    with pytest.raises(UserError, match=re.escape(
            "r.toml point 1 (workload.agentic.subagents=0): ")):
        check_points(_run_sweep({"workload.agentic.subagents": [4, 0]}))
    check_points(_run_sweep({"policy": ["route", "fetch"]}))  # known policies pass


def test_each_run_point_is_checked_for_its_policy_with_one_workers_share_of_memory(
        monkeypatch):
    # `parallel` points run at once, so each may use MEMORY_SHARE of the memory / parallel
    from simulator import runner
    from simulator.sweep.check import check_points

    calls = []
    monkeypatch.setattr(runner, "memory_bytes", lambda: 1e9)
    monkeypatch.setattr(runner, "check", lambda scenario, policies, *, memory: calls.append(
        (scenario.stack, policies, memory)))
    check_points(_run_sweep({"policy": ["route", "fetch"], "stack": ["nccl", "ibgda"]}),
                 parallel=4)
    share = runner.MEMORY_SHARE * 1e9
    assert sorted(calls) == sorted((s, (p,), share / 4) for p in ("route", "fetch")
                                   for s in ("nccl", "ibgda"))
    calls.clear()
    check_points(_run_sweep({"stack": ["nccl"]}), parallel=0)  # (at least one worker)
    assert calls == [("nccl", None, share)]  # no policy field: the scenario's policies


def test_a_run_sweeps_trace_is_read_once_and_a_bad_line_refused_unless_skipped(tmp_path,
                                                                                monkeypatch):
    import dataclasses

    import workloads
    from simulator.sweep.check import check_points

    text = (SCENARIOS / "mooncake_conversation.toml").read_text()
    (tmp_path / "s.toml").write_text(text.replace('"mooncake_conversation"', '"t.jsonl"'))
    line = '{"timestamp": 0, "input_length": 300, "output_length": 3, "hash_ids": [1]}\n'
    (tmp_path / "t.jsonl").write_text(line + "not json\n")
    sw = _run_sweep({"policy": ["route", "fetch"]}, base="s.toml", base_dir=tmp_path)
    with pytest.raises(UserError, match="t.jsonl"):
        check_points(sw)
    loads = []
    real = workloads.load
    monkeypatch.setattr(workloads, "load", lambda *a, **k: loads.append(a) or real(*a, **k))
    check_points(dataclasses.replace(sw, skip_bad=True))  # bad lines skipped: it passes
    assert len(loads) == 1  # two points, one trace file: read once


def test_points_with_the_same_scenario_and_policy_are_checked_once(monkeypatch):
    # the grid's topology table is overridden by topology.nodes: two points (their tables'
    # keys in another order), one scenario to check
    from simulator import runner
    from simulator.sweep.check import check_points

    calls = []
    monkeypatch.setattr(runner, "check", lambda scenario, policies, *, memory: calls.append(
        scenario.topology.nodes))
    sw = _run_sweep({"topology": [{"preset": "dgx_h100", "nodes": 2},
                                  {"nodes": 3, "preset": "dgx_h100"}], "topology.nodes": [4]})
    check_points(sw)
    assert calls == [4]


def test_a_dotted_field_under_a_table_value_leaves_the_grid_as_it_was():
    # Sweep.scenario_data once set the grid's own table into the point's scenario, so the
    # dotted field below it wrote into the grid: points' parameters and ids changed after the
    # first look, and points whose tables differed only there collapsed into one
    sw = _run_sweep({"topology": [{"preset": "dgx_h100", "nodes": 2},
                                  {"preset": "dgx_h100", "nodes": 3}], "topology.nodes": [4]})
    before = [(p.point_id, p.key, p.params) for p in sw.points()]
    assert len(before) == 2 and before[0][0] != before[1][0]
    for p in sw.points():
        assert sw.scenario_data(dict(p.params))["topology"] == {"preset": "dgx_h100", "nodes": 4}
    assert [(p.point_id, p.key, p.params) for p in sw.points()] == before
    assert [t["nodes"] for t in dict(sw.grid)["topology"]] == [2, 3]
