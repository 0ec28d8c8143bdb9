"""The local sweep backend's process pool: every task answered once, a dead worker costs only
its task, and closing the pool ends every worker at once (stop 65: multiprocessing.Pool's
terminate could hang)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest

from simulator.sweep import executor
from simulator.sweep.local_pool import how_it_ended, run_unordered


def answers(gen, timeout: float = 60.0, take: int | None = None) -> list:
    """Drain ``gen`` (at most ``take`` answers) on a daemon thread; fail, not hang, past
    ``timeout`` s."""
    got: list = []

    def drain():
        for item in gen:
            got.append(item)
            if take is not None and len(got) == take:
                return

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"no answer within {timeout} s; got {got}"
    return got


def exit_on_odd(n: int) -> int:
    """A task that kills its worker (exit code ``n``) when ``n`` is odd; else ``10 n``."""
    if n % 2:
        os._exit(n)
    return 10 * n


def died(task, code):
    return ("died", code)


def test_every_task_is_answered_once_by_fewer_workers():
    got = answers(run_unordered(abs, list(range(-9, 1)), 3, died))
    assert sorted(got) == sorted((n, -n) for n in range(-9, 1))


def test_a_worker_that_dies_costs_its_task_only_and_is_replaced():
    # one worker: each death must start another, or the tasks after it never run
    got = dict(answers(run_unordered(exit_on_odd, [1, 2, 3, 4, 6], 1, died)))
    assert got == {1: ("died", 1), 2: 20, 3: ("died", 3), 4: 40, 6: 60}


def test_a_worker_killed_by_a_signal_is_reported_with_it():
    before = set(multiprocessing.active_children())  # before the pool's worker starts
    gen = run_unordered(time.sleep, [30], 1, died)

    def kill_the_worker():
        time.sleep(2)  # the worker has its task by now (or in its pipe: the same)
        for child in set(multiprocessing.active_children()) - before:
            os.kill(child.pid, signal.SIGKILL)

    threading.Thread(target=kill_the_worker, daemon=True).start()
    assert answers(gen, timeout=20) == [(30, ("died", -signal.SIGKILL))]


def test_no_tasks_start_no_workers():
    before = set(multiprocessing.active_children())
    assert answers(run_unordered(abs, [], 4, died)) == []
    assert set(multiprocessing.active_children()) == before


def test_closing_the_pool_early_ends_running_workers_at_once():
    before = set(multiprocessing.active_children())
    gen = run_unordered(time.sleep, [0, 30, 30], 2, died)
    assert answers(gen, take=1) == [(0, None)]
    started = time.monotonic()
    gen.close()
    assert time.monotonic() - started < 10
    assert set(multiprocessing.active_children()) <= before


def ready_then_sleep(seconds: float, post) -> str:
    post("ready")  # the worker is up (SIGINT ignored) and running its task
    time.sleep(seconds)
    return "slept"


def test_a_worker_ignores_ctrl_c_and_the_client_decides():
    before = set(multiprocessing.active_children())

    def interrupt_the_workers(task, message):
        for child in set(multiprocessing.active_children()) - before:
            os.kill(child.pid, signal.SIGINT)

    gen = run_unordered(ready_then_sleep, [1.0], 1, died, on_message=interrupt_the_workers)
    assert answers(gen, timeout=30) == [(1.0, "slept")]


@pytest.mark.parametrize(("code", "words"), [(-9, "was killed by signal 9"),
                                             (1, "exited with code 1"),
                                             (0, "exited with code 0")])
def test_a_point_whose_worker_died_is_a_failure_naming_how(code, words):
    assert how_it_ended(code) == words
    outcome = executor._died(("run", {}, ".", None, False), code)
    assert words in outcome["error"] and outcome["error"].startswith("WorkerDied")
    assert "run the point alone" in outcome["detail"]


def count_to(n: int, post) -> str:
    """A chatty task: posts 1 … ``n``, then answers."""
    for i in range(1, n + 1):
        post(i)
    return f"counted to {n}"


def test_a_chatty_task_s_messages_arrive_in_order_and_before_its_answer():
    seen: list = []
    gen = run_unordered(count_to, [3000, 5], 2, died,
                        on_message=lambda task, m: seen.append((task, m)))
    for task, answer in answers(gen):
        assert answer == f"counted to {task}"
        # all of this task's messages came first (3000 fill the pipe: the client must read
        # them while the worker still runs)
        assert [m for t, m in seen if t == task] == list(range(1, task + 1))


def test_no_more_workers_start_than_there_are_tasks():
    before = set(multiprocessing.active_children())  # another test's, still exiting
    running = []

    def count_workers(task, message):
        running.append(len(set(multiprocessing.active_children()) - before))

    gen = run_unordered(ready_then_sleep, [0.1], 4, died, on_message=count_workers)
    assert answers(gen) == [(0.1, "slept")]
    assert running == [1]


def test_a_worker_ignores_ctrl_c_from_its_start_and_the_client_keeps_its_handler():
    """Ctrl-C reaches the whole process group: a worker still importing (before its serving
    loop sets SIGINT aside) printed a KeyboardInterrupt traceback. It is spawned with SIGINT
    ignored, read from /proc at once; the client's own handler is back afterwards."""
    from simulator.sweep.local_pool import _start

    before = signal.getsignal(signal.SIGINT)
    proc, conn = _start(multiprocessing.get_context("spawn"), os.getpid, False)
    try:
        status = open(f"/proc/{proc.pid}/status").read()  # noqa: SIM115
        ignored = int(next(x for x in status.splitlines() if x.startswith("SigIgn:")).split()[1],
                      16)
        assert ignored >> (signal.SIGINT - 1) & 1
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        conn.close()
        proc.terminate()
        proc.join()
