"""``benchmarks/fuzz.py``: its draws are valid scenarios or one-line refusals, the same seed
gives the same cases, its checks catch broken records, and each outcome is named as it is."""

from __future__ import annotations

import random
import time
import types

import pytest
from benchtools import benchmark

from simulator import Scenario, run
from simulator.engine.records import REQUEST_COLUMNS, requests_frame
from simulator.errors import UserError
from simulator.runner import load_trace

fuzz = benchmark("fuzz")

#: A small case in the generators' format: two GPUs, two policies, a few sub-agents.
SMALL = {
    "name": "fuzz", "seed": 1, "stack": "ibgda",
    "topology": {"spec": "single_node:gpus=2"},
    "model": {"name": "deepseek-v3.2", "selection": "dsa"},
    "policies": ["fetch", "route"],
    "placement": {"scheme": "first_writer", "home": "least_loaded", "weights_per_gpu": 60e9},
    "engine": {"max_batch": 4, "layer_groups": 2, "mode": "fast", "max_requests": 6},
    "workload": {"kind": "agentic", "agentic": {
        "repo_tokens": 2048, "repo_min_tokens": 512, "n_repos": 1, "subagents": 2,
        "output_tokens_mean": 4.0, "tool_tokens_mean": 32.0, "task_rate": 2.0,
        "duration_time": 2.0}},
}


@pytest.mark.parametrize("kind", sorted(fuzz.KINDS))
def test_every_draw_is_a_scenario_or_a_one_line_refusal_and_a_seed_repeats_its_draws(kind):
    draw = fuzz.KINDS[kind]
    cases = [draw(random.Random(7)) for _ in range(2)]
    assert cases[0] == cases[1]
    rng = random.Random(3)
    valid = 0
    for _ in range(25):
        d = draw(rng)
        try:
            Scenario.from_dict(fuzz.scenario_fields(d))
            valid += 1
        except UserError as e:
            assert "\n" not in str(e).strip()
    assert valid >= 5  # mostly valid: the space is the one a user writes in


def _result(requests, **summary):
    return types.SimpleNamespace(requests=requests, summary=summary)


def test_the_summary_checks_name_what_the_records_deny():
    done = dict.fromkeys(REQUEST_COLUMNS, 0) | {"home": "g0", "first_token_at": 1.0,
                                               "finished_at": 2.0, "output_tokens": 3,
                                               "tokens_generated": 3, "completed": True,
                                               "reason": ""}
    req = requests_frame([tuple(done.values())])
    assert fuzz.summary_problems(_result(req, decode_tokens=3, unfinished={}, ttft_p50=1.0,
                                         sim_time=2.0, bytes_moved=0.0)) == []
    got = fuzz.summary_problems(_result(req, decode_tokens=2, unfinished={"x": 1},
                                        ttft_p50=float("nan"), tbt_p99=float("inf"),
                                        sim_time=2.0, bytes_moved=-1.0))
    assert len(got) == 5 and any("decode_tokens 2" in g for g in got)
    assert any("tbt_p99 is infinite" in g for g in got)
    assert any("ttft_p50 = nan with 1 requests completed" in g for g in got)
    assert any("bytes_moved = -1.0" in g for g in got)
    assert any("1 unfinished, the records 0" in g for g in got)
    # nothing completed: NaN is "no data", not a fault
    empty = requests_frame([])
    assert fuzz.summary_problems(_result(empty, decode_tokens=0, unfinished={},
                                         ttft_p50=float("nan"), sim_time=0.0,
                                         bytes_moved=0.0)) == []


def test_a_run_passes_the_checks_and_a_broken_copy_of_it_does_not():
    sc = Scenario.from_dict(SMALL)
    trace = load_trace(sc, sc.seed)
    res = run(sc, "fetch", trace=trace)
    assert res.summary["completed"] > 0 and fuzz.problems(res, trace, "fetch") == []
    broken = types.SimpleNamespace(**vars(res))
    broken.requests = res.requests.copy()
    first = broken.requests.index[broken.requests["completed"]][0]
    broken.requests.loc[first, "tokens_generated"] -= 1  # completed, a token short
    got = fuzz.problems(broken, trace, "fetch")
    assert got and all(g.startswith("fetch: ") for g in got)


def test_each_outcome_is_named(monkeypatch):
    assert fuzz.run_case(SMALL, timeout=120)["status"] == "ok"
    refused = fuzz.run_case(SMALL | {"stack": "carrier-pigeon"})
    assert refused["status"] == "REFUSED" and "stack" in refused["detail"]

    def fails(*a, **k):
        raise ValueError("a bug")
    monkeypatch.setattr(fuzz, "run", fails)
    got = fuzz.run_case(SMALL)
    assert got["status"] == "ERROR" and "ValueError: a bug" in got["detail"]

    def slow(*a, **k):
        time.sleep(5)
    monkeypatch.setattr(fuzz, "run", slow)
    assert fuzz.run_case(SMALL, timeout=1)["status"] == "TIMEOUT"


def test_the_engines_contract_for_a_request_alone_is_held_to_1e_6():
    exact = {"sim_time": 1.0, "ttft_p50": 0.5, "tbt_p50": float("nan"), "completed": 1,
             "policy": "route"}
    assert fuzz.lone_differences(exact, dict(exact)) == {}
    assert fuzz.lone_differences(exact, exact | {"sim_time": 1.0 + 9e-7}) == {}  # within
    assert fuzz.lone_differences(exact, exact | {"sim_time": 1.0 + 2e-6}) == {
        "sim_time": (1.0, 1.0 + 2e-6)}
    assert list(fuzz.lone_differences(exact, exact | {"tbt_p50": 0.01})) == ["tbt_p50"]  # NaN
    assert fuzz.lone_differences(exact, exact | {"completed": 0}) == {"completed": (1, 0)}
    assert fuzz.lone_differences(exact, exact | {"policy": "fetch"}) == {}  # not a time


def test_lone_cuts_every_case_to_one_request_and_keeps_the_draws(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(fuzz, "run_case", lambda d, timeout: seen.append(d) or {
        "status": "ok", "problems": [], "detail": "", "time": 0.0})
    assert fuzz.main(["--seed", "4", "--cases", "5", "--lone"]) == 0
    lone = [d["engine"]["max_requests"] for d in seen]
    seen.clear()
    assert fuzz.main(["--seed", "4", "--cases", "5"]) == 0
    assert lone == [1] * 5 and [d["engine"]["max_requests"] for d in seen] != lone
    assert [d["model"] for d in seen] == [fuzz.KINDS["plain"](r)["model"]
                                          for r in [random.Random(4)] for _ in range(5)]
    assert "ok 5" in capsys.readouterr().out


def test_bad_arguments_exit_2_before_any_case(capsys):
    with pytest.raises(SystemExit) as e:
        fuzz.main(["--kind", "nope"])
    assert e.value.code == 2 and "--kind" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        fuzz.main(["--cases", "0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        fuzz.main(["--cases", "1", "--out", "/nonexistent-folder/cases.jsonl"])
    assert e.value.code == 2 and "--out /nonexistent-folder" in capsys.readouterr().err
