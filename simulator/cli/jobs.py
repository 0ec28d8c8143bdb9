"""Running a scenario under its policies: one after another, or at once in spawned processes.

``kvfabric run --jobs N`` (:mod:`simulator.cli.run`) runs up to ``N`` policies at once, each in a
process of its own (a run is independent of the others: the same results as one after another);
the workers' progress comes back to the parent on a queue, and Ctrl-C or a failed run stops the
others at once.
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


_QUEUE = None  # a worker's progress queue (set by _worker_init)


def _worker_init(queue) -> None:
    import signal

    global _QUEUE
    _QUEUE = queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C


def _worker_run(scenario, policy, seed, trace, engine):
    from simulator.runner import run

    def cb(done, total):
        _QUEUE.put((policy, done, total))

    result = run(scenario, policy, seed, trace=trace, progress=cb, engine=engine)
    # behind the run's last progress on the same queue: the parent waits for it, so no
    # progress is lost to the queue's feeder thread when the result comes back first
    _QUEUE.put((policy, None, None))
    return result


def _run_parallel(scenario, policies, seed, progress, trace, engine, jobs: int) -> dict:
    """:func:`run_policies` over ``jobs`` spawned processes; progress comes back on a queue."""
    import queue as queues
    from concurrent.futures import ProcessPoolExecutor, wait
    from multiprocessing import get_context

    ctx = get_context("spawn")
    q = ctx.Queue()
    ended: set[str] = set()  # runs whose last progress has arrived

    def drain(timeout: float) -> None:
        try:
            while True:
                policy, done, total = q.get(timeout=timeout)
                if done is None:
                    ended.add(policy)
                elif progress is not None:
                    progress(policy, done, total)
                timeout = 0.0
        except queues.Empty:
            pass

    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(q,))
    try:
        futures = {pool.submit(_worker_run, scenario, p, seed, trace, engine): p
                   for p in policies}
        pending = set(futures)
        while pending:
            drain(0.2)
            finished, pending = wait(pending, timeout=0)
            for f in finished:
                if f.exception() is not None:  # a run failed: stop the others now
                    raise f.exception()
        for _ in range(50):  # the runs' last progress: sent before their results, so at once
            if len(ended) == len(policies):
                break
            drain(0.1)
        done = {futures[f]: f.result() for f in futures}
    except BaseException:
        # Ctrl-C or a failed run: stop the other runs now (the workers ignore SIGINT, and the
        # executor's exit hook would otherwise wait for them to finish)
        # the executor's worker table and manager thread, held before shutdown drops them:
        # the thread may still start a worker as it winds down; once it has stopped, every
        # worker in the table is ended too
        table = getattr(pool, "_processes", None) or {}
        manager = getattr(pool, "_executor_manager_thread", None)
        workers = list(table.values())
        for proc in workers:
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        if manager is not None:
            manager.join(timeout=5)
        for proc in {*workers, *table.values()}:
            proc.terminate()
            proc.join(timeout=5)
            if proc.is_alive():  # SIGTERM not acted on in time (a loaded machine): SIGKILL
                proc.kill()
                proc.join(timeout=5)
        raise
    pool.shutdown()
    return {p: done[p] for p in policies}
