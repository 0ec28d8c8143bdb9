"""Running a scenario under its policies: one after another, or at once in spawned processes.

``kvfabric run --jobs N`` (:mod:`simulator.cli.run`) runs up to ``N`` policies at once, each in a
process of its own (a run is independent of the others: the same results as one after another);
the workers' progress comes back to the parent on each worker's pipe, and Ctrl-C or a failed run
stops the others at once.
"""

from __future__ import annotations


def run_policies(scenario, policies, seed, progress=None, *, skip_bad: bool = False,
                 trace=None, engine=None, jobs: int = 1):
    """Run ``scenario`` for each policy (trace loaded once); returns ``{policy: Result}`` in
    the order of ``policies``.

    ``progress(policy, finished, total)`` is called as requests finish; ``skip_bad`` skips
    (and counts) trace lines that do not parse; ``trace``: already loaded; ``engine``
    overrides the scenario's ``[engine] mode``; ``jobs`` > 1 runs that many policies at once
    in spawned processes (each run is independent: the same results as one after another).
    """
    from simulator.runner import load_trace, run

    if trace is None:
        trace = load_trace(scenario, seed, skip_bad=skip_bad)
    if jobs > 1 and len(policies) > 1:
        return _run_parallel(scenario, policies, seed, progress, trace, engine,
                             min(jobs, len(policies)))
    out = {}
    for p in policies:
        cb = None if progress is None else (lambda done, total, p=p: progress(p, done, total))
        out[p] = run(scenario, p, seed, trace=trace, progress=cb, engine=engine)
    return out


def default_jobs(policies) -> int:
    """Policies run at once by default: every policy, up to two per CPU this process may use
    (runs differ in length, so a CPU that finishes one early takes up another's share; each
    process holds one run's memory)."""
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(len(policies), 2 * (cpus or 1)))


def _worker_run(task: tuple, post) -> tuple[str, object]:
    """One policy's run in a worker: ``("ok", Result)``, or ``("error", the exception)`` to
    raise in the parent; progress goes back through ``post`` before the answer."""
    from simulator.runner import run

    scenario, policy, seed, trace, engine = task
    try:
        return "ok", run(scenario, policy, seed, trace=trace, engine=engine,
                         progress=lambda done, total: post((done, total)))
    except Exception as exc:  # raised in the parent, which stops the other runs
        return "error", exc


def _died(task: tuple, exit_code: int) -> tuple[str, object]:
    from simulator.errors import UserError
    from simulator.sweep.local_pool import how_it_ended

    return "error", UserError(f"the process running policy {task[1]!r} "
                              f"{how_it_ended(exit_code)} (out of memory?); run fewer "
                              "policies at once (--jobs 1)")


def _run_parallel(scenario, policies, seed, progress, trace, engine, jobs: int) -> dict:
    """:func:`run_policies` over ``jobs`` spawned processes
    (:func:`simulator.sweep.local_pool.run_unordered`); a failed run, or Ctrl-C, ends the
    others at once."""
    from simulator.sweep.local_pool import run_unordered

    def report(task, message):
        if progress is not None:
            progress(task[1], *message)

    tasks = [(scenario, p, seed, trace, engine) for p in policies]
    done = {}
    answers = run_unordered(_worker_run, tasks, jobs, _died, on_message=report)
    try:
        for task, (status, value) in answers:
            if status == "error":
                raise value
            done[task[1]] = value
    finally:
        answers.close()  # ends the other runs now
    return {p: done[p] for p in policies}
