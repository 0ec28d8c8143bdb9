"""Sweeps: points and seeds are stable, backends agree bit for bit, interrupted sweeps resume,
failing points are reported without stopping the others."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from clitools import refuse_points

from simulator.errors import UserError
from simulator.sweep import Sweep, execute, executor, point_id


def predict_sweep(**grid) -> Sweep:
    grid = grid or {"blocks": [1, 32, 512], "stack": ["nccl", "ibgda"]}
    return Sweep.from_dict({
        "sweep": {"name": "t", "kind": "predict", "seed": 7},
        "grid": grid,
        "base": {"model": "deepseek-v3.2", "topology": "dgx_h100:nodes=2"},
    })


def test_grid_points_have_stable_ids_whatever_the_key_order():
    a = predict_sweep().points()
    b = predict_sweep(stack=["nccl", "ibgda"], blocks=[1, 32, 512]).points()
    assert len(a) == 6
    assert [p.point_id for p in a] == [p.point_id for p in b]
    assert [p.key for p in a] == [p.key for p in b]
    assert len({p.point_id for p in a}) == len({p.key for p in a}) == 6
    assert a[0].point_id == point_id("predict", {"blocks": 1, "stack": "nccl"})


SCENARIOS = Path(__file__).parent.parent / "scenarios"


def run_sweep(grid: dict, seed: int = 0, base: dict | None = None,
              scenario: str = "agentic_repo.toml", base_dir: Path = SCENARIOS) -> Sweep:
    return Sweep.from_dict({"sweep": {"name": "r", "kind": "run", "seed": seed, "base": scenario},
                            "grid": grid, "base": base or {}}, source="r.toml",
                           base_dir=base_dir)


def test_the_seed_depends_only_on_the_fields_that_change_the_workload():
    grid = {"policy": ["route", "fetch"], "stack": ["nccl", "ibgda"], "topology.nodes": [2, 3],
            "workload.agentic.subagents": [4, 8], "seed": [0, 1]}
    points = run_sweep(grid).points()
    assert len(points) == 32
    by_workload: dict = {}
    for p in points:
        d = p.as_dict
        by_workload.setdefault((d["workload.agentic.subagents"], d["seed"]), set()).add(p.seed)
    # policy, stack and cluster size leave the workload alone: one seed per workload ...
    assert all(len(seeds) == 1 for seeds in by_workload.values())
    # ... and the workload fields (and replications over `seed`) each get their own
    assert len({next(iter(s)) for s in by_workload.values()}) == 4
    other = run_sweep(grid, seed=1).points()
    assert [p.seed for p in other] != [p.seed for p in points]
    assert [p.point_id for p in other] == [p.point_id for p in points]


def test_random_sampling_is_reproducible_and_within_bounds():
    data = {"sweep": {"kind": "predict", "seed": 3, "samples": 12},
            "grid": {"stack": ["nccl", "ibgda"]},
            "random": {"blocks": {"low": 1, "high": 4096, "log": True, "integer": True}}}
    p1, p2 = Sweep.from_dict(data).points(), Sweep.from_dict(data).points()
    assert p1 == p2
    assert all(1 <= p.as_dict["blocks"] <= 4096 for p in p1)
    assert all(isinstance(p.as_dict["blocks"], int) for p in p1)


def test_the_closed_form_sweep_gathers_one_row_per_option(tmp_path):
    sweep = predict_sweep()
    res = execute(sweep, tmp_path, "local", progress=False)  # the default workers: the CPUs
    assert res.computed == 6 and not res.failures
    assert len(res.results) == 18
    # each row says which point it belongs to, with the point's seed and parameters, first
    assert list(res.results.columns[:6]) == ["point", "point_id", "point_seed", "blocks",
                                             "stack", "option"]
    by_point = {p.index: p for p in sweep.points()}
    for row in res.results.itertuples():
        p = by_point[row.point]
        assert (row.point_id, row.point_seed) == (p.point_id, p.seed)
        assert (row.blocks, row.stack) == (p.as_dict["blocks"], p.as_dict["stack"])
    assert set(res.results["option"]) == {"route", "fetch", "local"}
    on_disk = pd.read_parquet(tmp_path / "results.parquet")
    pd.testing.assert_frame_equal(on_disk, res.results)
    # More selected blocks make fetching dearer: the closed form's verdict shows it.
    fetch = res.results[(res.results.option == "fetch") & (res.results.stack == "ibgda")]
    assert fetch.sort_values("blocks")["total_time"].is_monotonic_increasing


def test_local_and_dask_backends_give_identical_results(tmp_path):
    local = execute(predict_sweep(), tmp_path / "local", "local", workers=2, progress=False)
    dask = execute(predict_sweep(), tmp_path / "dask", "dask", workers=2, progress=False)
    pd.testing.assert_frame_equal(local.results, dask.results)


def test_an_interrupted_sweep_resumes_and_computes_only_the_rest(tmp_path):
    seen = []

    def stop_after_two(point, outcome):
        seen.append(point.point_id)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(predict_sweep(), tmp_path, "local", workers=1, on_point=stop_after_two,
                progress=False)
    assert len(list((tmp_path / "points").glob("*.parquet"))) == 2
    assert not (tmp_path / "results.parquet").exists()

    again = []
    res = execute(predict_sweep(), tmp_path, "local", workers=1,
                  on_point=lambda p, o: again.append(p.point_id), progress=False)
    assert res.resumed == 2 and res.computed == 4
    assert not set(again) & set(seen)
    full = execute(predict_sweep(), tmp_path / "fresh", "local", workers=2, progress=False)
    pd.testing.assert_frame_equal(res.results, full.results)


def test_a_failing_point_is_reported_with_its_parameters_and_the_rest_finish(tmp_path):
    # validation would refuse this sweep up front (next test); check=False lets the points run,
    # as a failure no validation foresees would
    sweep = predict_sweep(model=["deepseek-v3.2", "no-such-model"], blocks=[8, 64])
    res = execute(sweep, tmp_path, "local", workers=2, progress=False, check=False)
    assert res.computed == 2
    assert sorted(f["params"]["blocks"] for f in res.failures) == [8, 64]
    assert all(f["params"]["model"] == "no-such-model" for f in res.failures)
    assert "no-such-model" in res.failures[0]["error"]
    written = json.loads((tmp_path / "failures.json").read_text())
    assert [f["point_id"] for f in written] == [f["point_id"] for f in res.failures]


@pytest.mark.parametrize(("sweep", "message"), [
    (lambda: predict_sweep(model=["deepseek-v3.2", "no-such-model"], blocks=[8]),
     "model='no-such-model'"),
    (lambda: predict_sweep(blockz=[8]), "field 'blockz'"),
    (lambda: predict_sweep(dst=["n9/gpu0"]), "field 'dst'"),
    (lambda: run_sweep({"workload.agentic.subagentz": [4, 8]}),
     "field 'workload.agentic.subagentz': unknown field"),
    (lambda: run_sweep({"workload.agentic.subagents": [4, 0]}),
     "field 'workload.agentic.subagents': subagents must be > 0"),
    (lambda: run_sweep({"policy": ["route", "teleport"]}), "field 'grid.policy'"),
    (lambda: run_sweep({"stack": ["ibgda", "carrier-pigeon"]}), "field 'stack'"),
    (lambda: run_sweep({"workload.agentic.task_rate": [0.06, 1e12]}),
     "lower workload.agentic.task_rate"),
])
def test_a_bad_point_stops_the_sweep_before_any_point_runs(tmp_path, sweep, message):
    with pytest.raises(UserError, match=re.escape(message)) as err:
        execute(sweep(), tmp_path / "out", "local", workers=2, progress=False)
    assert str(err.value).startswith(("<dict>", "r.toml"))
    assert not (tmp_path / "out").exists()


def test_a_changed_input_recomputes_the_point_and_an_unchanged_one_resumes(tmp_path,
                                                                         monkeypatch):
    from simulator.sweep import spec

    def sweep(seed=7, nodes=2):
        return Sweep.from_dict({
            "sweep": {"name": "t", "kind": "predict", "seed": seed}, "grid": {"blocks": [8, 64]},
            "base": {"model": "deepseek-v3.2", "topology": f"dgx_h100:nodes={nodes}"}})

    def counts(res):
        return res.computed, res.resumed, res.stale

    assert counts(execute(sweep(), tmp_path, "local", workers=1, progress=False)) == (2, 0, 0)
    assert counts(execute(sweep(), tmp_path, "local", workers=1, progress=False)) == (0, 2, 0)
    # another base (a bigger cluster): both points computed again, their old results replaced
    assert counts(execute(sweep(nodes=3), tmp_path, "local", workers=1,
                          progress=False)) == (2, 0, 2)
    assert len(list((tmp_path / "points").glob("*.parquet"))) == 2
    # so do another sweep seed and another kvfabric version
    assert counts(execute(sweep(seed=8, nodes=3), tmp_path, "local", workers=1,
                          progress=False)) == (2, 0, 2)
    monkeypatch.setattr(spec, "_version", lambda: "9.9.9")
    assert counts(execute(sweep(seed=8, nodes=3), tmp_path, "local", workers=1,
                          progress=False)) == (2, 0, 2)


def test_a_changed_base_scenario_or_trace_file_changes_the_point_key(tmp_path):
    text = (SCENARIOS / "mooncake_conversation.toml").read_text()
    (tmp_path / "s.toml").write_text(text.replace('"mooncake_conversation"', '"t.jsonl"'))
    line = '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}\n'
    (tmp_path / "t.jsonl").write_text(line)

    def keys():
        return [p.key for p in run_sweep({"stack": ["ibgda"]}, scenario="s.toml",
                                         base_dir=tmp_path).points()]

    first = keys()
    assert keys() == first
    (tmp_path / "t.jsonl").write_text(line * 2)  # the trace the base reads grew a line
    grown = keys()
    assert grown != first
    (tmp_path / "s.toml").write_text(text.replace('"mooncake_conversation"', '"t.jsonl"')
                                     .replace("nodes = 2", "nodes = 3"))
    assert keys() != grown


@pytest.mark.parametrize(("data", "message"), [
    ({"sweep": {"kind": "predict"}}, "field 'grid'"),
    ({"sweep": {"kind": "nope"}, "grid": {"a": [1]}}, "field 'sweep.kind'"),
    ({"sweep": {"kind": "predict"}, "grid": {"a": []}}, "field 'grid.a'"),
    ({"sweep": {"kind": "predict"}, "grid": {"a": [1]}, "random": {"b": {"low": 1, "high": 2}}},
     "samples = N"),
    ({"sweep": {"kind": "run"}, "grid": {"a": [1]}}, "field 'sweep.base'"),
    ({"sweep": {"kind": "predict", "seed": -1}, "grid": {"a": [1]}}, "field 'sweep.seed'"),
])
def test_bad_sweeps_get_a_message_naming_the_field(data, message):
    with pytest.raises(UserError, match=message):
        Sweep.from_dict(data, source="s.toml")


def test_cli_reports_a_missing_file_without_a_traceback(capsys, tmp_path):
    from simulator.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(tmp_path / "missing.toml")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "missing.toml" in err and "Traceback" not in err


@pytest.mark.parametrize("as_json", [False, True])
def test_a_sweep_with_a_failed_point_exits_1_with_or_without_json(tmp_path, monkeypatch,
                                                                   capsys, as_json):
    # points computed here, the second failing as a worker reports it
    from simulator.cli import main
    from simulator.sweep.points import run_point

    def run(tasks, sweep, workers):
        for p in tasks:
            yield p, ({"error": "UserError: boom", "detail": "boom"} if p.index == 1 else
                      run_point(sweep.kind, sweep.base, sweep.base_dir, p, sweep.skip_bad))

    monkeypatch.setattr(executor, "_iter_local", run)
    (tmp_path / "p.toml").write_text("[sweep]\nkind = 'predict'\n[grid]\nblocks = [8, 16]\n")
    argv = ["sweep", str(tmp_path / "p.toml"), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exc:
        main(argv + (["--json"] if as_json else []))
    assert exc.value.code == 1
    out = capsys.readouterr().out
    if as_json:
        summary = json.loads(out)
        assert (summary["failed"], summary["computed"]) == (1, 1)


def test_a_scenario_sweep_runs_the_engine_and_agrees_across_backends(tmp_path):
    from pathlib import Path

    example = Path(__file__).parent.parent / "scenarios" / "example_sweep.toml"
    sweep = Sweep.load(example)
    small = Sweep.from_dict({
        "sweep": {"name": "small", "kind": "run", "seed": 0, "base": "agentic_repo.toml"},
        "grid": {"policy": ["route", "fetch"], "stack": ["ibgda"]},
        "base": {"workload": {"agentic": {"subagents": 4, "turns_mean": 1.0}}},
    }, source="small", base_dir=example.parent)
    assert len(sweep.points()) == 8
    local = execute(small, tmp_path / "l", "local", workers=2, progress=False)
    dask = execute(small, tmp_path / "d", "dask", workers=2, progress=False)
    assert not local.failures and set(local.results["policy"]) == {"route", "fetch"}
    wall = [c for c in local.results.columns if c.endswith("wall_time")]
    pd.testing.assert_frame_equal(local.results.drop(columns=wall), dask.results.drop(columns=wall))
    # Same seed for both policies: the same requests entered both runs.
    assert local.results["requests"].nunique() == 1


def test_the_example_sweep_has_no_empty_point():
    from simulator.runner import load_trace
    from simulator.scenario import Scenario

    sweep = Sweep.load("example_sweep")  # a shipped sweep, by name
    sizes = {}
    for p in sweep.points():
        scenario = Scenario.from_dict(sweep.scenario_data(p.as_dict), base=sweep.base_dir)
        sizes[p.index] = len(load_trace(scenario, p.seed))
    assert len(sizes) == 8 and min(sizes.values()) > 0
    # nccl and ibgda points (and route and fetch) replay the same requests
    assert len(set(sizes.values())) == 2


@pytest.mark.parametrize(("backend", "workers", "cpus", "resumed", "want"), [
    ("local", None, 8, False, 6),  # the CPUs, but no more than the 6 points to do
    ("local", None, 4, False, 4),
    ("local", None, None, False, 1),  # CPU count unknown: one
    ("dask", None, 8, False, 2),  # a Dask LocalCluster: 2
    ("local", 3, 8, False, 3),
    ("local", 0, 8, False, 1),  # at least one
    ("local", None, 8, True, 1),  # every point finished already: nothing runs in parallel
])
def test_the_workers_are_the_cpus_or_as_given_but_no_more_than_the_points_to_do(
        tmp_path, monkeypatch, backend, workers, cpus, resumed, want):
    # the number of workers is how many points share this machine's memory in the check
    import os


    shared_by = refuse_points(monkeypatch, executor)
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    sweep = predict_sweep()
    if resumed:
        for p in sweep.points():
            executor.point_file(tmp_path / "points", p).parent.mkdir(exist_ok=True)
            executor.point_file(tmp_path / "points", p).touch()
    with pytest.raises(UserError, match="checked"):
        execute(sweep, tmp_path, backend, workers=workers, progress=False)
    assert shared_by == [want]


def test_a_sweep_that_cannot_write_its_points_is_refused_with_the_reason(tmp_path):
    (tmp_path / "points").write_text("a file where the points folder goes")
    with pytest.raises(UserError, match=re.escape(
            f"--out {tmp_path}: cannot write there (exists and is not a folder); choose a "
            "folder you can write")):
        execute(predict_sweep(), tmp_path, "local", workers=1, progress=False)
    assert not (tmp_path / "results.parquet").exists()


def test_each_backend_runs_the_points_its_own_way_with_the_same_results(tmp_path, monkeypatch,
                                                                        capsys):
    # the backends' runners replaced by one that computes each point here: which one runs,
    # with how many workers and which scheduler, and what the sweep makes of their outcomes
    from simulator.sweep.points import run_point

    used = []

    def runner(name):
        def run(tasks, sweep, workers, *scheduler):
            used.append((name, workers, scheduler))
            for p in tasks:
                yield p, run_point(sweep.kind, sweep.base, sweep.base_dir, p, sweep.skip_bad)
        return run

    monkeypatch.setattr(executor, "_iter_local", runner("local"))
    monkeypatch.setattr(executor, "_iter_dask", runner("dask"))
    connected = []  # a scheduler is connected to only when one is named
    monkeypatch.setattr(executor, "_connect",
                        lambda address: connected.append(address) or f"client of {address}")
    a = execute(predict_sweep(), tmp_path / "a", "local", workers=2, progress=False)
    assert capsys.readouterr() == ("", "")  # no progress bar unless asked
    b = execute(predict_sweep(), tmp_path / "b", "dask", workers=3, scheduler="tcp://x:1")
    # the bar names the sweep, the backend and the workers, and stays when done, full; on
    # stderr, so that stdout holds the results alone
    out, bar = capsys.readouterr()
    assert out == ""
    assert "sweep t (dask, 3 workers)" in bar and "100%" in bar
    assert used == [("local", 2, ()), ("dask", 3, ("client of tcp://x:1",))]
    # Dask without a scheduler starts a local cluster of its own: nothing to connect to
    execute(predict_sweep(), tmp_path / "d", "dask", workers=1, progress=False)
    assert used[-1] == ("dask", 1, (None,)) and connected == ["tcp://x:1"]
    assert (a.computed, a.resumed, len(a.results)) == (6, 0, 18)
    pd.testing.assert_frame_equal(a.results, b.results)
    again = execute(predict_sweep(), tmp_path / "a", "local", workers=2)
    assert (again.computed, again.resumed) == (0, 6) and len(used) == 3
    assert capsys.readouterr().out == ""  # nothing to do: no bar
    with pytest.raises(UserError, match="--backend 'ray': give one of local, dask"):
        execute(predict_sweep(), tmp_path / "c", "ray", progress=False)


def test_a_scheduler_address_that_does_not_parse_fails_before_anything_is_written(tmp_path):
    with pytest.raises(UserError, match="--scheduler notanaddress: cannot connect"):
        execute(predict_sweep(), tmp_path / "out", "dask", scheduler="notanaddress",
                progress=False)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_keeps_the_finished_points_ends_the_workers_and_failures_come_in_point_order(
        tmp_path, monkeypatch):
    # the local runner replaced by one that computes each point here, last point first (as
    # workers may finish), and notes when it is ended
    from simulator.sweep.points import run_point

    ended = []

    def run(tasks, sweep, workers):
        try:
            for p in reversed(tasks):
                yield p, run_point(sweep.kind, sweep.base, sweep.base_dir, p, sweep.skip_bad)
        finally:
            ended.append(len(tasks))

    monkeypatch.setattr(executor, "_iter_local", run)
    bad = predict_sweep(model=["deepseek-v3.2", "no-such-model"], blocks=[8, 64])
    res = execute(bad, tmp_path / "bad", "local", progress=False, check=False)
    assert [f["point"] for f in res.failures] == [1, 3]  # in point order, as in failures.json
    out = tmp_path / "out"
    execute(predict_sweep(), out, "local", progress=False)
    for p in predict_sweep().points()[:2]:  # two points to do again
        executor.point_file(out / "points", p).unlink()

    def stop(point, outcome):
        raise KeyboardInterrupt

    ended.clear()
    with pytest.raises(executor.Interrupted) as err:
        execute(predict_sweep(), out, "local", progress=False, on_point=stop)
    assert (err.value.finished, err.value.total) == (5, 6)  # 4 resumed + 1 computed
    assert ended == [2]  # the runner was ended before the sweep returned


def test_an_interrupt_just_after_a_point_is_written_counts_that_point(tmp_path, monkeypatch):
    # Ctrl-C between the atomic rename of a point's file and the client's count of it: the
    # message must name what is kept on disk (a CI run once said "0 of 48" with one file kept)
    written = executor.write_parquet

    def write_then_interrupt(df, target):
        written(df, target)
        raise KeyboardInterrupt

    monkeypatch.setattr(executor, "write_parquet", write_then_interrupt)
    with pytest.raises(executor.Interrupted) as err:
        execute(predict_sweep(), tmp_path, "local", workers=1, progress=False)
    assert (err.value.finished, err.value.total) == (1, 6)
    assert len(list((tmp_path / "points").glob("*.parquet"))) == 1
