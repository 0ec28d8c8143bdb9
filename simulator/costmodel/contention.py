"""Where the closed form breaks: the same round run by many homes at once on the simulated fabric.

The closed form (:mod:`simulator.costmodel`) prices one round alone on the cluster. Under load,
rounds share links (the owner's NIC, its PCIe switch, a leaf uplink) and compute streams. This
module replays ``C`` identical rounds that start together — each home GPU sends its batch to an
owner — on a real :class:`~simulator.network.Fabric` with :class:`~simulator.gpu.GPU` streams,
phase by phase in the order of the closed form, and returns each round's simulated phases.

With ``C = 1`` the replay equals the closed form (within floating-point rounding); as ``C`` grows,
fetch's large block transfers share the owner's links and slow down roughly ``C``-fold while
route's small messages barely notice, which can flip the verdict the formula gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import simpy

from simulator.costmodel.closed_form import OPTIONS, CostModel
from simulator.costmodel.phases import Phases
from simulator.errors import UserError
from simulator.gpu.runtime import GPU
from simulator.network.fabric import Fabric

PHASES = ("probe", "transfer", "compute", "ret", "merge")


def concurrent_rounds(cm: CostModel, option: str, pairs: Sequence[tuple[str, str]],
                      blocks: float, batch: float = 1, heads: int | None = None) -> list[Phases]:
    """Simulate one round per ``(home, owner)`` pair, all starting at t = 0; their phases [s].

    Each round follows the closed form's definition (reuse 1): route sends the query message,
    runs attention on the owner, returns the partials and merges at home; fetch sends the
    request, pulls the blocks, attends (and installs) at home, merges; local recomputes at home.
    Kernels on one GPU serialize; messages share links max-min fairly.
    """
    if option not in OPTIONS:
        raise UserError(f"option {option!r}: give one of {', '.join(OPTIONS)}")
    if not pairs:
        raise UserError("pairs: give at least one (home, owner) pair")
    env = simpy.Environment()
    fabric = Fabric(env, cm.topology, cm.stack, ecmp=cm.ecmp)
    nodes = dict.fromkeys(n for pair in pairs for n in pair)
    gpus = {n: GPU(env, n, cm.gpu_spec(n), cm.kernels) for n in nodes}
    results: list[dict[str, float]] = [{} for _ in pairs]

    def timed(out: dict[str, float], name: str, event):
        start = env.now
        value = yield event
        out[name] = out.get(name, 0.0) + env.now - start
        return value

    def round_process(i: int, src: str, dst: str):
        out = results[i]
        if option == "route":
            q, r = cm.route_payload(batch, heads)
            start = env.now
            rec = yield fabric.transfer(src, dst, q)
            out["probe"] = rec.started_at - start if src != dst else 0.0
            out["transfer"] = env.now - start - out["probe"]
            yield from timed(out, "compute",
                             gpus[dst].run(cm.attention_time(dst, blocks, batch, heads)))
            yield from timed(out, "ret", fabric.transfer(dst, src, r))
        elif option == "fetch" and blocks > 0:
            yield from timed(out, "probe",
                             fabric.transfer(src, dst, cm.request_bytes(blocks, batch)))
            yield from timed(out, "transfer",
                             fabric.transfer(dst, src, cm.fetch_bytes(blocks, batch)))
            yield from timed(out, "compute",
                             gpus[src].run(cm.attention_time(src, blocks, batch, heads)))
            yield from timed(out, "compute", gpus[src].run(cm.install_time(src, blocks, batch)))
        elif option == "local":
            yield from timed(out, "compute",
                             gpus[src].run(cm.recompute_time(src, blocks, batch)))
            yield from timed(out, "compute",
                             gpus[src].run(cm.attention_time(src, blocks, batch, heads)))
        yield from timed(out, "merge", gpus[src].run(cm.merge_time(src, batch, heads)))

    for i, (src, dst) in enumerate(pairs):
        env.process(round_process(i, src, dst))
    env.run()
    return [Phases(*(r.get(k, 0.0) for k in PHASES)) for r in results]


def contention_frame(cm: CostModel, pairs: Sequence[tuple[str, str]], blocks: Sequence[float],
                     concurrency: Sequence[int], batch: float = 1,
                     options: Sequence[str] = ("route", "fetch")) -> pd.DataFrame:
    """Closed form vs contended replay over blocks × concurrency, one row per point and option.

    For concurrency ``C`` the first ``C`` of ``pairs`` run together. Columns: ``blocks``,
    ``concurrency``, ``option``, ``closed_form_time`` (the round alone), ``simulated_time`` (mean
    over the C rounds), ``error`` (simulated / closed form − 1).
    """
    rows = []
    for c in concurrency:
        if not 1 <= c <= len(pairs):
            raise UserError(f"concurrency {c}: give 1..{len(pairs)} (the number of pairs)")
        for k in blocks:
            for option in options:
                sims = concurrent_rounds(cm, option, pairs[:c], k, batch)
                alone = cm.option(option, pairs[0][0], pairs[0][1], k, batch).total
                sim = sum(p.total for p in sims) / len(sims)
                rows.append({"blocks": k, "concurrency": c, "option": option,
                             "closed_form_time": alone, "simulated_time": sim,
                             "error": sim / alone - 1.0})
    return pd.DataFrame(rows)
