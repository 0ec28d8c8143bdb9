"""The decode-loop engines: replay a workload on the simulated cluster, round by round or step by
step.

- :mod:`~simulator.engine.exact` — the exact engine (:func:`simulate`): per-GPU continuous
  batching, one SimPy chain of messages and kernels per (iteration, layer, owner) round;
- :mod:`~simulator.engine.fast` — the fast engine: the same run with each decode step composed
  at once (one SimPy event per GPU step, and one per slot with rounds that another GPU's
  event precedes), over work calendars for GPU streams
  (:mod:`~simulator.engine.fast_streams`) and links (:mod:`~simulator.engine.fast_links`, a
  phase's own flows shared max-min by :mod:`~simulator.engine.fast_sharing`), its slots with
  rounds composed by :mod:`~simulator.engine.fast_slots`; held to the exact engine by
  ``benchmarks/validate_fast.py``;
- :mod:`~simulator.engine.gpu_loop` — one GPU's continuous-batching loop, which both engines
  share (each supplies its decode step);
- :mod:`~simulator.engine.stepcosts` — what a step's kernels and rounds cost, memoized
  (:class:`StepCosts`, a part the run holds);
- :mod:`~simulator.engine.admission` — requests' life: arrival, home, admission, prefill,
  growth, retirement (:class:`Admission`, a part the run holds);
- :mod:`~simulator.engine.reuse` — which prompt blocks a prefill reuses (prefix, span, none) and
  the costs of span reuse (rotary pass, recompute after a non-commuting boundary, padding);
- :mod:`~simulator.engine.locate` — sparse selections and where the selected blocks live
  (:class:`StepData`, a part the run holds);
- :mod:`~simulator.engine.instances` — a ``[deployment]``'s instances, MoE layers and KV
  hand-off (:class:`Deployed`, a part the run holds), each instance stepping its ranks together
  in :mod:`~simulator.engine.instance_loop`;
- :mod:`~simulator.engine.rounds` — one round replayed as a chain of callbacks;
- :mod:`~simulator.engine.columns`, :mod:`~simulator.engine.records`,
  :mod:`~simulator.engine.results` — typed record columns, the flat tables and the
  :class:`Result` every engine returns;
- :mod:`~simulator.engine.trace` — a scenario's requests as the engines replay them.

May import: ``units``, ``errors``, ``fileio``, ``spill``, ``hardware``, ``models``, ``network``,
``gpu``, ``kvcache``, ``costmodel``, ``policies``, and ``workloads`` / ``topologies``. Never the
scenario module (a scenario object is passed in) nor anything above. Exports :func:`simulate`,
:class:`Result`, :func:`load_trace`, ``NOT_FINISHED``, ``TOO_LARGE``, ``SELECTION_STEPS``.
"""

from simulator.engine.admission import TOO_LARGE
from simulator.engine.exact import simulate
from simulator.engine.locate import SELECTION_STEPS
from simulator.engine.requests import NOT_FINISHED
from simulator.engine.results import Result
from simulator.engine.trace import load_trace

__all__ = ["NOT_FINISHED", "SELECTION_STEPS", "TOO_LARGE", "Result", "load_trace", "simulate"]
