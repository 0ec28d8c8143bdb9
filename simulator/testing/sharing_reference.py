"""Max-min filling of a phase's own flows in plain Python, before it was compiled: a reference.

:func:`simulator.engine.fast_sharing.max_min_finish` runs the compiled
:func:`~simulator.engine.sharing_kernels.max_min_kernel`. This module keeps the Python it
replaced, unchanged, so the tests can hold the two to each other float for float. It is not used
by the simulator.
"""

from __future__ import annotations

from simulator.engine.fast_sharing import _INF, _admit, _fill

__all__ = ["python_max_min_finish"]


def python_max_min_finish(starts: list[float], nbytes: list[float], caps: list[float],
                          links: list[tuple[int, ...]], line: list[float]) -> list[float]:
    """:func:`~simulator.engine.fast_sharing.max_min_finish` in Python: when each flow ends
    [s], rates re-filled at every start and completion."""
    n = len(starts)
    order = sorted(range(n), key=lambda i: (starts[i], i))
    left = list(nbytes)
    finish = [0.0] * n
    active: list[int] = []
    k = 0  # next flow to start, in ``order``
    t = starts[order[0]] if n else 0.0
    while k < n or active:
        k = _admit(starts, order, k, t, active)
        if not active:
            t = starts[order[k]]
            continue
        rate = _fill(active, caps, links, line)
        step = min(left[i] / rate[i] for i in active)
        nxt = starts[order[k]] if k < n else _INF
        if t + step <= nxt:
            t_new = t + step
            still = []
            for i in active:
                left[i] -= rate[i] * step
                if left[i] <= 1e-9 * nbytes[i]:
                    finish[i] = t_new
                else:
                    still.append(i)
            active = still
            t = t_new
        else:
            dt = nxt - t
            for i in active:
                left[i] -= rate[i] * dt
            t = nxt
    return finish
