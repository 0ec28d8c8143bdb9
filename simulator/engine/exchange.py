"""One MoE layer of one step, replayed on the simulated cluster: the all-to-all on the Fabric and
the expert kernels on the ranks' compute streams.

:class:`MoEReplay` takes a :class:`~simulator.costmodel.moe.LayerPlan` (routing, traffic, expert
kernel times — computed by :class:`~simulator.costmodel.moe.ExpertParallel` without SimPy) at
the moment the last rank of the group is ready, and plays it in the closed form's order
(:meth:`ExpertParallel.closed_form`):

1. the shared experts are queued on every rank's stream (they overlap the dispatch);
2. **dispatch**: one flow per loaded link (:meth:`~simulator.network.Fabric.transfer_link`,
   tagged ``moe_dispatch``) after the exchange's fixed time; done when the last is;
3. the routed experts are queued on every rank with rows; the combine starts when the slowest
   rank's experts end (a straggler holds everyone);
4. **combine**: as the dispatch, tagged ``moe_combine``; then each rank's add.

Alone on idle links and streams it takes exactly the closed form's time; under load its flows
share links max-min with route/fetch messages and PD transfers, and its kernels queue behind
whatever else a stream holds. The generator returns the simulated phases; the caller records
them beside the closed form's.
"""

from __future__ import annotations

import numpy as np
import simpy

from simulator.costmodel.moe import ExpertParallel, LayerPlan, MoEPhases
from simulator.network.traffic import MOE_COMBINE, MOE_DISPATCH


class MoEReplay:
    """Replays MoE layers of one EP group (see the module docstring).

    Args:
        env: the run's environment.
        fabric: the run's Fabric.
        ep: the group's :class:`~simulator.costmodel.moe.ExpertParallel`.
        streams: the compute stream of each rank, in rank order.
        on_fabric: put the exchanges on the fabric (False: each takes its closed form's time
            and occupies no link — the idle-fabric ablation).
    """

    def __init__(self, env: simpy.Environment, fabric, ep: ExpertParallel, streams,
                 on_fabric: bool = True) -> None:
        self.env, self.fabric, self.ep, self.streams = env, fabric, ep, streams
        self.links = ep.links
        self.on_fabric = on_fabric

    def exchange(self, pairs: np.ndarray, direction: str) -> simpy.Event:
        """The all-to-all of traffic matrix ``pairs`` [B]: an event that fires when its last
        link flow has delivered (after the fixed time; see the module docstring)."""
        env, ep = self.env, self.ep
        loads = ep.loads(pairs)
        fixed = ep.fixed_time(pairs, direction)
        busy = np.flatnonzero(loads > 0).tolist()
        done = env.event()
        if not busy or not self.on_fabric:  # nothing to move, or the closed form's time only
            t = fixed + (float((loads / ep.rate).max()) if busy else 0.0)
            env.timeout(t).callbacks.append(lambda _e: done.succeed())
            return done
        left = [len(busy)]

        def arrived(_rec) -> None:
            left[0] -= 1
            if left[0] == 0:
                done.succeed()

        tag = MOE_DISPATCH if direction == "dispatch" else MOE_COMBINE
        eff = ep.efficiency
        # the payload counts once in the class counters, spread over the links it loads
        share = float(np.asarray(pairs).sum()) / float(loads.sum())
        for i in busy:
            u, v = self.links[i]
            self.fabric.transfer_link(u, v, float(loads[i]), arrived, efficiency=float(eff[i]),
                                      delay_time=fixed, tag=tag, counted=float(loads[i]) * share)
        return done

    def _queue(self, times) -> float:
        """Queue one kernel of ``times[r]`` [s] on each rank with time > 0; the latest end [s]."""
        end = self.env.now
        for r, t in enumerate(times):
            if t > 0:
                e = self.streams[r].issue(float(t))
                if e > end:
                    end = e
        return end

    def play(self, plan: LayerPlan, shared_time: np.ndarray, post_time: np.ndarray):
        """Replay one layer from now (the last rank is ready); a generator (``yield from``)
        whose value is the simulated :class:`~simulator.costmodel.moe.MoEPhases`."""
        env = self.env
        t0 = env.now
        self._queue(shared_time)  # during the dispatch
        yield self.exchange(plan.dispatch, "dispatch")
        t1 = env.now
        end = self._queue(plan.expert_time)
        if end > env.now:
            yield env.timeout(end - env.now)
        t2 = env.now
        yield self.exchange(plan.combine, "combine")
        t3 = env.now
        end = self._queue(post_time)
        if end > env.now:
            yield env.timeout(end - env.now)
        return MoEPhases(t1 - t0, t2 - t1, t3 - t2, env.now - t3)
