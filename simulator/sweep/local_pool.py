"""The local backend's worker processes: a pool that stops at once, and cannot deadlock doing so.

Until stop 65 the local backend used :class:`multiprocessing.Pool`. When a sweep stopped early
(Ctrl-C, or a failing callback), ``Pool.terminate()`` joined the pool's task-feeding thread, and
that thread could wait forever for the input queue's lock. A CI run hung there once in about ten.

Here nothing is shared between processes and no thread runs beside the client. Each worker is a
spawned process with a pipe of its own, and the client hands it one task at a time, so
stopping is closing the pipes and ending the processes. A worker that dies mid-task (killed,
out of memory) costs that task only: the client reports it through ``died`` with the exit code,
starts another worker if tasks remain, and goes on. Every task is answered exactly once, in the
order the tasks finish.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

Task = TypeVar("Task")


def _serve(conn: Connection, run: Callable[..., Any], chatty: bool) -> None:
    """A worker: answer tasks until the client closes its end. Ctrl-C reaches the whole
    process group; the client decides, so the worker ignores it. Every message is
    ``(final, payload)``; a chatty task's messages before its answer are ``final`` False."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def post(message: Any) -> None:
        conn.send((False, message))

    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        conn.send((True, run(task, post) if chatty else run(task)))


def how_it_ended(exit_code: int) -> str:
    """How a worker process ended, for a message: "was killed by signal 9" (a negative exit
    code) or "exited with code 1"."""
    if exit_code < 0:
        return f"was killed by signal {-exit_code}"
    return f"exited with code {exit_code}"


def _start(ctx, run: Callable[..., Any], chatty: bool):
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child, run, chatty), daemon=True)
    # the worker ignores Ctrl-C from its first instruction: a spawned interpreter keeps an
    # ignored SIGINT ignored, so one pressed while it still imports (before :func:`_serve`)
    # no longer prints its KeyboardInterrupt traceback (seen under load by
    # tests/test_cli_ctrl_c.py's sweep test)
    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        proc.start()
    finally:
        if main:  # (None: a handler not set from Python; the default's is the closest)
            signal.signal(signal.SIGINT, signal.SIG_DFL if before is None else before)
    child.close()
    return proc, parent


def run_unordered(run: Callable[..., Any], tasks: Sequence[Task], workers: int,
                  died: Callable[[Task, int], Any],
                  on_message: Callable[[Task, Any], None] | None = None,
                  ) -> Iterator[tuple[Task, Any]]:
    """``(task, run(task))`` for every task, computed on ``workers`` spawned processes, in the
    order they finish. ``run`` must be importable by name (a module-level function).

    A task whose worker ends before answering yields ``died(task, exit code)`` (negative: the
    signal that ended it). With ``on_message``, the worker calls ``run(task, post)`` instead,
    and each ``post(message)`` reaches ``on_message(task, message)`` in the client, in order and
    before the task's answer. Closing the iterator early ends every worker at once, running or
    not.
    """
    ctx = get_context("spawn")
    chatty = on_message is not None
    todo = list(reversed(tasks))
    idle = [_start(ctx, run, chatty) for _ in range(min(workers, len(todo)))]
    busy: dict[Connection, tuple[Any, Task]] = {}
    try:
        while todo or busy:
            while idle and todo:
                proc, conn = idle.pop()
                task = todo.pop()
                busy[conn] = (proc, task)
                with suppress(OSError):  # ended while idle: answered below, from its pipe
                    conn.send(task)
            for conn in wait(list(busy)):
                proc, task = busy[conn]
                try:
                    final, answer = conn.recv()
                except (EOFError, OSError):
                    conn.close()
                    proc.join()
                    answer = died(task, proc.exitcode)
                    if todo:
                        idle.append(_start(ctx, run, chatty))
                else:
                    if not final:
                        on_message(task, answer)
                        continue
                    idle.append((proc, conn))
                del busy[conn]
                yield task, answer
    finally:
        for proc, conn in idle + [(proc, conn) for conn, (proc, _) in busy.items()]:
            conn.close()
            proc.terminate()
            proc.join()
