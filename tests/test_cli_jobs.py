"""Policies run at once (simulator/cli/jobs.py): the workers' progress reaches the parent, a run
that fails raises its error in the parent, and the default number of jobs follows the CPUs."""

from __future__ import annotations

import os

import pytest
from clitools import small_scenario

from simulator.cli import jobs
from simulator.errors import UserError
from simulator.scenario import Scenario


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return Scenario.load(small_scenario(tmp_path_factory.mktemp("jobs"), requests=5))


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


def test_a_failed_run_stops_the_others_at_once(tiny, tmp_path):
    """The other run would take minutes (20,000 requests): its worker is ended, not waited
    for, and no worker process is left behind."""
    import multiprocessing
    import time

    long = Scenario.load(small_scenario(tmp_path, requests=20_000, output_tokens=200,
                                        gap=1e-4))
    # children of this test process from before (another test's pool still exiting under
    # load) are not this call's
    before = set(multiprocessing.active_children())
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="no-such-policy"):
        jobs.run_policies(long, ["route", "no-such-policy"], 1, jobs=2)
    assert set(multiprocessing.active_children()) - before == set()
    assert time.perf_counter() - t0 < 60.0


@pytest.mark.parametrize(("cpus", "policies", "expected"), [
    (1, 5, 2), (1, 1, 1), (1, 0, 1), (3, 4, 4), (3, 9, 6), (8, 3, 3)])
def test_by_default_every_policy_runs_at_once_up_to_two_per_cpu(monkeypatch, cpus, policies,
                                                                  expected):
    # the CPUs this process (pid 0) may use
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus if pid == 0 else 64)),
                        raising=False)
    assert jobs.default_jobs([f"p{i}" for i in range(policies)]) == expected


def test_without_an_affinity_call_the_cpu_count_is_used(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert jobs.default_jobs(["a"] * 9) == 4
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one CPU
    assert jobs.default_jobs(["a"] * 9) == 2


def test_a_worker_posts_its_progress_and_answers_with_the_result_or_the_error(tiny):
    posted = []
    status, res = jobs._worker_run((tiny, "route", 1, None, None), posted.append)
    assert status == "ok" and res.summary["completed"] == 5
    assert posted[-1] == (5, 5) and [d for d, _ in posted] == sorted(d for d, _ in posted)
    status, err = jobs._worker_run((tiny, "no-such-policy", 1, None, None), posted.append)
    assert status == "error" and isinstance(err, UserError) and "no-such-policy" in str(err)


def test_a_run_whose_process_died_is_a_clear_error_naming_the_policy():
    status, err = jobs._died(("scenario", "fetch", 0, None, None), -9)
    assert status == "error" and isinstance(err, UserError)
    assert "policy 'fetch' was killed by signal 9" in str(err) and "--jobs 1" in str(err)


@pytest.mark.parametrize(("policies", "n_jobs"), [(["route", "fetch"], 1), (["route"], 4)])
def test_one_job_or_one_policy_runs_here_one_after_another(tiny, monkeypatch, policies, n_jobs):
    """No process is spawned (the help's promise for --jobs 1): the runs are this process's
    own calls, in the order asked for, each with the trace loaded once here."""
    import simulator.runner as runner

    calls = []
    monkeypatch.setattr(runner, "load_trace", lambda sc, seed, skip_bad=False: "the trace")
    monkeypatch.setattr(runner, "run", lambda sc, p, seed, **kw: calls.append((p, kw)) or p)
    seen = []
    out = jobs.run_policies(tiny, policies, 7, lambda *a: seen.append(a), jobs=n_jobs,
                            engine="fast")
    assert out == {p: p for p in policies}
    assert [p for p, _ in calls] == policies
    for _, kw in calls:
        assert kw["trace"] == "the trace" and kw["engine"] == "fast"
        kw["progress"](1, 2)  # each run's progress is told apart by its policy
    assert seen == [(p, 1, 2) for p in policies]
