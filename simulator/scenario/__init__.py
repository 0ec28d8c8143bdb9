"""Scenarios: a TOML file → validated, frozen dataclasses, one per component.

A scenario names everything a run needs — topology, model, workload, KV placement, engine knobs,
the policies to compare, the network stack and the seed — and is validated *before* the first
event: every bad field raises :class:`~simulator.errors.UserError` naming the file, the dotted
field and the fix. Each component later receives only its own part (``scenario.placement`` for the
KV cache, ``scenario.engine`` for the decode loop …), never the whole scenario.

Schema (all sections optional except ``[topology]``, ``[model]`` and ``[workload]``)::

    name = "agentic_repo"          # free text
    seed = 0                       # int >= 0
    stack = "ibgda"                # "ideal" | "nccl" | "ibgda"
    policies = ["route", "fetch", "adaptive"]
    include = "calibration.toml"   # optional: a calibration TOML written by `kvfabric calibrate`
    [calibration] profile = "roofline" (default) | "measured" | "<profile name or .toml>" |
                 {H100 = "h100-vidur", …}  (simulator.gpu.profiled)

    [topology]   preset = "dgx_h100", nodes = 2   (or spec = "dgx_h100:nodes=2", or file = "x.toml")
    [model]      name = "deepseek-v3.2", selection = "auto" | "dense" | "dsa" | "nsa"
    [workload]   kind = "agentic" | "trace" | "spans" | "mixed"; trace = "<file or shipped name>";
                 selections = "<selection-trace parquet>"; time_scale = 1.0;
                 concurrency = <N: a closed loop of N outstanding requests>;
                 [workload.agentic] … (passed verbatim to the agentic generator's dataclass;
                 with preset = "copilot_2026" to the session generator's)
                 [workload.spans] shape = "rag" | "nested", … (the span generators' fields)
                 [workload.mixed] … (workloads.mixed.MixedFleetParams: sub-agents, private
                 long-context sessions and short chats on one cluster); only the table of
                 the chosen kind (and trace only with kind = "trace"): another kind's
                 table, unless empty, is refused rather than ignored
    [placement]  scheme = "first_writer" | "hash" | "range" | "repo_affinity" | "replicate:K";
                 home = "least_loaded" | "repo_affinity"; block_tokens = 64;
                 reserve_fraction = 0.1; weights_per_gpu = <bytes, optional>;
                 host_tier = true; host_capacity = <bytes>; reuse = "prefix" | "span" | "none"
    [engine]     max_batch = 64; layer_groups = 0 (0 = every layer simulated);
                 duration = <simulated s>; max_requests = <int>;
                 mode = "exact" | "fast" (the decode-loop engine; simulator.runner)
    [serving]    max_num_batched_tokens = 8192; max_num_seqs = <[engine] max_batch>;
                 chunked_prefill = true; kv_allocation = "on_demand" | "reserve";
                 cuda_graphs = true; step_overhead_time = <s>
                 (validated by :mod:`simulator.engine.scheduler`)
    [disaggregation]  Lamina-style pools for the ``disaggregated`` / ``homogeneous`` policies
                 (validated by :mod:`simulator.disaggregation.spec`)
    [deployment] expert-parallel instances, prefill/decode pools and their KV transfer
                 (validated by :mod:`simulator.deployment.spec`)

Relative paths (``include``, ``workload.trace``, ``workload.selections``, ``topology.file``, a
``calibration.profile`` ending in ``.toml``) are resolved against the scenario file's folder, never
the working folder (a file missing there is reported where it was looked for); a shipped trace's
name (``"mooncake_conversation"``) stays a name unless such a file lies beside the scenario. The
``name`` names the default result folder (``kvfabric_out/<name>``): it may not be empty, ``.``,
``..`` or hold a path separator.

The package:

- :mod:`~simulator.scenario.compose` — :class:`Scenario`: the sections composed, ``load`` and
  ``from_dict``, the top-level fields;
- :mod:`~simulator.scenario.sections` — the section dataclasses (:class:`TopologySpec`,
  :class:`ModelSpec`, :class:`WorkloadSpec`, :class:`PlacementSpec`, :class:`EngineSpec`) and the
  values their fields allow;
- :mod:`~simulator.scenario.validate` — each section checked, TOML read (:func:`read_toml`);
- :mod:`~simulator.scenario.shipped` — the shipped scenarios (:func:`shipped_dir`, :func:`find`).

May import: every unit below it (the sections' owners: ``engine.scheduler``,
``disaggregation.spec``, ``deployment.spec``, ``policies``, ``gpu.profiled``, ``models``,
``workloads``, ``topologies``). Exports :class:`Scenario`, the section dataclasses, their allowed
values (``STACK_NAMES``, ``SELECTIONS``, ``ENGINE_MODES``, ``SCHEMES``, ``HOME_RULES``,
``REUSE_RULES``, ``WORKLOAD_KINDS``), :func:`read_toml`, :func:`shipped_dir` and :func:`find`.
"""

from simulator.scenario.compose import Scenario
from simulator.scenario.sections import (
    ENGINE_MODES,
    HOME_RULES,
    REUSE_RULES,
    SCHEMES,
    SELECTIONS,
    STACK_NAMES,
    WORKLOAD_KINDS,
    EngineSpec,
    ModelSpec,
    PlacementSpec,
    TopologySpec,
    WorkloadSpec,
)
from simulator.scenario.shipped import find, shipped_dir
from simulator.scenario.validate import read_toml

__all__ = ["ENGINE_MODES", "HOME_RULES", "REUSE_RULES", "SCHEMES", "SELECTIONS", "STACK_NAMES",
           "WORKLOAD_KINDS", "EngineSpec", "ModelSpec", "PlacementSpec", "Scenario",
           "TopologySpec", "WorkloadSpec", "find", "read_toml", "shipped_dir"]
