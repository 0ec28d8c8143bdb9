"""Policies run at once (simulator/cli/jobs.py): the workers' progress reaches the parent, a run
that fails raises its error in the parent, and the default number of jobs follows the CPUs."""

from __future__ import annotations

import os

import numpy as np
import pytest

from simulator.cli import jobs
from simulator.errors import UserError
from simulator.scenario import Scenario
from workloads.schema import make_trace, write_trace

SCENARIO = """
name = "tiny"
seed = 1
[topology]
spec = "single_node:gpus=2"
[model]
name = "deepseek-v3.2"
[workload]
kind = "trace"
trace = "tiny.parquet"
[placement]
scheme = "hash"
weights_per_gpu = 40e9
[engine]
max_batch = 4
layer_groups = 2
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jobs")
    n = 5
    write_trace(make_trace(arrival_at=list(np.arange(n) * 0.01), input_tokens=[3000] * n,
                           output_tokens=[3] * n, block_ids=[list(range(47))] * n,
                           block_tokens=64), tmp / "tiny.parquet")
    (tmp / "tiny.toml").write_text(SCENARIO)
    return Scenario.load(tmp / "tiny.toml")


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_every_runs_progress_reaches_the_caller_up_to_its_last_request(tiny, n_jobs):
    seen: dict[str, list[tuple[int, int]]] = {}
    out = jobs.run_policies(tiny, ["fetch", "route"], 1,
                            lambda p, done, total: seen.setdefault(p, []).append((done, total)),
                            jobs=n_jobs)
    assert list(out) == ["fetch", "route"]  # the order asked for, whichever ends first
    assert sorted(seen) == ["fetch", "route"]
    for calls in seen.values():
        done = [d for d, _ in calls]
        assert done == sorted(done) and calls[-1] == (5, 5)
    assert all(r.summary["completed"] == 5 for r in out.values())


def test_a_run_that_fails_in_a_worker_raises_its_error_here(tiny):
    with pytest.raises(UserError, match="no-such-policy"):
        jobs.run_policies(tiny, ["route", "no-such-policy"], 1, jobs=2)


@pytest.mark.parametrize(("cpus", "policies", "expected"), [
    (1, 5, 2), (1, 1, 1), (1, 0, 1), (3, 4, 4), (3, 9, 6), (8, 3, 3)])
def test_by_default_every_policy_runs_at_once_up_to_two_per_cpu(monkeypatch, cpus, policies,
                                                                  expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert jobs.default_jobs([f"p{i}" for i in range(policies)]) == expected


def test_without_an_affinity_call_the_cpu_count_is_used(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert jobs.default_jobs(["a"] * 9) == 4
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one CPU
    assert jobs.default_jobs(["a"] * 9) == 2


def test_a_worker_ends_its_progress_with_a_marker_after_the_last_request(tiny, monkeypatch):
    """The parent waits for the marker: a queue's items can arrive after the run's result."""

    class Queue(list):
        put = list.append

    monkeypatch.setattr(jobs, "_QUEUE", Queue())
    res = jobs._worker_run(tiny, "route", 1, None, None)
    assert res.summary["completed"] == 5
    assert jobs._QUEUE[-2:] == [("route", 5, 5), ("route", None, None)]
    assert all(p == "route" and d is not None for p, d, _ in jobs._QUEUE[:-1])
