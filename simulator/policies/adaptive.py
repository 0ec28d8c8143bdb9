"""``adaptive`` and ``adaptive_live``: the closed-form predicate, per owner and layer.

``adaptive`` asks :meth:`CostModel.decide` with static path costs (uncontended bandwidth).
``adaptive_live`` evaluates the same three options but charges each option's bulk bytes at the
fabric's *current* max-min fair share on the path that carries them (``Fabric.fair_share``), so a
busy link tilts the choice — the contention-aware variant. Both are deterministic: ties go to
``route``, then ``fetch``, then ``local`` (the order of :data:`~simulator.policies.base.OPTIONS`).
"""

from __future__ import annotations

from simulator.policies.base import OPTIONS, Policy, PolicyContext, Round


class Adaptive(Policy):
    """Per round, the option the closed form predicts fastest (static path costs)."""

    name = "adaptive"
    pure = True  # the closed form's decision on the round's own fields (static path costs)

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        return ctx.cost_model.decide(rnd.src, rnd.owner, blocks=rnd.blocks, batch=rnd.batch)


class AdaptiveLive(Policy):
    """Per round, the fastest option with bulk bytes charged at the live fair share."""

    name = "adaptive_live"
    needs_live_rates = True

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        cm, fabric = ctx.cost_model, ctx.fabric
        best, best_t = OPTIONS[0], float("inf")
        for option in OPTIONS:
            t = live_total(cm, fabric, option, rnd)
            if t < best_t:
                best, best_t = option, t
        return best


def live_total(cm, fabric, option: str, rnd: Round) -> float:
    """Closed-form total [s] of ``option`` with its bulk phases re-priced at the live fair share.

    A bulk phase of ``n`` bytes over a path of static rate ``r`` costs ``t`` in the closed form;
    at a live share ``s`` it costs ``t + n / s − n / r`` (overhead and latency unchanged).
    """
    phases = getattr(cm, option)(rnd.src, rnd.owner, blocks=rnd.blocks, batch=rnd.batch)
    total = phases.total
    if option == "local":
        return total
    for src, dst, nbytes in cm.bulk_messages(option, rnd.src, rnd.owner, blocks=rnd.blocks,
                                             batch=rnd.batch):
        if nbytes <= 0:
            continue
        static = cm.path_rate(src, dst)
        share = min(fabric.fair_share(src, dst), static)
        if share <= 0:
            return float("inf")
        total += nbytes / share - nbytes / static
    return total
