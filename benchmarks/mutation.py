"""Mutation testing of kvfabric's core modules, and the planted bugs of issue 20.

Two commands (not part of CI: minutes to an hour on 2 cores)::

    python benchmarks/mutation.py planted            # each planted bug in a scratch copy: caught?
    python benchmarks/mutation.py score [GROUP ...]  # mutation score per core module
    python benchmarks/mutation.py score fileio --show-survivors
    python benchmarks/mutation.py score sweep --module executor.py --lines 160-180
    python benchmarks/mutation.py score fabric --survivors-of earlier.log --progress

**planted** copies the work tree (``git ls-files``) into a temporary folder, applies one planted
bug there (an exact text replacement in core code — the single-line bugs issue 20 found every test
letting through), runs the tests named as catching it, and prints whether they failed. A bug
whose tests pass is reported and the command exits 1.

**score** makes mutants of each core module with a small AST-based mutator (why not a tool:
mutmut 3 and cosmic-ray run a pytest process per mutant — seconds of imports each — and mutatest
does not support Python > 3.8; see docs/invariants.md) and runs a module's tests against each:

- operators: ``+ -``, ``* /``, ``// /``, ``%``, ``**`` swapped; comparisons ``< <=``, ``> >=``,
  ``== !=``, ``is / is not``, ``in / not in`` swapped; ``and / or`` swapped; ``not x`` → ``x``;
  unary minus dropped; augmented assignments ``+= -=`` swapped;
- constants: an integer ``n`` → ``n + 1``, a float ``x`` → ``2x`` (0 → 1), ``True / False``
  swapped; ``min / max`` swapped;
- statements: a call statement, an assignment to an attribute or subscript, an augmented
  assignment, ``continue`` / ``break`` replaced by ``pass``; a ``return X`` → ``return None``.

Only code inside functions is mutated (module-level constants, class bodies, default arguments,
decorators and annotations are not; docstrings and string constants never). A mutant is applied
*in place* in a forked child of one process that has imported the package and the tests once:
the mutated source (same line numbers) is compiled, and the enclosing function's ``__code__``
is replaced, so every reference to it — ``from x import f`` included — runs the mutant. The
group's tests are first run once with a tracer that records which tests enter which function
(fixtures wider than a test are charged to every test that uses them); the child then runs, with
``-x`` (stop at the first failure), the tests that reach the mutated function, fastest first
(``--all-tests``: every test of the group, slower). Tests run under the ``mutation`` hypothesis
profile (derandomized: the same examples every run); a child past its time limit counts as
killed (the mutant made the tests hang), as mutmut counts it. Code that runs only in other
processes (a sweep's spawned workers) is reached by no test here: its tests call it in-process.
Numba kernels (:data:`COMPILED`) are mutated as Python: a run that scores them sets
``NUMBA_DISABLE_JIT=1``, so their functions are the plain code a mutant replaces.

Equivalent mutants (no test could tell them from the original) are listed in :data:`EQUIVALENT`
with the reason, and excluded from the score; ``score --equivalents`` prints them as a table
(docs/mutation.md).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import gc
import importlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# -- what is mutated, and the tests that guard it ----------------------------------------------

#: Modules of numba kernels: scored with ``NUMBA_DISABLE_JIT=1`` (their functions then run as
#: the Python code a mutant replaces; compiled, a mutant would not run, and numba's cache would
#: keep it). Score them in a run of their own: the other groups' tests run slower without JIT.
COMPILED = frozenset({"workloads/sparse_kernels.py", "simulator/engine/locate_kernels.py",
                      "simulator/kvcache/copy_kernels.py", "simulator/engine/sharing_kernels.py",
                      "simulator/network/kernels.py", "simulator/policies/adaptive_kernel.py"})

#: The bad-input tables and the runs beside them (tests/test_bad_input.py until it was split by
#: concern): every group that listed it lists them all.
BAD_INPUT = ["tests/test_bad_scenario.py", "tests/test_bad_traces.py", "tests/test_bad_sweep.py",
             "tests/test_bad_options.py", "tests/test_cli_not_errors.py",
             "tests/test_cli_ctrl_c.py"]

#: group → (modules, tests). Each group's tests are the files that exercise its modules directly
#: (fast ones: a mutant runs them all when it survives).
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "fabric": (["simulator/network/fabric.py", "simulator/network/shared.py",
                "simulator/network/maxmin.py", "simulator/network/lone.py",
                "simulator/network/accounts.py", "simulator/network/flows.py"],
               ["tests/test_network_fabric.py", "tests/test_network_traffic.py",
                "tests/test_oracle.py", "tests/test_hot_paths.py"]),
    "closed_form": (["simulator/costmodel/closed_form.py", "simulator/costmodel/phases.py",
                     "simulator/costmodel/crossover.py"],
                    ["tests/test_costmodel_closed_form.py", "tests/test_oracle.py",
                     "tests/test_costmodel_crossover.py",
                     "tests/test_costmodel_crossover_edges.py"]),
    "kvcache": (["simulator/kvcache/directory.py", "simulator/kvcache/eviction.py",
                 "simulator/kvcache/placement.py", "simulator/kvcache/invariants.py",
                 "simulator/kvcache/blocklists.py", "simulator/kvcache/copy_kernels.py",
                 "simulator/kvcache/host_order.py"],
                ["tests/test_kvcache_directory.py", "tests/test_kvcache_eviction.py",
                 "tests/test_kvcache_blocklists.py", "tests/test_engine_local_contexts.py",
                 "tests/test_kvcache_host_order.py"]),
    "scheduler": (["simulator/engine/admission.py", "simulator/engine/gpu_blocks.py",
                   "simulator/engine/prefix_cache.py", "simulator/engine/scheduler.py"],
                  ["tests/test_engine_admission.py", "tests/test_engine_scheduler.py",
                   "tests/test_promises.py", "tests/test_engine_gpu_loop_edges.py",
                   "tests/test_engine_scheduler_edges.py"]),
    # the closed forms around closed_form.py: adaptive's predicate under load, the MoE layer
    # and its all-to-all (DeepEP), link contention, transfers, expert popularity (stop 45)
    "costmodel": (["simulator/costmodel/loaded.py", "simulator/costmodel/moe.py",
                   "simulator/costmodel/alltoall.py",
                   "simulator/costmodel/deepep.py", "simulator/costmodel/contention.py",
                   "simulator/costmodel/transfer.py", "simulator/costmodel/experts.py",
                   "simulator/costmodel/rank_kernels.py", "simulator/costmodel/maps.py"],
                  ["tests/test_costmodel_loaded.py", "tests/test_costmodel_moe.py",
                   "tests/test_costmodel_deepep.py", "tests/test_costmodel_contention.py",
                   "tests/test_costmodel_transfer.py", "tests/test_costmodel_experts.py",
                   "tests/test_costmodel_rank_kernels.py", "tests/test_costmodel_maps.py",
                   "tests/test_policies_adaptive.py", "tests/test_policies_adaptive_kernel.py",
                   "tests/test_deployment.py"]),
    # the kernel model: operator formulas, measured tables, profiles, layers, the roofline
    # (stop 45)
    "gpu": (["simulator/gpu/operators.py", "simulator/gpu/tables.py",
             "simulator/gpu/table_loaders.py",
             "simulator/gpu/profile.py", "simulator/gpu/answers.py", "simulator/gpu/profiled.py",
             "simulator/gpu/layers.py", "simulator/gpu/kernels.py",
             "simulator/gpu/fitting.py", "simulator/gpu/calibration.py",
             "simulator/gpu/copyengines.py", "simulator/gpu/runtime.py"],
            ["tests/test_gpu_calibration.py", "tests/test_gpu_copyengines.py",
             "tests/test_gpu_kernels.py", "tests/test_gpu_layers.py", "tests/test_gpu_profile.py",
             "tests/test_gpu_runtime.py", "tests/test_gpu_tables.py",
             "tests/test_gpu_tables_loaders.py", "tests/test_gpu_fitting.py",
             "tests/test_gpu_layer_shapes.py", "tests/test_gpu_profile_answers.py",
             "tests/test_gpu_profiled_edges.py", "tests/test_gpu_fitting_edges.py",
             "tests/test_cli_kernel.py", *BAD_INPUT, "tests/test_hot_paths.py",
             "tests/test_scenario_kernel_profile.py", "tests/test_costmodel_rank_kernels.py",
             # the roofline's hand-checkable figures are the closed form's (KernelModel)
             "tests/test_costmodel_closed_form.py", "tests/test_oracle.py",
             "tests/test_gpu_runtime_edges.py",
             # a step's kernels on floats against the array answers (stop 79)
             "tests/test_hot_paths.py"]),
    "basics": (["simulator/network/paths.py", "simulator/models.py", "simulator/units.py",
                "simulator/gpu/streams.py"],
               ["tests/test_network_paths.py", "tests/test_models.py", "tests/test_units.py",
                "tests/test_hot_paths.py", "tests/test_gpu_copyengines.py",
                "tests/test_gpu_streams.py", "tests/test_network_paths_edges.py"]),
    # what a user hands the tool: scenario files and request traces, validated before any
    # work (stop 47)
    "inputs": (["simulator/scenario/validate.py", "simulator/scenario/sections.py",
                "simulator/scenario/compose.py", "workloads/schema.py", "workloads/columns.py",
                "workloads/validation.py", "workloads/loaders.py"],
               ["tests/test_scenario.py", "tests/test_scenario_fields.py",
                "tests/test_workloads_schema.py", "tests/test_workloads_schema_forms.py",
                "tests/test_workloads_loaders.py", "tests/test_workloads_loaders_paths.py",
                *BAD_INPUT, "tests/test_scenario_kernel_profile.py",
                "tests/test_context_window.py"]),
    # what a run hands back: the records' tables and summary, their typed columns, the links'
    # accounting and timeline (stop 47)
    "records": (["simulator/engine/records.py", "simulator/engine/columns.py",
                 "simulator/engine/results.py", "simulator/network/linkstats.py",
                 "simulator/network/binning.py", "simulator/network/busy.py",
                 "simulator/network/kernels.py", "simulator/network/lone_tables.py"],
                ["tests/test_engine_records.py", "tests/test_network_linkstats.py",
                 "tests/test_network_busy.py", "tests/test_engine_columns.py", "tests/test_network_fabric.py",
                 "tests/test_network_traffic.py", "tests/test_engine_exact.py",
                 "tests/test_oracle.py", "tests/test_hot_paths.py", "tests/test_spill.py",
                 "tests/test_engine_instances.py",
                 "tests/test_engine_results_edges.py"]),
    "sparse": (["workloads/sparse.py", "workloads/sparse_kernels.py"],
               ["tests/test_workloads_sparse.py"]),
    "fileio": (["simulator/fileio.py"], ["tests/test_fileio.py"]),
    # the disaggregated pools: the homogeneous and Lamina loops, their plans and specs (stop 48)
    "pools": (["simulator/disaggregation/pools.py", "simulator/disaggregation/shards.py",
               "simulator/disaggregation/ring.py", "simulator/disaggregation/byte_pool.py",
               "simulator/disaggregation/homogeneous.py",
               "simulator/disaggregation/homogeneous_fast.py",
               "simulator/disaggregation/lamina.py", "simulator/disaggregation/lamina_fast.py",
               "simulator/disaggregation/lamina_plan.py", "simulator/disaggregation/spec.py",
               "simulator/disaggregation/staggered.py",
               "simulator/disaggregation/attention_pool.py",
               "simulator/disaggregation/compare.py"],
              ["tests/test_disaggregation.py", "tests/test_disaggregation_fast.py",
               "tests/test_lamina_fast.py", "tests/test_engine_clock.py",
               "tests/test_disaggregation_staggered.py",
               "tests/test_disaggregation_attention_pool.py",
               "tests/test_disaggregation_plan.py",
               "tests/test_disaggregation_homogeneous.py",
               "tests/test_disaggregation_pools.py",
               "tests/test_disaggregation_lamina.py",
               "tests/test_disaggregation_compare.py"]),
    # the synthetic workloads (agentic sub-agents, sessions, a mixed fleet, nested and RAG
    # prompts, spans and focus sets) and the engine's reading of a trace (stop 48)
    "workloads": (["workloads/agentic.py", "workloads/sessions.py", "workloads/mixed.py",
                   "workloads/nested.py", "workloads/rag.py", "workloads/spans.py",
                   "workloads/focus.py", "workloads/blocks.py", "workloads/context.py",
                   "workloads/selections.py", "workloads/stats.py", "workloads/presets.py",
                   "simulator/engine/trace.py"],
                  ["tests/test_workloads_agentic.py", "tests/test_workloads_sessions.py",
                   "tests/test_workloads_mixed.py", "tests/test_workloads_nested.py",
                   "tests/test_workloads_spans.py", "tests/test_workloads_focus.py",
                   "tests/test_workloads_blocks.py", "tests/test_workloads_selections.py",
                   "tests/test_workloads_cli_trace.py", "tests/test_context_window.py",
                   "tests/test_engine_arrivals.py", "tests/test_engine_reuse.py",
                   "tests/test_workloads_sizes.py", "tests/test_workloads_context.py",
                   "tests/test_workloads_rag.py", "tests/test_workloads_stats.py",
                   "tests/test_engine_trace.py"]),
    "sweep": (["simulator/sweep/points.py", "simulator/sweep/spec.py",
               "simulator/sweep/executor.py", "simulator/sweep/check.py",
               "simulator/sweep/local_pool.py"],
              ["tests/test_sweep_spec.py", "tests/test_sweep.py", *BAD_INPUT,
               "tests/test_local_pool.py"]),
    # test_engine_regret.py: only its run of adaptive (its CLI test, ~17 s, checks the report)
    "policies": (["simulator/policies/adaptive.py", "simulator/policies/observed.py",
                  "simulator/policies/base.py", "simulator/policies/__init__.py",
                  "simulator/policies/route.py", "simulator/policies/fetch.py",
                  "simulator/policies/local.py", "simulator/policies/colocated.py"],
                 ["tests/test_policies.py", "tests/test_policies_adaptive.py",
                  "tests/test_policies_adaptive_kernel.py", "tests/test_policies_mutants.py",
                  "tests/test_engine_regret.py::test_a_real_run_reports_regret_and_choices"]),
    # adaptive's compiled price, held to the Python by its own tests (scored without JIT, so a
    # group of its own: the policies' engine runs would run uncompiled)
    "adaptive_kernel": (["simulator/policies/adaptive_kernel.py"],
                        ["tests/test_policies_adaptive_kernel.py"]),
    "fast": (["simulator/engine/fast_streams.py", "simulator/engine/fast_sharing.py",
              "simulator/engine/sharing_kernels.py",
              "simulator/engine/fast_links.py", "simulator/engine/fast_slots.py",
              "simulator/engine/fast.py", "simulator/engine/fast_quiet.py",
              "simulator/engine/dominance.py", "simulator/engine/fast_laid.py"],
             ["tests/test_engine_fast_calendar.py", "tests/test_engine_fast.py",
              "tests/test_engine_fast_prefill.py", "tests/test_engine_fast_laid.py",
              "tests/test_engine_fast_instances.py", "tests/test_engine_fast_collisions.py",
              "tests/test_engine_local_contexts.py", "tests/test_engine_fast_dominated.py",
              "tests/test_engine_fast_mixed_slots.py"]),
    # a deployment's instance loops on both engines (two-batch overlap's pipeline and fold)
    "instances": (["simulator/engine/instance_loop.py", "simulator/engine/fast_instances.py"],
                  ["tests/test_engine_instances.py", "tests/test_engine_fast_instances.py",
                   "tests/test_engine_kvtransfer.py", "tests/test_engine_instances_edges.py"]),
    # the exact engine's rounds (route / fetch / local replayed as callbacks) and the regret
    # report every comparison of policies carries (issue 18)
    "rounds": (["simulator/engine/rounds.py", "simulator/engine/regret.py"],
               ["tests/test_engine_exact.py", "tests/test_oracle.py",
                "tests/test_engine_regret.py",
                "tests/test_policies_adaptive.py::test_the_engine_counts_copies_and_their_uses_exactly"]),
    # the exact engine's serving parts around the rounds: prefill→decode KV hand-off, an MoE
    # layer's all-to-all, span reuse, the clock that cuts a run at its duration
    "serving": (["simulator/engine/kvtransfer.py", "simulator/engine/exchange.py",
                 "simulator/engine/reuse.py", "simulator/engine/clock.py"],
                ["tests/test_deployment.py", "tests/test_engine_kvtransfer.py",
                 "tests/test_engine_instances.py",
                 "tests/test_engine_reuse.py", "tests/test_engine_clock.py",
                 "tests/test_engine_fast_instances.py"]),
    # the exact engine's run and a GPU's serving loop around the rounds: arrivals, per-request
    # state, the decode step's layers and the records (stop 42)
    "loop": (["simulator/engine/exact.py", "simulator/engine/gpu_loop.py",
              "simulator/engine/arrivals.py", "simulator/engine/requests.py"],
             ["tests/test_engine_exact.py", "tests/test_promises.py",
              "tests/test_engine_scheduler.py", "tests/test_engine_clock.py",
              "tests/test_policies_adaptive.py", "tests/test_engine_arrivals.py",
              "tests/test_engine_admission.py", "tests/test_engine_instances.py",
              "tests/test_engine_reuse.py", "tests/test_engine_gpu_loop_edges.py"]),
    # a decode step's data and costs, shared by both engines: selections and block locations
    # (StepData), the memoized per-step costs, the GPUs' copy store
    "steps": (["simulator/engine/locate.py", "simulator/engine/locate_kernels.py",
               "simulator/engine/stepcosts.py", "simulator/kvcache/copystore.py"],
              ["tests/test_engine_steps.py", "tests/test_kvcache_copystore.py",
               "tests/test_engine_exact.py", "tests/test_engine_fast.py",
               "tests/test_engine_local_contexts.py",
               "tests/test_workloads_selections.py", "tests/test_promises.py"]),
    # a mixture-of-experts deployment: the [deployment] section, its instances on the GPUs,
    # the weights they hold, and the engine's per-instance state
    "deployment": (["simulator/deployment/spec.py", "simulator/deployment/checks.py",
                    "simulator/deployment/layout.py",
                    "simulator/deployment/weights.py", "simulator/engine/instances.py"],
                   ["tests/test_deployment.py", "tests/test_engine_instances.py",
                    "tests/test_engine_kvtransfer.py", "tests/test_scenario.py",
                    *BAD_INPUT, "tests/test_deployment_spec.py",
                    "tests/test_deployment_layout.py"]),
    # the one entry above both engines: which engine runs a policy and why it falls back, the
    # checks that refuse a scenario before any work, the context window's count, reuse rules
    # compared (stop 53)
    "runner": (["simulator/runner.py", "simulator/network/traffic.py"],
               ["tests/test_runner.py", "tests/test_context_window.py",
                "tests/test_engine_reuse.py", "tests/test_scenario.py",
                *BAD_INPUT, "tests/test_workloads_mixed.py",
                "tests/test_deployment.py", "tests/test_disaggregation_fast.py",
                "tests/test_engine_records.py", "tests/test_network_traffic.py",
                "tests/test_engine_fast.py"]),
    # what `kvfabric run` shows and writes: its output folder (staged, swapped in), the
    # tables that fit the terminal, the regret tables and the result files (stop 53)
    "cli": (["simulator/cli/output.py", "simulator/cli/tables.py",
             "simulator/cli/regret_tables.py", "simulator/cli/results.py"],
            ["tests/test_cli_output.py", "tests/test_cli_tables.py",
             "tests/test_cli_regret_tables.py", "tests/test_cli_results.py",
             "tests/test_fileio.py", "tests/test_engine_regret.py",
             "tests/test_context_window.py", *BAD_INPUT,
             "tests/test_cli_run.py"]),
    # the command line's entry and `kvfabric run` itself: the exit status and one-line errors
    # of every command, running policies at once in spawned processes, what run prints
    "cli_run": (["simulator/cli/main.py", "simulator/cli/jobs.py", "simulator/cli/run.py"],
                ["tests/test_cli_main.py", "tests/test_cli_jobs.py", "tests/test_cli_markup.py",
                 "tests/test_cli_run.py", *BAD_INPUT,
                 # where run's notes, deployment layout and regret are tested too
                 "tests/test_context_window.py", "tests/test_deployment.py",
                 "tests/test_engine_regret.py"]),
    # the figures of a run: the numbers each line, bar and stack draws, the axes, the skips
    "plots": (["simulator/plots.py"],
              ["tests/test_plots.py", "tests/test_plots_values.py",
               "tests/test_costmodel_maps.py"]),
    # the hardware catalogue and the kernel profiles built from measurements
    "hardware": (["simulator/hardware.py", "simulator/gpu/profiles.py", "simulator/spill.py"],
                 ["tests/test_topologies.py", "tests/test_gpu_profile.py",
                  "tests/test_gpu_calibration.py", "tests/test_cli_kernel.py",
                  "tests/test_gpu_profile_answers.py", "tests/test_spill.py",
                  "tests/test_units.py", "tests/test_cli_topology.py",
                  "tests/test_hardware.py"]),
    # the cluster topologies every run builds its fabric from: the presets and their
    # parameters, TOML/YAML topology files, their checks, the summary and the drawing (stop 56)
    "topologies": (["topologies/__init__.py", "topologies/builders.py", "topologies/loader.py",
                    "topologies/validate.py", "topologies/summary.py", "topologies/draw.py"],
                   ["tests/test_topologies.py", "tests/test_topologies_known.py",
                    "tests/test_cli_topology.py",
                    "tests/test_network_paths.py", "tests/test_hardware.py",
                    "tests/test_scenario.py"]),
    # the other commands a user meets: trace generation and stats, predict and sweep, kernel
    # and calibrate, topology, demo (stop 66)
    "cli_tools": (["simulator/cli/trace.py", "simulator/cli/predict.py",
                   "simulator/cli/kernel.py", "simulator/cli/topology.py",
                   "simulator/cli/calibrate.py", "simulator/cli/sweep.py",
                   "simulator/cli/demo.py"],
                  ["tests/test_cli_kernel.py", "tests/test_cli_kernel_output.py",
                   "tests/test_cli_predict.py",
                   "tests/test_cli_predict_output.py", "tests/test_cli_demo.py",
                   "tests/test_cli_topology.py", "tests/test_workloads_cli_trace.py",
                   "tests/test_cli_main.py", "tests/test_cli_markup.py",
                   "tests/test_gpu_calibration.py", "tests/test_workloads_stats.py",
                   *BAD_INPUT, "tests/test_sweep.py",
                   "tests/test_network_fabric.py", "tests/test_cli_trace_output.py",
                   "tests/test_cli_topology_output.py", "tests/test_cli_sweep.py"]),
    # the checks the property tests lean on (a run's invariants, max-min fairness), against
    # results broken on purpose (stop 65)
    "testing": (["simulator/testing/invariants.py", "simulator/testing/fabric.py"],
                ["tests/test_testing_invariants.py", "tests/test_testing_fabric.py"]),
}


@dataclass(frozen=True)
class Planted:
    """One planted bug: ``old`` → ``new`` (exact text, once) in ``path``; ``tests`` catch it."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


#: The single-line bugs issue 20 planted on a copy of main, each with the tests that now catch it.
PLANTED: tuple[Planted, ...] = (
    Planted("local recompute charged for every layer, not one (61x)",
            "simulator/costmodel/closed_form.py",
            "        return total / self.model.layers\n", "        return total\n",
            ("tests/test_oracle.py::test_local_with_reuse_known_answer",
             "tests/test_oracle.py::test_closed_form_equals_the_oracle")),
    Planted("route merge charged to the owner instead of the home",
            "simulator/costmodel/phases.py",
            "        merge=cm.merge_time(src, batch, heads),\n    )\n\n\ndef fetch_phases",
            "        merge=cm.merge_time(dst, batch, heads),\n    )\n\n\ndef fetch_phases",
            ("tests/test_oracle.py::test_route_merge_on_a_heterogeneous_pair",
             "tests/test_oracle.py::test_closed_form_equals_the_oracle")),
    Planted("a decode step's projections + FFN removed",
            "simulator/engine/gpu_loop.py",
            "                na_layer = costs.na(g, len(decoding))\n",
            "                na_layer = 0.0\n",
            ("tests/test_oracle.py::test_one_decode_step_known_answer",)),
    Planted("admission capacity check off by one (reserve)",
            "simulator/engine/gpu_blocks.py",
            "            if self.reserved + need > self.cap:",
            "            if self.reserved + need >= self.cap:",
            ("tests/test_promises.py::test_a_request_that_exactly_fits_is_admitted",)),
    Planted("admission capacity check off by one (on demand)",
            "simulator/engine/gpu_blocks.py",
            "            if own > self.cap:", "            if own >= self.cap:",
            ("tests/test_promises.py::test_a_request_that_exactly_fits_is_admitted",)),
    Planted("KV reservation ignores the output tokens",
            "simulator/engine/admission.py",
            "        return -(-(int(self.inp[r]) + int(self.out[r])) // self.bt)",
            "        return -(-(int(self.inp[r])) // self.bt)",
            ("tests/test_promises.py::test_the_reservation_counts_output_tokens",)),
    Planted("sparse window rounded down instead of up",
            "workloads/sparse.py",
            "        return -(-tokens // self.block_tokens)", "        return tokens // self.block_tokens",
            ("tests/test_oracle.py::test_window_and_block_counts_at_sizes_that_do_not_divide",)),
    Planted("uniform block draws never reach the last block",  # since stop 37: the kernel
            "workloads/sparse_kernels.py",
            "            v = np.int64(u[1, t] * a)\n", "            v = np.int64(u[1, t] * (a - 1))\n",
            ("tests/test_promises.py::test_uniform_draws_are_uniform_over_every_older_block",)),
    Planted("uniform block draws cover only half the range",
            "workloads/sparse_kernels.py",
            "            v = np.int64(u[1, t] * a)\n", "            v = np.int64(u[1, t] * (a // 2))\n",
            ("tests/test_promises.py::test_uniform_draws_are_uniform_over_every_older_block",)),
    Planted("atomic write's temporary file on another filesystem",
            "simulator/fileio.py",
            'suffix=".tmp", dir=target.parent or ".")', 'suffix=".tmp")',
            ("tests/test_fileio.py::test_the_temporary_file_lies_beside_its_target",)),
    Planted("the engine ignores its seed",
            "simulator/engine/exact.py",
            "        root = np.random.default_rng(seed)\n", "        root = np.random.default_rng(0)\n",
            ("tests/test_promises.py::test_different_seeds_give_different_records",)),
    Planted("copy eviction ordered by the wrong clock (the owner's, not the holder's)",
            "simulator/kvcache/eviction.py",
            # since stop 31: copies and owned blocks in one LRU order
            "        used = np.concatenate((d.copy_used_at(gpu, held), d.used_at[mine]))",
            "        used = np.concatenate((d.used_at[held], d.used_at[mine]))",
            ("tests/test_promises.py::test_copies_are_evicted_by_the_holding_gpus_clock",)),
)

#: Why a flow's field may start anywhere: the first read of it comes after a class is joined.
_SET_BY_JOINING = "read only when a shared flow completes, and joining a class sets it first"
#: Why adaptive's owner index may start anywhere: it is read only after obs.pair sets it.
#: Why a bulk message's size test in the policies may move: no message has 1 B or fewer.
_NO_TINY_MESSAGE = ("bulk_messages lists no message of 1 B or fewer: route's query and answer "
                    "rows are KBs, fetch's request 8 B a block and query, and a fetch of no "
                    "block lists none")


#: Why a comparison whose two sides pick the same value when equal may include equality.
_EQUAL_SAME = "equal: the same value either way"
#: Why chain's lists may be zipped without a length check.
_ONE_STEP = ("chain's one caller (fast.py) builds busy, folds and kernels from the same slots: "
             "their lengths agree")
#: Why a phase's lists may be zipped without a length check.
_ONE_PHASE = ("the callers build a phase's starts, bytes, caps and links together "
              "(fast_links.Links._share): their lengths agree")
#: Why a filling's start time may be anything when there are no flows.
_NO_FLOWS = "no flows: the loop does not run and t is not read"
#: Why the flows' finishes may start anywhere.
_EVERY_FINISH = ("every flow's finish is written when it completes, and the loop runs until "
                 "every flow has")


def _links_equivalents() -> dict:
    """Equivalent mutants of ``simulator/engine/fast_links.py``."""
    path = "simulator/engine/fast_links.py"
    same_length = ("the zipped lists are built from the same messages, routes or links: "
                   "their lengths agree")
    zips = ("starts = [m[3] + r[0] for m, r in zip(msgs, routes, strict=True)]",
            "for m, r, s in zip(msgs, routes, starts, strict=True)]",
            "return list(zip(starts, ends, strict=True))",
            "for (u, v), load, rate in zip(links, loads, rates, strict=True):",
            "if all(m[2] / r[1] <= self.SMALL_TIME for m, r in zip(msgs, routes, strict=True)):",
            "key = tuple([(r[7], m[2], s - t0) for m, r, s in zip(msgs, routes, starts, "
            "strict=True)])")
    memory = ("a memory bound: the memo of phase shapes is emptied at 100,000 shapes; its "
              "answers are the same whether or when it is")
    batches = ("records go to the Fabric in batches only to bound memory: flush() at the run's "
               "end hands over the rest in the same order, before anything reads them")
    not_disjoint = ("The phase is then filled max-min although its routes share no link: each "
                    "message alone on its links flows at its closed-form rate throughout, so "
                    "it ends when the disjoint path says, up to rounding (slower)")
    out = {(path, line, "True -> False"): same_length for line in zips}
    out.update({
        (path, "if c.last_end > s and c.free_at(s) > s:", "> -> >=", "c.last_end > s"):
            "last_end = s: every known item ends by s, so free_at(s) <= s and the second test "
            "fails: idle either way",
        (path, "wait = max(c.free_at(s) for c in r[3]) - s if r[3] else 0.0", "3 -> 4"):
            "a route's calendars (r[3]) and seconds per byte (r[4]) come from its links "
            "together: both empty or neither",
        (path, "wait = max(c.free_at(s) for c in r[3]) - s if r[3] else 0.0", "0.0 -> 1.0"):
            "a message's route crosses at least one link (src != dst): the else is never taken",
        (path, "if wait > 0.0:", "> -> >="): "wait = 0: it returns 0.0 either way",
        (path, "return f if f > e else e", "> -> >="): _EQUAL_SAME,
        (path, "if shared < f:", "< -> <="): _EQUAL_SAME,
        (path, "if f > e:", "> -> >=", "#2"): _EQUAL_SAME,
        (path, "shared = cal.shared_end(start_at, wire) if cal.free_at(start_at) > start_at \\",
         "> -> >="):
            "work that ends at the aggregate's start: its share then is its time alone, "
            "start + wire, which is also its FIFO end, so the same end either way",
        (path, "if e > end:", "> -> >="): _EQUAL_SAME,
        (path, "t0 = min(starts)", "min -> max"):
            "t0 is only a common reference: the key holds starts relative to it and the answer "
            "adds it back, so any start of the phase gives the same ends",
        (path, "if len(self._shared) > 100_000:", "> -> >="): memory,
        (path, "if len(self._shared) > 100_000:", "100000 -> 100001"): memory,
        (path, "self._shared.clear()", "delete `self._shared.clear()`"): memory,
        **{(path, "if len(rec) >= self.FLUSH:", ">= -> >", k): batches for k in ("#1", "#2")},
        (path, "self.fabric.record_messages(*zip(*rec, strict=True))", "True -> False"):
            "every record is one tuple of five fields: the five columns have one length",
        **{(path, "self.flush()", "delete `self.flush()`", k): batches for k in ("#1", "#2")},
        (path, "return False", "return X -> None", "#2"):
            "_disjoint's answer is only tested for truth (if not _disjoint(...)): None is false",
        # stop 65
        **{(path, "return True", desc, "#2"): not_disjoint
           for desc in ("return X -> None", "True -> False")},
        (path, "seen: frozenset[int] = routes[0][6]", "0 -> 1"):
            "a phase here has two messages or more (a lone one goes through Links.one): seeded "
            "with the second route's links, the second is found to share them. " + not_disjoint,
        (path, "key = tuple([(r[7], m[2], s - t0) for m, r, s in zip(msgs, routes, starts, "
               "strict=True)])", "- -> +"):
            "the memo's key stays one-to-one: two phases with equal s + t0 for every message "
            "have the same earliest start (2 t0), so the same starts; shapes that differ only "
            "by a shift in time no longer share an entry, and each is computed once more",
    })
    return out


def _set_before_read(path: str, fields: dict[str, tuple[str, str, str]]) -> dict:
    """Equivalent mutants of initial values set again before any read: for each source line,
    ``(statement, changed constant, reason)`` gives the statement deleted and the constant
    changed, both with that reason."""
    out = {}
    for line, (statement, changed, reason) in fields.items():
        out[(path, line, f"delete `{statement}`")] = reason
        out[(path, line, changed)] = reason
    return out


def _of_module(path: str, entries: tuple[tuple[str, str, str], ...]) -> dict:
    """Equivalent mutants of one module: ``(line's text, mutation, reason)`` each."""
    return {(path, line, desc): why for line, desc, why in entries}


#: Equivalent mutants: (path, the mutated line's text stripped, description[, the mutated
#: expression's source]) → why no test can tell them from the original. Keyed by the line's
#: text, not its number, so that edits elsewhere in the module keep them listed; the optional
#: fourth part picks one of several mutants with the same description on that line.
def _slots_equivalents() -> dict:
    """Equivalent mutants of ``simulator/engine/fast_slots.py``."""
    path = "simulator/engine/fast_slots.py"
    no_fetch_above = ("a fetch round's holder code is a GPU (< G) or a host tier (G .. 2G - 1): "
                      "dropped blocks (2G and up) are recomputed (exact._Run._group forces "
                      "local), so the upper bound is never reached")
    order = ("the order field only breaks ties among one home's kernels (heap key: issued, "
             "home, order): shifting or spacing it keeps their order")
    sentinel = ("a home's sentinel (rd None) is queued when it has no kernel left in the queue: "
                "its order field breaks no tie and its duration is not read")
    host = "if run.G <= code < 2 * run.G:"
    out = {
        (path, host, "< -> <="): no_fetch_above,
        (path, host, "2 -> 3"): no_fetch_above,
        (path, "elif run.G <= rd.code < 2 * run.G:", "< -> <="): no_fetch_above,
        (path, "elif run.G <= rd.code < 2 * run.G:", "2 -> 3"): no_fetch_above,
        (path, "for rd, t0 in zip(remote, starts, strict=True):", "True -> False"):
            "starts is built from remote: their lengths agree",
        (path, "tags), strict=True):", "True -> False"):
            "the second messages, the phase's answers to them and remote have one length",
        (path, "seen = [0] * len(homes)", "0 -> 1"): order,
        (path, "seen[rd.home] += 1", "1 -> 2"): order,
        (path, "ends: list[float] = [done.get(h, 0.0) for h in range(len(homes))]", "0.0 -> 1.0"):
            "a home not in done has a kernel or a sentinel queued, and its sentinel writes "
            "its end: the default is always overwritten",
        (path, "kernels.append((arrived, len(remote) - mine + i, rd.cf.compute + rd.cf.merge,",
         "- -> +"):
            "len(remote) - mine is the home's remote rounds so far, whose order fields are 0 .. "
            "that - 1: len(remote) + mine + i is above them too and rises with i, so every tie "
            "is broken as before",
        (path, "if c.end > release[h]:", "> -> >="): _EQUAL_SAME,
        (path, "if issued > release[h]:", "> -> >="): _EQUAL_SAME,
        (path, "memo[(g, k, s, b, per, distinct)] = option",
         "delete `memo[(g, k, s, b, per, distinct)] = option`"):
            "a memo of a pure policy's answers: without the store the policy is asked again "
            "and answers the same",
    }
    for line in ("queue += [(release[h], h, -1, 0.0, None) for h in range(len(homes))",
                 "heapq.heappush(queue, (last, h, -1, 0.0, None))"):
        for desc in ("-x -> x", "1 -> 2", "0.0 -> 1.0"):
            out[(path, line, desc)] = sentinel
    return out


#: why forgetting that a GPU reached the slots it laid changes no result (two lines say so)
_REACHED = ("the GPU has gone past every slot it laid, having waited for them or found nothing "
            "due before them, so a later settle finds none planned after its time and "
            "interrupts nobody; the next laying replaces what is kept, and due drops a stale "
            "heap entry once its times have passed")


def _adaptive_kernel_equivalents() -> dict:
    """Equivalent mutants of ``simulator/policies/adaptive_kernel.py``."""
    path = "simulator/policies/adaptive_kernel.py"
    hashed = ("the hash only picks where a key's probing starts; inserting and finding share it, "
              "so any function of the key finds every entry (in another place)")
    at_edge = "at the boundary both branches give the same value"
    one_round = ("every round selects at least one block for one query: n = K·B ≥ 1, so its "
                 "chance of a round is > 0 and this branch is never taken")
    unread = ("the key, blocks and option fields are read only with status MISS: here they are "
              "placeholders")
    size = ("an initial size or growth rule: a larger array, or a table grown earlier or one "
            "entry later, holds the same entries (the table stays at most about half full, so "
            "probing always meets a free place)")
    mixed = "mixed = (key & 0x7FFFFFF) * 0x9E3779B1 + (key >> 27) * 0x5BD1E99"
    entries = [
        *((mixed, d, hashed) for d in ("+ -> -", "134217727 -> 134217728",
                                       "2654435761 -> 2654435762", "27 -> 28",
                                       "96280217 -> 96280218")),
        ("i = (mixed ^ (mixed >> 29)) & mask", "29 -> 30", hashed),
        ("i = (i + 1) & mask", "+ -> -", "probing backwards visits every place as well"),
        ("i = (i + 1) & mask", "1 -> 2",
         "probing by two visits the places of one parity, half the table: it would cycle only "
         "if every one of them were full, which needs every entry of an at-most-half-full "
         "table to hash to that parity"),
        ("if reuse == 1.0 or selected <= 0:", "<= -> <", one_round),
        ("m = steps if steps > 0.0 else 0.0  # max(0.0, steps)", "> -> >=", at_edge),
        ("pi = 0.0 if share < 0.0 else share  # max(share, 0.0)", "< -> <=",
         at_edge + " (0.0 or -0.0: the same sums)"),
        ("pi = 1.0 if pi > 1.0 else pi  # min(·, 1.0)", "1.0 -> 2.0",
         "any share of 1 or more returns m on the next line, before pi is used"),
        ("pi = 1.0 if pi > 1.0 else pi  # min(·, 1.0)", "> -> >=", at_edge),
        ("lam = 0.0 if lam < 0.0 else lam  # max(·, 0.0)", "< -> <=", at_edge),
        ("m = left if left > 0.0 else 0.0  # max(0.0, ·)", "> -> >=", at_edge),
        ("if r <= 0:", "<= -> <",
         "a room of 0: the next branches give 0 / (held + need) = 0.0 as well"),
        ("elif r - held_h >= need:", ">= -> >",
         "room - held = need: room / (held + need) is 1.0 as well (whole numbers)"),
        ("survival = x if x < 1.0 else 1.0  # min(1.0, ·)", "< -> <=", at_edge),
        ("survival = x if x < 1.0 else 1.0  # min(1.0, ·)", "1.0 -> 2.0",
         "here room < held + need: the ratio is below 1 and the min never binds"),
        ("return REFERENCE, 0, 0, 0, nan, nan, nan, reuse, nan", "0 -> 1", unread),
        ("return REFERENCE, 0, 0, 0, nan, nan, nan, reuse, per", "0 -> 1", "0", unread),
        ("return DONE, 0, 0, 0, t_route, t_fetch, total, reuse, per", "0 -> 1", unread),
        ("guess = selected / (reuse * p0) if p0 > 0 else 1.0", "> -> >=", one_round),
        ("guess = selected / (reuse * p0) if p0 > 0 else 1.0", "1.0 -> 2.0", one_round),
        ("per = x if x > 1.0 else 1.0  # max(1.0, ·)", "> -> >=", at_edge),
        ("if mine > 0:", "> -> >=",
         "an owner with no queries: 0 / max(home, 1) is 0.0 as well"),
        ("stall = mine / (home_q if home_q > 0 else 1)  # / max(home_q, 1) (ints)", "0 -> 1",
         "a home of one query divides by 1 either way (queries are whole numbers)"),
        ("if made > 0 and chance > 0:", "> -> >=", "chance > 0", one_round),
        ("most = n if n < per else per  # min(per_round, n)", "< -> <=", at_edge),
        ("y = new / (most if most > 1.0 else 1.0)  # / max(1.0, ·)", "> -> >=", at_edge),
        ("chance = y if y < 1.0 else 1.0  # min(1.0, ·)", "< -> <=", at_edge),
        ("k = blocks / (reuse * chance) if chance > 0 else 0.0", "> -> >=", one_round),
        ("k = blocks / (reuse * chance) if chance > 0 else 0.0", "0.0 -> 1.0", one_round),
        ("lerped = np.empty((2, 5))", "2 -> 3", "a larger scratch array: rows 0 and 1 are used"),
        ("lerped = np.empty((2, 5))", "5 -> 6", "a larger scratch array: columns 0-4 are used"),
        ("if x < 1.0:", "< -> <=", at_edge),
        ("total = f[0] + f[1] + f[2] + f[3] + f[4]", "+ -> -", "f[0] + f[1] + f[2] + f[3]",
         "f[3] is fetch's return phase, 0.0 for every fetch (costmodel.phases.fetch_phases)"),
        ("more = total - (q[0] + q[1] + q[2] + q[3] + q[4])", "+ -> -",
         "q[0] + q[1] + q[2] + q[3]",
         "q[3] is fetch's return phase, 0.0 for every fetch (costmodel.phases.fetch_phases)"),
        ("if chance <= 0:", "<= -> <", one_round),
        ("t_fetch = 0.0", "0.0 -> 1.0", one_round),
        ("slow = slow_fetch * moved if moved < 1.0 else slow_fetch  # (× 1.0: the same float)",
         "< -> <=", at_edge),
        ("t_fetch = chance * (total + slow + (wait if wait > 0.0 else 0.0))", "> -> >=",
         at_edge),
        ("ow = ow if ow > 0.0 else 0.0", "> -> >=", at_edge),
        ("t_route = (sent + p[2] + p[3] + p[4] + ow + slow_route + (hw if hw > 0.0 else 0.0)",
         "> -> >=", at_edge),
        ("t_route = t_route + (1.0 - 1.0 / reuse) * chance * (more if more > 0.0 else 0.0)",
         "> -> >=", at_edge),
        ("self.rows = np.zeros(1 << 12, np.int64)", "1 -> 2", size),
        ("self.rows = np.zeros(1 << 12, np.int64)", "12 -> 13", size),
        ("self.phases = np.zeros((1 << 11, 5))", "1 -> 2", size),
        ("self.phases = np.zeros((1 << 11, 5))", "11 -> 12", size),
        *(("if 2 * (self.n + 1) > len(self.keys):", d, size)
          for d in ("2 -> 3", "> -> >=", "+ -> -", "1 -> 2")),
        ("rows = np.zeros(2 * len(self.keys), np.int64)", "2 -> 3", size),
    ]
    return {(path, *e[:-1]): e[-1] for e in entries}


def _laid_equivalents() -> dict:
    """Equivalent mutants of ``simulator/engine/fast_laid.py``."""
    path = "simulator/engine/fast_laid.py"
    number = ("a laying's number only tells one laying of a GPU from its next (a stale heap "
              "entry from another): any start, and any step that keeps them apart, does; with "
              "every laying numbered alike a stale entry can only make LaidSlots.due earlier, "
              "and waiting where nothing is due changes no result")
    clamp = "i is raised to lead on the next line: lead's slots are never taken back either way"
    return {
        (path, "self._layings = 0", "0 -> 1"): number,
        (path, "self._layings += 1", "+= -> -="): number,
        (path, "self._layings += 1", "1 -> 2"): number,
        (path, "self._layings += 1", "delete `self._layings += 1`"): number,
        (path, "self.laid[g] = None", "delete `self.laid[g] = None`", "#1"):
            _REACHED,
        (path, "if i > lead and issues[i - 1] == now and self._before(g):", "> -> >="): clamp,
        (path, "kernels = [2 if a else 1 for a in mine]", "1 -> 2"):
            "a laid slot's kernels counted as FastRun._decode's slot-by-slot loop counts them: "
            "a quiet slot's attention is positive, and the else is not reached",
        (path, "if i < lead:", "< -> <="):
            "i = lead sets i to what it is",
        (path, "return ev.gpu < g", "< -> <="):
            "a GPU's own event never takes back its slots: its process is the one running, "
            "and it keeps nothing laid while it runs",
    }


def _fast_equivalents() -> dict:
    """Equivalent mutants of ``simulator/engine/fast.py`` and ``fast_quiet.py``."""
    path = "simulator/engine/fast.py"
    quiet = "simulator/engine/fast_quiet.py"
    no_debt = ("a step starts with no debt: each step's debt is settled at a slot start or "
               "waited out at its end, and only a running step's items can be pushed (no item "
               "is issued before now, and a push moves items issued after the pushing one) — "
               "so clearing it at a step's start, or its first value, changes nothing")
    empty = ("an empty run of slots adds 0.0 to the time and counts no busy time and no "
             "kernel; the stream's last end it may raise to that time is only this GPU's "
             "(a policy that never routes), and no later reading of it changes")
    either = ("which of two paths composes a step that only this GPU's kernels can join: at the "
              "edge (the stream's last item ending exactly at the start, a step of exactly "
              "VECTOR_SLOTS slots) the per-slot loop gives the same items and floats as the "
              "arrays, only slower")
    return {
        (path, "if not drawn and self.chain_quiet and self.cal[g].last_end <= start_at:",
         "<= -> <"): either,
        (path, "own_stream = self.chain_quiet and cal.last_end <= at", "<= -> <"): either,
        (path, "if own_stream and self.S >= VECTOR_SLOTS and not observing:", ">= -> >"):
            either,
        (path, "if own_stream and self.S >= VECTOR_SLOTS and not observing:", "not x -> x"):
            "the arrays are then taken by an observing policy that never routes and refused to "
            "the others (which take the per-slot loop: the same items and floats, slower); no "
            "built-in policy both observes and never routes",
        (path, "self.debt = [0.0] * self.G", "0.0 -> 1.0"): no_debt,
        (path, "self.debt[g] = 0.0", "delete `self.debt[g] = 0.0`", "#1"): no_debt,
        (path, "self.debt[g] = 0.0", "delete `self.debt[g] = 0.0`", "#3"): no_debt,
        (path, "drawn_picks = dict(zip(drawn, sums, strict=True))", "True -> False"):
            "the drawn queries' selections have one row per drawn query",
        (path, "q_arr = (n_arr > 0).astype(n_arr.dtype)", "> -> >="):
            "a slot's query count is read only where it has local blocks: the attention "
            "table's row 0 is 0.0 for every count, and QuietSlots.run_slots and the composer "
            "test the block count first",
        (path, "if s > prev and own_stream:  # only this GPU's kernels on its stream: counted,",
         "> -> >="): empty,
        (quiet, "if s > prev:", "> -> >="): empty,
        (path, "if s > prev and not own_stream:", "> -> >="):
            "s = prev: the loop over range(prev, s) is empty, so the branch does nothing, as "
            "skipping it does",
        (path, "elif s > prev and lay:", "> -> >="):
            "s = prev: LaidSlots.lay lays nothing (its loop is empty), keeps nothing and "
            "returns (at, prev) unchanged, as skipping it does",
        (path, "at = yield from self._slot_start(g, at, False)", "False -> True", "#1"):
            "observing makes the slot wait for its start even when no event is due before it: "
            "nothing happens in between, so the slot is composed with the same values",
        (path, "end = cal.reserve(at, a + na_layer, g, fold, 2 if a else 1)", "1 -> 2"):
            "a slot with nothing to exchange holds its selected blocks at home (every query "
            "selects at least one block), so its attention is positive and the else is not "
            "reached",
        (path, "self.laid.reached(g)", "delete `self.laid.reached(g)`"):
            _REACHED,
        (quiet, "bigger[:rows, :cols] = table", "delete `bigger[:rows, :cols] = table`"):
            "the table is a memo of the cost model: entries not copied over are filled again "
            "with the same values",
        (quiet, "for n, q in set(zip(n_arr[missing].tolist(), q_arr[missing].tolist(), "
         "strict=True)):", "True -> False"):
            "both lists are the same mask's entries of arrays of one length",
    }


def _kernels_equivalents() -> dict:
    """Equivalent mutants of ``workloads/sparse_kernels.py`` (mutated as Python: COMPILED)."""
    path = "workloads/sparse_kernels.py"
    focus = "p_pop <= comp < p_mix and nf[q] > 0:  # one of the query's own entries"
    as_python = ("as Python (NUMBA_DISABLE_JIT) numpy's int64 % 0 is 0 with a warning and "
                 "unused; compiled, numba raises ZeroDivisionError and the sparse tests fail")
    no_regions = ("{} % 1 is 0 anyway (rb_q > 1); a query without regions draws nothing "
                  "popular (else 1)")
    return {
        (path, f"elif {focus}", "< -> <="): "comp = popular + focus share has probability 0",
        (path, f"elif {focus}", "<= -> <"): "comp = popular share has probability 0",
        (path, "if p_pop > 0 and comp < p_pop and rb_q > 0:", "< -> <="):
            "comp = popular share has probability 0",
        (path, "if p_pop > 0 and comp < p_pop and rb_q > 0:", "> -> >=", "p_pop > 0"):
            "with popular_fraction 0, comp < 0 never holds either",
        (path, "if cdf[mid] <= x:", "<= -> <"):
            "x = u · cdf[r - 1] equal to a cumulative weight has probability 0",
        (path, "prime_mod = PRIME % rb_q if rb_q > 0 else 0", "0 -> 1"):
            no_regions.format("PRIME"),
        (path, "salt_mod = salt % rb_q if rb_q > 0 else 0", "0 -> 1"): no_regions.format("salt"),
        (path, "prime_mod = PRIME % rb_q if rb_q > 0 else 0", "> -> >="): as_python,
        (path, "salt_mod = salt % rb_q if rb_q > 0 else 0", "> -> >="): as_python,
        (path, "seen = np.full(avail.max() + 1, -1, np.int64)", "1 -> 2"):
            "a larger stamp array, or an initial stamp of -2: never a row's stamp (>= 0)",
        (path, "fresh = np.zeros(n_draws + 1, np.int64)  # each renewal's draw (+ one never kept)",
         "1 -> 2"): "one more entry that is never kept",
        (path, "stamp = 0", "0 -> 1"): "stamps starting at 1: never the initial -1 either",
        (path, "stamp += 1", "1 -> 2"):
            "stamps need only differ from row to row and from the initial -1",
        (path, "persist = renew.size > 0", "0 -> 1"):
            "a mask, when given, has at least two layers and one block: size >= 2",
        (path, "cur = 0.0", "0.0 -> 1.0"):
            "layer 0 always draws afresh: the initial value is never read",
    }


def _rounds_equivalents() -> dict:
    """Equivalent mutants of the rounds group (``rounds.py``, ``regret.py``; stop 42)."""
    host = 'elif self.option == "fetch" and run.G <= self.code < 2 * run.G:'
    no_fetch_above = ("a fetch round's holder code is a GPU (< G) or a host tier (G .. 2G - 1): "
                      "dropped blocks are recomputed at home with the home's code "
                      "(exact._Run._group), so the upper bound is never reached")
    return {
        **_of_module("simulator/engine/rounds.py", (
            (host, "< -> <=", no_fetch_above),
            (host, "2 -> 3", no_fetch_above),
        )),
        **_of_module("simulator/engine/regret.py", (
            ("w = end_at / bins if end_at > 0 else 0.0", "> -> >=",
             "a run that ended at 0: 0 / bins is 0.0 as well (no run ends before 0)"),
            ('out["choices"] = {p: choices_over_time(r.rounds, float(r.summary.get("sim_time", '
             '0.0)))', "0.0 -> 1.0",
             "every Result's summary holds sim_time: the default is never used"),
        )),
    }


def _serving_equivalents() -> dict:
    """Equivalent mutants of the serving group (``kvtransfer.py``, ``exchange.py``,
    ``reuse.py``, ``clock.py``; stop 42)."""
    flops = "flops = 3.0 * tokens * (rot / arch.bytes_per_element) * arch.layers"
    bound = ("the rotary pass reads and writes 4 B per 3 FLOPs (0.75 FLOP/B; at most 3 FLOP/B "
             "doubled or quadrupled, less divided), far below every catalogue GPU's ridge point "
             "(the lowest, the H20's, ~28 FLOP/B at the kernel model's efficiencies): its "
             "FLOPs never set its time")
    zero_wait = ("end == now: a timeout of 0 resumes the layer at the same time, in the same "
                 "order (the process is the only waiter on it)")
    return {
        **_of_module("simulator/engine/kvtransfer.py", (
            ("release = (free if free > now else now) + self.overhead_time", "> -> >=",
             "free == now: the same release either way"),
            ("self.prefill_of = np.full(n, -1, np.int64)", "-x -> x",
             "deliver sets a request's prefill GPU before anything reads it"),
            ("self.prefill_of = np.full(n, -1, np.int64)", "1 -> 2",
             "deliver sets a request's prefill GPU before anything reads it"),
            ("if nbytes <= 0:", "0 -> 1",
             "a post carries whole tokens' KV over at least one layer: never more than 0 and "
             "at most 1 byte (a token's KV in a layer is over 500 B in every catalogue model)"),
        )),
        **_of_module("simulator/engine/exchange.py", (
            ("busy = np.flatnonzero(loads > 0).tolist()", "0 -> 1",
             "a loaded link carries whole tokens' hidden states (kilobytes): never 0 < load ≤ 1"),
            ("if e > end:", "> -> >=", "e == end: end takes the same value"),
        )),
        **{("simulator/engine/exchange.py", "if end > env.now:", "> -> >=", k): zero_wait
           for k in ("#1", "#2")},
        **_of_module("simulator/engine/reuse.py", (
            (flops, "* -> /", bound),
            (flops, "3.0 -> 6.0", bound),
            (flops, "/ -> *", bound),
        )),
        **_of_module("simulator/engine/clock.py", (
            ("while peek() < next_at:", "< -> <=",
             "events due exactly at a tick run before its report instead of after it: the same "
             "events in the same order, the same reports"),
        )),
    }


def _costmodel_equivalents() -> dict:
    """Equivalent mutants of the costmodel group (stop 45)."""
    loaded = "simulator/costmodel/loaded.py"
    contention = "simulator/costmodel/contention.py"
    moe = "simulator/costmodel/moe.py"
    alltoall = "simulator/costmodel/alltoall.py"
    experts = "simulator/costmodel/experts.py"
    deepep = "simulator/costmodel/deepep.py"
    crossover = "simulator/costmodel/crossover.py"
    checked = ("the closed form's route and fetch, which every search asks before it answers, "
               "call check_round too: the same inputs are refused with the same message")
    rank_kernels = "simulator/costmodel/rank_kernels.py"
    filled = ("every slot is filled (ranks x slots items for ranks x slots slots): the initial "
              "value is never read")
    unread_index = ("a left-out link's index is never read (the kept pairs select only kept "
                    "links)")
    own_node = ("a crossing to the token's own node is a hop from the rank to itself (its relay "
                "there is itself), and the hops' diagonal is zeroed after")
    more_links = ("it only keeps more links (groups of pairs no longer match, or a dropped "
                  "link's twin is compared again): a link whose pairs all cross a slower one is "
                  "never the maximum, so keeping it changes no exchange time")
    starts = "every replayed round starts at t = 0 (its docstring): start is 0, so -start is +start"
    flat = ("a round's answer and merge do not grow with its blocks (phases.py: the answer "
            "message and the merge are sized by the batch): b - a is 0, so a +/- w*0 is a")
    return {
        (loaded, "if reuse == 1.0 or selected <= 0:", "<= -> <"):
            "selected = 0 with R > 1: -expm1(0 * log1p(-1/R)) is -0.0, equal to the 0.0 the "
            "branch returns",
        (loaded, "if w <= 0:", "<= -> <"):
            "w = 0: the interpolation a + 0*(b - a) is a, every phase being finite",
        (loaded, "a[3] + w * (b[3] - a[3]), a[4] + w * (b[4] - a[4]))", "+ -> -",
         "a[3] + w * (b[3] - a[3])"): flat,
        (loaded, "a[3] + w * (b[3] - a[3]), a[4] + w * (b[4] - a[4]))", "+ -> -",
         "a[4] + w * (b[4] - a[4])"): flat,
        (loaded, "total = p[0] + p[1] + p[2] + p[3] + p[4]", "+ -> -",
         "p[0] + p[1] + p[2] + p[3]"):
            "copy_step prices fetch and local only, whose answer phase (p[3]) is 0 "
            "(phases.py: ret=0.0): +0 and -0 give the same sum",
        # stop 78: the memo's int key and the comparisons written without max/min (stop 77)
        **{(loaded, "key = total_blocks * 4 + _CODE[option]", m):
           "the option's code is 0, 1 or 2, so 4n - c and 5n + c, like 4n + c, give every "
           "(blocks, option) its own key: the memo holds the same phases under other keys"
           for m in ("+ -> -", "4 -> 5")},
        (loaded, "if table is None:", "is -> is not", "#3"):
            "_at's table: given, it is replaced by _table's, the same memo object; not given, "
            "_phases looks the same table up itself",
        (loaded, "if x < 1.0:  # (max(x, 1.0) without the call: the policy asks this twice a "
                 "round)", "< -> <="): "x = 1.0 is set to 1.0",
        (loaded, "if per_round is not None and chance > 0:", "> -> >="):
            "chance is 0 only when no block is selected (n = 0): then n/R is 0 and the branch "
            "gives min(1, 0/max(1, ...)) = 0.0, the chance it was",
        **{(loaded, line, "> -> >="): "at 0.0 the kept value is 0.0, what the else gives"
           for line in (
               "owner_wait = owner_wait if owner_wait > 0.0 else 0.0  # max(0.0, ·), without "
               "the call",
               "+ (home_wait if home_wait > 0.0 else 0.0) + p[2] * float(owner_stall))",
               "return (1.0 - 1.0 / reuse) * chance * (more if more > 0.0 else 0.0)",
               "return chance * (total + slow + (home_wait if home_wait > 0.0 else 0.0)), total")},
        (loaded, "slow = slow_time * (moved if moved < 1.0 else 1.0)  # min(1.0, ·), without the "
                 "call", "< -> <="): "moved = 1.0 is 1.0 either way",
        (moe, "self.arch = arch", "delete `self.arch = arch`"):
            "nothing reads ExpertParallel.arch (its methods use the model's figures they copied)",
        (alltoall, "cuts = np.flatnonzero(np.diff(lk)) + 1", "1 -> 2"): more_links,
        (alltoall, "for i, members in zip(lk[np.r_[0, cuts]].tolist(), np.split(pr, cuts), "
              "strict=True):", "True -> False"):
            "np.split gives one group per first link: the lengths agree",
        (alltoall, "elif bw_all[i] < bw_all[j]:", "< -> <="):
            "two links of one pair set and one line rate: either is the bottleneck the other is",
        (alltoall, "keys[members.tobytes()] = i", "delete `keys[members.tobytes()] = i`", "#2"):
            more_links,
        (alltoall, "index = np.full(len(all_links), -1, np.int64)", "-x -> x"): unread_index,
        (alltoall, "index = np.full(len(all_links), -1, np.int64)", "1 -> 2"): unread_index,
        (alltoall, "self.links = [e for e, k in zip(all_links, keep, strict=True) if k]",
         "True -> False"): "keep has one flag per link: the lengths agree",
        (moe, "per_slot = np.bincount(r.slot.ravel(), minlength=R * self.slots) / n", "/ -> *"):
            "_aggregate normalizes per_slot before it uses it: any positive scale gives the same p",
        (moe, "cross[np.arange(R), self.node] = 0",
         "delete `cross[np.arange(R), self.node] = 0`"): own_node,
        (moe, "cross[np.arange(R), self.node] = 0", "0 -> 1"): own_node,
        (experts, "w = 1.0 / np.arange(1, experts + 1, dtype=float) ** zipf_exponent",
         "1.0 -> 2.0"): "the weights are normalized: a common factor cancels",
        (deepep, "if ep <= 8:", "8 -> 9"):
            "the table has no EP between 8 and 16: <= 9 skips the same row (EP 8)",
        (alltoall, "used = np.asarray(pairs) > 0", "0 -> 1"):
            "a pair that carries traffic carries whole tokens (thousands of bytes): no pair "
            "carries more than 0 and at most 1 byte",
        (experts, "out = np.full((ranks, slots), -1, np.int64)", "-x -> x"): filled,
        (experts, "out = np.full((ranks, slots), -1, np.int64)", "1 -> 2"): filled,
        **{(experts, "m = max(2 * k, k + 4)", m): "the draws per token per pass: any m >= k "
           "(all of these) gives the same law, draws with repeats skipped, in more or fewer "
           "passes" for m in ("max -> min", "* -> /", "2 -> 3", "+ -> -", "4 -> 5")},
        (experts, "u = rng.random((len(todo), m)) * cdf[-1]", "* -> /"):
            "the popularity is normalized (cdf[-1] is 1): u * 1 is u / 1",
        (experts, 'draws = np.minimum(np.searchsorted(cdf, u, side="right"), E - 1)', "- -> +"):
            "u < cdf[-1], so searchsorted returns at most E - 1: the clamp never binds",
        (experts, "out[todo[rows]] = draws[rows][take].reshape(-1, k)", "1 -> 2"):
            "numpy takes any negative size as the unknown one: reshape(-2, k) is reshape(-1, k)",
        **{(rank_kernels, line, f"delete `{line}`"): "nothing reads the attribute (the "
           "profile is taken once in the constructor)"
           for line in ("self.kernels = kernels", "self.spec = spec")},
        **{(rank_kernels, "self._cache[key] = got", "delete `self._cache[key] = got`", k):
           "a memo: the time is computed again, the same" for k in ("#1", "#2")},
        (rank_kernels, "if n <= 0:", "<= -> <"): "no kernel: the launch of 0 kernels is 0 s",
        (rank_kernels, "if tokens <= 0:", "<= -> <"):
            "no token: decode_ops gives no kernel, so the part is 0 s either way",
        **{(crossover, "check_round(1.0, batch, reuse)", m): checked
           for m in ("delete `check_round(1.0, batch, reuse)`", "1.0 -> 2.0")},
        **{(crossover, "check_round(blocks, batch, reuse)",
            "delete `check_round(blocks, batch, reuse)`", k): checked for k in ("#1", "#2")},
        (crossover, "return 0.0, 0", "0.0 -> 1.0"):
            "at the home's own GPU both options get the same bytes: the bandwidth search reads "
            "only their difference, the probe search only the message counts",
        **{(crossover, "return x, 2 if blocks > 0 else 0", m):
           "with no block fetch only merges while route also sends its query and result, so "
           "D0 < 0; one or two fetch messages more leave the probe slope negative or zero, "
           "and p = D0 / (n_r - n_f / R) < 0 (or no slope): no crossover either way"
           for m in ("> -> >=", "0 -> 1")},
        (contention, "return value", "return X -> None"):
            "no caller reads what timed() returns (the route's message record is read from "
            "its own yield)",
        (contention, 'out["probe"] = rec.started_at - start if src != dst else 0.0', "- -> +",
         "rec.started_at - start"): starts,
        (contention, 'out["transfer"] = env.now - start - out["probe"]', "- -> +",
         "env.now - start"): starts,
    }


#: Σ_{i≤n} min(i, k) at n == k: both branches of its closed form agree.
_AT_K = "n == k: k(k+1)/2 + (n - k)k is n(n+1)/2"


def _topologies_equivalents() -> dict:
    """Equivalent mutants of the topologies group (stop 56)."""
    builders = "topologies/builders.py"
    draw = "topologies/draw.py"
    uniform = ("every machine of a preset has the same GPUs and so the same NICs: a scalable "
               "unit's rails are any machine's NIC count, and every rail index is below it")
    return {
        (draw, "default=1)", "1 -> 2"):
            "the widest row of a graph with no nodes: 0.7 in for 1 or 2 nodes is below the "
            "8-inch floor either way",
        (draw, "FigureCanvasAgg(fig)", "delete `FigureCanvasAgg(fig)`"):
            "a Figure made without a canvas gets matplotlib's base canvas, whose savefig "
            "renders PNG, SVG and PDF through the same backends",
        (draw, "for a, b, d in sorted(g.edges(data=True), key=lambda e: (natural_key(e[0]), "
               "natural_key(e[1]))):", "1 -> 2"):
            "the two directions of a link start at different nodes, so the first key alone "
            "decides which is drawn; the second only orders one node's links among themselves "
            "(the order they are drawn in, one over another without overlap)",
        (builders, "rails = max(len(nics) for nics in unit)", "max -> min"): uniform,
        (builders, "attached = [nics[r] for nics in unit if r < len(nics)]", "< -> <="):
            uniform,
        (builders, "_check_fabric(p, oversubscription, 1, spines)", "1 -> 2"):
            "Lamina's testbed has one scalable unit of all its machines; the 1 stands in for "
            "nodes_per_su only to be checked >= 1, which 2 also is",
        (builders, 'g.graph["name"] = name', 'delete `g.graph["name"] = name`'):
            "every builder names its graph after the preset it is registered as "
            "(nx.DiGraph(name=p) with p the same name)",
        ("topologies/loader.py",
         'if text.endswith(".toml") or os.sep in text or "/" in text or Path(text).is_file():',
         "or -> and"):
            "on POSIX os.sep is '/': 'os.sep in text and \"/\" in text' is '\"/\" in text' "
            "(the other or's are killed by a spec naming a file without .toml or '/')",
        ("topologies/validate.py",
         'return tuple((0, int(p), "") if p.isdecimal() else (1, 0, p) for p in parts)',
         "0 -> 1"):
            "the split by a captured digit run alternates text and digits, so a key's i-th "
            "part is text in every name or digits in every name: the tag and the padding 0 "
            "never decide an order",
        ("topologies/validate.py",
         'return tuple((0, int(p), "") if p.isdecimal() else (1, 0, p) for p in parts)',
         "1 -> 2"):
            "the split by a captured digit run alternates text and digits, so a key's i-th "
            "part is text in every name or digits in every name: the tag never decides",
    }


def _pools_equivalents() -> dict:
    """Equivalent mutants of the pools group (stop 50: the staggered schedule's closed form;
    stop 51: the iteration plan; stop 52: Lamina's loop)."""
    staggered = "simulator/disaggregation/staggered.py"
    plan = "simulator/disaggregation/lamina_plan.py"
    pools = "simulator/disaggregation/pools.py"
    ring = "simulator/disaggregation/ring.py"
    byte_pool = "simulator/disaggregation/byte_pool.py"
    homog = "simulator/disaggregation/homogeneous.py"
    hfast = "simulator/disaggregation/homogeneous_fast.py"
    lamina = "simulator/disaggregation/lamina.py"
    lfast = "simulator/disaggregation/lamina_fast.py"
    nonzero_bytes = ("the bytes a stage sends to or from a GPU are 0 or at least a token's "
                     "share of a hidden state (kilobytes): > 0 and > 1 agree")
    no_query = ("no query bytes means no decode on any attention GPU (no attention kernel, "
                "no answer): the prompts' KV goes in the second stage instead of the first, "
                "with nothing between them — the same transfers from the same instant")
    own_phases = ("a micro-batch issues a phase only after its previous one ended (its stages "
                  "follow one another; a later end is waited out as its debt), so its own open "
                  "phases are never in flight at a new phase's start: the count of them only "
                  "skips a search that would find nothing")
    cache = "a memo of a pure function (kept, cleared or not): the same values, computed again"
    deferred = ("the deferred ring records reach the Fabric at the run's end instead (or one "
                "step later), in the same order: nothing reads them in between")
    return {
        (staggered, "if early_q and p.q.sum() > 0:", "> -> >="):
            "no query bytes means no decode on any attention GPU, so t_a is 0: the early-Q "
            "chain's 0 + max(0, send(K/V)) is the other branch's send(K/V) + 0",
        **{(plan, "key = (int(run.m[s]), s % run.K, ((s + 1) % len(run.m)) % run.K)",
            "% -> *", node): "a finer cache key (distinct for every slot, or every next "
           "slot): a slot kind is priced once more, never with another kind's times"
           for node in ("s % run.K", "((s + 1) % len(run.m)) % run.K")},
        **{(homog, "if len(self._rest) > 1 << 16:", d): cache
           for d in ("> -> >=", "1 -> 2", "16 -> 17")},
        (homog, "self._rest.clear()", "delete `self._rest.clear()`"): cache,
        (homog, "self._rest[key] = got", "delete `self._rest[key] = got`"): cache,
        **{(hfast, "if len(shapes) > 4096:", d): cache for d in ("> -> >=", "4096 -> 4097")},
        (hfast, "shapes.clear()", "delete `shapes.clear()`"): cache,
        (hfast, "if len(self._pending) >= DEFERRED_STEPS:", ">= -> >"): deferred,
        (hfast, "self.flush()", "delete `self.flush()`", "#2"): deferred,
        (hfast, "sent = [r[3] for r in rows for _ in r[0]]", "0 -> 1"):
            "r[1] (the hops' start offsets) has one entry per hop, as r[0] (their route ids)",
        **{(hfast, line, "1 -> 2"): "numpy 2.4 takes any negative size as the one it works "
           "out (reshape(n, -2) is reshape(n, -1))" for line in (
               "sid=np.array(sids, np.int32).reshape(len(rows), -1),",
               "end=np.array([r[2] for r in rows]).reshape(len(rows), -1),",
               "sent=np.array(sent, float).reshape(len(rows), -1),")},
        (homog, "self._wake()", "delete `self._wake()`", "#2"): "a replica waits only when "
        "it can admit nothing: the queue is empty or its head does not fit the replica's own "
        "KV; a finish on another replica changes neither (a request the closed loop then "
        "lets in arrives through `_deliver`, which wakes the replicas), so the woken replica "
        "would find nothing and wait again",
        (hfast, "return False", "return X -> None"):
            "its one caller reads it as `not rings_unshared(...)`: None and False alike",
        (pools, "done.tolist(), self.reason, strict=True))", "True -> False"):
            "every column is built with one entry per request (n), so zip never meets "
            "columns of different lengths",
        # stop 52: the byte pool and the set-up (pools.py from line 241; the byte pool and the
        # ring have modules of their own since), Lamina's loop and its fast mode
        (ring, "return ((), np.zeros(0), np.zeros(0), 0.0, 0.0)", "0 -> 1"):
            "a ring of one GPU has no hop: its start and end offsets are read only per hop "
            "(the loop skips a shape whose `sid` is empty), so their length does not matter",
        (pools, "return [x for x, k in zip(self._names, self._kinds, strict=True)",
         "True -> False"): "the kinds are read from the graph for each of its GPU names, "
        "one for one",
        (byte_pool, "if self.used > self.peak:", "> -> >="):
            "at equality the peak is set to the value it has",
        **{(lfast, "key = tuple((r[3], b, d) for r, b, d in zip(routes, nbytes, delays, "
            "strict=True))", d): "a memo key of the route's link set instead of its id, or "
           "zip without its length check over lists built one per message: a route's links "
           "fix its rate, and the delays and bytes are in the key" for d in ("3 -> 4",
                                                                             "True -> False")},
        **{(lfast, "if len(self._memo) > 100_000:", d): cache
           for d in ("> -> >=", "100000 -> 100001")},
        (lfast, "self._memo.clear()", "delete `self._memo.clear()`"): cache,
        **{(lfast, line, "True -> False"): "zip over lists built one per message of the phase"
           for line in ("[b / c for b, c in zip(nbytes, caps, strict=True)], linkset, own)",
                        "ends = [s + w for s, w in zip(starts, wires, strict=True)]")},
        **{(lfast, "self._late = 0.0", d, "#2"): "close runs once, at the run's end: "
           "nothing reads the count after it" for d in ("delete `self._late = 0.0`",
                                                        "0.0 -> 1.0")},
        **{(lfast, line, "0 -> 1"): nonzero_bytes for line in (
            "msgs = [(a, names[i], m * x[i] * f) for a, i, f in flows if x[i] > 0]",
            "msgs = [(names[i], b, m * x[i] * f) for i, b, f in flows if x[i] > 0]",
            "early = self.early_q and p.q.sum() > 0")},
        (lfast, "early = self.early_q and p.q.sum() > 0", "> -> >="): no_query,
        (lfast, "for w, cal in zip(work, self.att_streams, strict=True):", "True -> False"):
            "one work entry per attention GPU, as one stream per attention GPU",
        **{(lfast, "if e > t2:", "> -> >=", k): "at equality the latest end is set to the "
           "value it has" for k in ("#1", "#2")},
        **{(lfast, line, d): "at equality nothing moves: the phase's last end is the one it "
           "had, so what it pushes is 0 and no debt (never below 0) rises" for line, d in (
               ("moved = False", "False -> True"), ("if new > old:", "> -> >="),
               ("if pushed > debts[p.owner]:", "> -> >="))},
        (lfast, "if self.open and self.open[0].last <= now:", "<= -> <"):
            "a phase that ends at this instant is retired at the next call instead: "
            "`_touching` keeps only phases in flight after the new phase's first start (not "
            "before now), and the phase's records are the same whenever it is retired",
        **{(lfast, line, d): own_phases for line, d in (
            ("group = (self._touching(linkset, min(starts)) if len(self.open) > "
             "self.mine[owner]", "> -> >="),
            ("self.mine[owner] += 1", "+= -> -="),
            ("self.mine[owner] += 1", "delete `self.mine[owner] += 1`"),
            ("mine[p.owner] -= 1", "1 -> 2"))},
        **{(lfast, *key): "the phases' records reach the Fabric's link accounting at a later "
           "flush or at the run's end (close flushes), in the same order; nothing reads them "
           "before, and the record lists grow together (one entry per message each)"
           for key in (("if len(self._rec[0]) >= _FLUSH:", ">= -> >"),
                       ("if len(self._rec[0]) >= _FLUSH:", "0 -> 1"),
                       ("self._flush()", "delete `self._flush()`", "#1"),
                       ("if self._rec[0]:", "0 -> 1"))},
        (lfast, "for sid, s, e, x in zip(p.sids, p.starts, p.ends, p.nbytes, strict=True):",
         "True -> False"): "a phase's lists hold one entry per message each",
        # stop 53: the fast mode's slots and push-backs
        (lfast, "if m > 1:", "> -> >="): "an unfolded slot adds (1 - 1) x rt0, 0.0: the "
        "same end",
        (lfast, "comp.settle(j)", "delete `comp.settle(j)`"): "no debt is left at an "
        "iteration's start: the one before waits until a settle finds none, and by then "
        "every item of the micro-batch has ended, so nothing issued later can push it back "
        "(a calendar pushes only items issued after the newcomer, a phase only one still in "
        "flight)",
        **{(lfast, "kind = (m, k, ((s + 1) % slots) % K)", d, node): "a cache key "
           "that still keeps apart the slots whose outputs go to different slices: only the "
           "last slot sends them elsewhere than the slice after its own (to slice 0), and "
           "((s + 1) % slots) x K is distinct for every slot, while the slice two ahead "
           "(slice 1 for the last slot, k + 2 for the others of its slice) matches the last "
           "slot's peers only when slots % K == 0, where its outputs go where theirs do; a "
           "slot kind is composed once more, never with another kind's phases"
           for d, node in (("% -> *", "((s + 1) % slots) % K"), ("1 -> 2", "1"))},
        (lamina, 'self.tp_slices = arch.attention in ("gqa", "mha") and s > 1', "> -> >="):
            "a slice of one GPU has a ring of one: its all-reduces take no time and send "
            "nothing (Ring's guards), whatever bytes the plan gives them",
        **{(lamina, "seqs = self.serving.max_num_seqs or 1 << 30", d): "no run holds 2^30 "
           "requests: the cap binds neither way" for d in ("1 -> 2", "30 -> 31")},
        (lamina, "early = self.spec.early_q and p.q.sum() > 0", "> -> >="): no_query,
        **{(lamina, line, "0 -> 1"): nonzero_bytes for line in (
               "early = self.spec.early_q and p.q.sum() > 0",
               "evs = [fab.transfer(x, names[i], m * first[i] * f) for x, i, f in out if "
               "first[i] > 0]",
               "evs += [fab.transfer(x, names[i], m * second[i] * f) for x, i, f in out if "
               "second[i] > 0]",
               "evs = [fab.transfer(names[i], y, m * p.ret[i] * f) for i, y, f in back if "
               "p.ret[i] > 0]")},
    }


def _cli_tools_equivalents() -> dict:
    """Equivalent mutants of the cli_tools group (stop 66: trace, predict, kernel, topology,
    calibrate, sweep and demo), and of `kvfabric run`'s comparison table (cli_run)."""
    kernel = "simulator/cli/kernel.py"
    calibrate = "simulator/cli/calibrate.py"
    return {
        (kernel, 'page_tokens=int(shape.get("page_tokens", 16)), topk=topk_arg), shape',
         "16 -> 17"): "the default stands in only without --paged, and an unpaged "
        "KernelProfile.attention does not read page_tokens",
        (calibrate, "for inputs, fitted, res in zip(m.inputs, fit.fitted, fit.residuals, "
         "strict=True):", "True -> False"): "fit_line builds fitted and residuals from the "
        "very rows of m.inputs: the lengths always agree and strict never fires",
        (calibrate, 'if m.columns[-1] == "rtt_seconds":', "-x -> x"): "a ping-pong header "
        "has exactly two columns, so [1] is [-1]; a kernel header's [1] is 'tokens', which "
        "matches neither",
        ("simulator/cli/sweep.py", "for col, v in zip(shown.columns, row, strict=True)))",
         "True -> False"): "a row of shown.itertuples(index=False) has exactly one field per "
        "column: strict never fires",
        ("simulator/cli/sweep.py", "table.add_column(escape(str(col)), no_wrap=True)",
         "True -> False"): "print_table prints this table as it is only where its natural "
        "width fits (a terminal) or at that width (piped), so nothing wraps; narrower, it "
        "prints vertical() tables, whose columns set no_wrap of their own",
        ("simulator/cli/run.py", 't.add_column(col, justify="left" if col == "policy" else '
         '"right", no_wrap=True)', "True -> False"): "print_table prints the table as it is "
        "only where its natural width fits (a terminal) or at that width (piped), so nothing "
        "wraps; narrower, it prints vertical() tables, whose columns set no_wrap of their own",
        ("simulator/cli/predict.py", "xs = np.geomspace(rng[0], rng[1], 200)", "200 -> 201"):
            "one more point on the same smooth curves: no drawn difference",
        **{("simulator/cli/predict.py", 'fmt = target.rsplit(".", 1)[-1].lower() if "." in '
            'target else "png"', desc): "a name holding a '.' split once from the right has "
            "two pieces: splitting twice leaves the same last piece, and [1] is [-1]"
           for desc in ("1 -> 2", "-x -> x")},
        ("simulator/cli/demo.py", 'links = links[links.bytes > 0].sort_values(["utilization", '
         '"src", "dst"],', "0 -> 1"): "the story's smallest transfer is 1 MB: no link carries "
        "more than 0 and at most 1 byte",
        ("simulator/cli/demo.py", "console.width = 120  # piped: do not squeeze the tables to 80 "
         "columns", "120 -> 121"): "the story's tables are at most 100 columns wide and do not "
        "expand: 120 and 121 columns print the same",
    }


def _cli_equivalents() -> dict:
    """Equivalent mutants of the cli group (stop 53: what `kvfabric run` shows and writes)."""
    output = "simulator/cli/output.py"
    tables = "simulator/cli/tables.py"
    return {
        (output, "self.target.rmdir()", "delete `self.target.rmdir()`"):
            "on POSIX, rename(2) replaces an empty directory: os.replace moves the staging "
            "folder onto the empty target as onto none (the rmdir is for other systems)",
        (output, "shutil.rmtree(old, ignore_errors=True)", "True -> False"):
            "the aside folder is the run's own, made a moment before to hold the old result: "
            "removing it meets no error that a test can cause without faking the filesystem "
            "(root, as here, is not stopped by permissions)",
        (tables, "return console.measure(table, options=console.options.update(width=10_000)"
         ").maximum", "10000 -> 10001"): "any measuring width past every table's natural "
        "width gives that natural width",
        ("simulator/cli/results.py", "frames = [f for f in frames if len(f)] or frames[:1]",
         "1 -> 2"): "an empty frame is kept only while none is kept yet, so when every frame "
        "is empty there is exactly one: frames[:2] is frames[:1]",
        ("simulator/cli/results.py", "written.append(write_parquet(pd.concat(frames, "
         "ignore_index=True),", "True -> False"): "write_parquet writes no index "
        "(preserve_index=False, index=False): the rows and columns are the same",
        (tables, "color_system=None, force_terminal=False)", "False -> True"): "with no "
        "colour system a console forced to act as a terminal prints a table in the same "
        "characters (checked: a three-policy table, byte for byte); a table has no cursor "
        "moves or live updates",
        (tables, "per = max(1, n)", "1 -> 2"): "n >= 1 past the wide table's test, and "
        "vertical(t, 0, 2) of one row is vertical(t, 0, 1): one table of that row either way "
        "(and no table for no row)",
    }


def _gpu_equivalents() -> dict:
    """Equivalent mutants of the gpu group (the kernel model; stop 46)."""
    kernels, tables = "simulator/gpu/kernels.py", "simulator/gpu/tables.py"
    fitting, copies = "simulator/gpu/fitting.py", "simulator/gpu/copyengines.py"
    profile, layers = "simulator/gpu/profile.py", "simulator/gpu/layers.py"
    operators, calibration = "simulator/gpu/operators.py", "simulator/gpu/calibration.py"
    profiled, loaders = "simulator/gpu/profiled.py", "simulator/gpu/table_loaders.py"
    answers = "simulator/gpu/answers.py"
    hit_weight = ("on a hit the low and high index are the same row, so the weight between "
                  "them does not change the value or the source")
    inside = ("x equal to an axis end is a hit (the hit wins), and between rows the span is "
              "> 0 by construction (distinct sorted axis values)")
    masked = "span = 0 only where the result is masked (outside or a hit)"
    pd_solve = ("unreachable: a = JᵀJ (positive semi-definite) + a positive diagonal "
                "(damping·(diag + 1e-12) > 0) is positive definite, so solve never raises")
    two_paths = ("takes the other of the float and the array path, which give the same value "
                 "(held by test_the_decode_attention_model_at_hand_computed_points on both); "
                 "callers pass all floats or all arrays")
    return {
        (copies, "if nbytes <= np.exp(x[0]):", "<= -> <"):
            "at the first row's size the interpolation gives that row's time",
        (copies, "if nbytes >= np.exp(x[-1]):", ">= -> >"):
            "at the last row's size the interpolation gives that row's time (and the tail adds 0)",
        **{(fitting, line, "True -> False"): "names and the parameter vector have one entry "
           "per searched parameter" for line in (
               "p = {**fixed, **{n: float(np.exp(v)) for n, v in zip(names, t, strict=True)}}",
               "return {**fixed, **{n: float(np.exp(v)) for n, v in zip(names, theta, "
               "strict=True)}}")},
        (fitting, "return robust * np.sign(r) * np.sqrt(2.0 * (np.sqrt(1.0 + (r / robust) ** 2) "
         "- 1.0))", "2.0 -> 4.0"):
            "scales every row's cost by 2: the same minimizer, and the stopping test is "
            "relative to the cost",
        **{(fitting, "damping *= 10.0", m, "#1"): pd_solve
           for m in ("*= -> /=", "10.0 -> 20.0", "delete `damping *= 10.0`")},
        (fitting, "continue", "delete `continue`"): pd_solve,
        **{(profile, line, f"delete `{line}`"): "a memo: computed again on the next call, "
           "the same" for line in ("out._tables = self._tables", "self._sources[op] = got")},
        (answers, 'stacked = np.array(["|".join(map(str, t)) for t in zip(*keys, strict=True)])',
         "True -> False"): "the keys are broadcast to one shape: equal lengths",
        (profile, 'src = "extrapolated: " + src.split(": ", 1)[-1] + \\', "-x -> x"):
            "split at most once: two parts, so [1] is [-1] (every launch source has a kind "
            "before its colon)",
        (profile, "tri = np.where(full > 0, c * (c + 1.0) / 2.0 / np.where(full > 0, full, 1.0), "
         "0.0)", "> -> >="):
            "full = cP + c(c+1)/2 is 0 only when c = 0, where the triangle c(c+1)/2 is 0 too "
            "(the 0/0 of the inner one is masked by the outer)",
        (profile, "return np.where(n <= k, n * (n + 1.0) / 2.0, k * (k + 1.0) / 2.0 + (n - k) * "
         "k)", "<= -> <"): _AT_K,
        (profile, "return pairs, np.where(pairs > 0, np.minimum(tri, 1.0), 0.0)", "> -> >="):
            "pairs = 0 only when no token is new, where the triangle share is 0 as well",
        (answers, "return v", "return X -> None"):
            "unreachable: every key reaches _plain as a numpy scalar (an element of an array)",
        **{(operators, line, m): two_paths for line, m in (
            ("return v if type(v) is float else np.asarray(v, float)", "is -> is not"),
            ("if type(a) is float and type(b) is float:", "is -> is not"),
            ("if type(a) is float and type(b) is float:", "and -> or"),
            ("scalar = type(batch) is float and type(context) is float and type(q_heads) is "
             "float \\", "is -> is not"),
            ("scalar = type(batch) is float and type(context) is float and type(q_heads) is "
             "float \\", "and -> or"),
            ("and type(kv_heads) is float and type(head_dim) is float", "is -> is not"))},
        (operators, "rows = (rows if rows > 1.0 else 1.0) if type(rows) is float else "
         "np.maximum(1.0, rows)", "> -> >="):
            "at rows = 1.0 either branch gives 1.0",
        (operators, "gnk = (groups if groups > 1.0 else 1.0) * n * k", "> -> >="):
            "at groups = 1.0 either branch gives 1.0",
        (operators, 'out[sel] = collective(p, spec, "sendrecv", r.data["bytes"][sel], 2.0, '
         'fabric)', "2.0 -> 4.0"):
            "a send/recv's model reads the rank count only as > 1 (two ranks or four alike)",
        (calibration, "for col, cell in zip(header, row, strict=True):", "True -> False"):
            "the row's length was checked against the header's just above",
        (calibration, "w = 1.0 / m.seconds", "1.0 -> 2.0"):
            "every row's weight doubled: the same least-squares line",
        **{(profiled, line, m): "a cache's size: a miss computes the same value" for line, m in (
            ("self._ops = lru_cache(maxsize=4096)(self._decode_ops)", "4096 -> 4097"),
            ("self._collectives = lru_cache(maxsize=1 << 16)(self._collective_time)", "1 -> 2"),
            ("self._collectives = lru_cache(maxsize=1 << 16)(self._collective_time)",
             "16 -> 17"))},
        (profiled, 'd = layers.head_dim(arch) if arch.attention in ("gqa", "mha") else \\',
         "in -> not in"): "head_dim() falls back to the same query row over the element size, "
                          "and every catalog GQA model's head width is exactly that",
        (profiled, "if batch <= 0:", "<= -> <"):
            "no token: decode_ops gives no kernel (callers' logits never exceed the batch), so "
            "the time and the launches are 0 either way",
        **{(profiled, "if tokens <= 0 or sequences <= 0:", m): "no token or no sequence: the "
           "step's kernels and the attention are 0 s each, and so is their sum"
           for m in ("<= -> <", "or -> and")},
        (layers, "return rows, max(active, 1e-12)", "1e-12 -> 2e-12"):
            "the floor binds only at 0 tokens, where no routed GEMM is issued (m <= 0)",
        (kernels, "if logits is not None and logits < batch:", "< -> <="):
            "logits == batch: the head's FLOPs of batch - logits = 0 rows are taken off",
        (kernels, "if topk is None or n <= topk:", "<= -> <"): _AT_K,
        **{(tables, line, "True -> False"): "zips of equal lengths by construction (the "
           "columns of one Rows)" for line in (
               'joined = np.array(["|".join(v) for v in zip(*cols, strict=True)])',
               "pos = tuple(np.searchsorted(a, v) for a, v in zip(axes, vals, strict=True))",
               "strict=True)]")},
        (tables, "if not c > 0.0:  # log 0 = -inf and log of a negative (or NaN): never "
         "covered", "> -> >="):
            "c = 0: log 0 = -inf lies below every axis, so the lookup gives None all the same "
            "(after numpy's divide warning)",
        **{(tables, line, "1 -> 2"): "the sentinel -2 is a miss as -1 is: only near >= 0 is "
           "read" for line in (
               "near = i if abs(a[i] - x) <= 1e-9 else below if abs(a[below] - x) <= 1e-9 "
               "else -1", "np.where(np.abs(a[below] - x) <= 1e-9, below, -1))")},
        (tables, "w = 0.0", "0.0 -> 1.0"): hit_weight,
        (tables, "w = np.where(hit, 0.0, np.where(inside & (span > 0), (x - a[low]) / safe, "
         "np.nan))", "0.0 -> 1.0"): hit_weight,
        **{(tables, "elif a[0] < x < a[-1] and span > 0:", m): inside
           for m in ("< -> <=", "> -> >=")},
        **{(tables, "inside = (x > a[0]) & (x < a[-1])", m): inside
           for m in ("> -> >=", "< -> <=")},
        (tables, "safe = np.where(span > 0, span, 1.0)", "> -> >="): masked,
        (tables, "safe = np.where(span > 0, span, 1.0)", "1.0 -> 2.0"): masked,
        (tables, "w = np.where(hit, 0.0, np.where(inside & (span > 0), (x - a[low]) / safe, "
         "np.nan))", "> -> >="): inside,
        (tables, "for corner in range(2 ** len(axes)):", "** -> *", "#2"):
            "2 ** n == 2 * n for the one or two coordinates a table has; the array lookup "
            "cannot take a table of none (lookup_one can, and its mutant is killed)",
        **{(tables, line, "or -> and"): "the all-low corner always weighs > 0 (a weight is 1 on "
           "a hit and 1 - w > 0 between rows), so a finite value means it was measured and "
           "has a source" for line in (
               'return float(np.exp(val)), "interpolated: " + _file_of(first or last)',
               'src[ok] = ["interpolated: " + _file_of(a or b) for a, b in zip(first, last,')},
        **{(tables, line, "> -> >="): "a corner weighs 0 only on a hit, where low and high "
           "are the same cell as the corner weighing 1: adding 0 × its (finite) value changes "
           "nothing" for line in ("if weight > 0:",
                                  "val = np.where(weight > 0, val + weight * v, val)")},
        (tables, "i = np.clip(np.searchsorted(a, x), 0, a.size - 1)", "0 -> 1"):
            "i = 0 only when x <= a[0]: an exact hit (found through below = 0 as well) or "
            "outside the axis (NaN either way)",
        **{(loaders, line, "0 -> 1"): "the list holds a dict per operator (four GEMMs, five "
           "elementwise kernels per file), all with the same keys" for line in (
               "g = {k: np.concatenate([np.asarray(x[k]) for x in gemm]) for k in gemm[0]}",
               "e = {k: np.concatenate([np.asarray(x[k]) for x in elem]) for k in elem[0]}")},
    }


def _basics_equivalents() -> dict:
    """Equivalent mutants of the basics group (paths, models, units, streams; stop 46)."""
    paths, streams = "simulator/network/paths.py", "simulator/gpu/streams.py"
    models = "simulator/models.py"
    first_pop = ("Dijkstra's pruning and tie-break only: a node's distance is set at its first "
                 "pop, which is its least cost whatever else was pushed or in which order")
    return {
        **{(paths, line, m): first_pop for line, m in (
            ("seen[src] = 0.0", "delete `seen[src] = 0.0`"), ("seen[src] = 0.0", "0.0 -> 1.0"),
            ("count = 0", "0 -> 1"), ("fringe = [(0.0, 0, src)]", "0 -> 1"),
            ("if du < seen[u]:", "< -> <="), ("seen[u] = du", "delete `seen[u] = du`"),
            ("count += 1", "+= -> -="), ("count += 1", "1 -> 2"),
            ("count += 1", "delete `count += 1`"))},
        (paths, "continue", "delete `continue`", "#2"):
            "a node already done is pushed again and skipped when popped (done[v])",
        (paths, "if self.ecmp or src == dst:", "== -> !="):
            "without ECMP both ways find the same path (the cache's own test), and a node to "
            "itself is [node] either way",
        (paths, "if ecmp and len(paths) > 1:", "> -> >="):
            "one path: sorted, the hash picks index 0, the path itself",
        (streams, "start = self.free_at if self.free_at > now else now", "> -> >="):
            "free_at == now: either is the start",
        (streams, "start = free if free > at else at", "> -> >="): "free == at: either",
        (streams, "if at > free and at > now:  # the stream idles until then", "> -> >="):
            "at == free: a span of no length, which adds nothing to the busy time",
        (streams, "if at > self.free_at and at > now:  # idle until then: not busy time",
         "> -> >="):
            "at == free_at or at == now: a span of no length, and the copy starts at at either "
            "way",
        **{(models, line, "* -> /", node): "×1 and ÷1 alike" for line, node in (
            ("weight_bytes=total_params * 1.0, active_params=active_params,",
             "total_params * 1.0"),
            ("kv_bytes_per_token_fp8=2 * kv_heads * head_dim * 1.0,",
             "2 * kv_heads * head_dim * 1.0"))},
        (models, "head_dim = hidden // q_heads", "// -> /"):
            "the builder's only callers are the catalog's entries, whose hidden sizes are "
            "multiples of their head counts: the same value (as a float)",
        (streams, "if ahead <= 0.0:", "<= -> <"):
            "nothing ahead: every recorded span ends by now and adds 0",
        (streams, "if at > free and at > now:  # the stream idles until then", "and -> or"):
            "at >= now always (the caller's contract), so the mutant adds only spans that end "
            "before they start (at <= free), which add 0",
        **{(streams, line, "> -> >="): "a span starting exactly now either way"
           for line in ("self.gaps.append((free if free > now else now, at))",
                        "self.gaps.append(_ChainSpans(self.free_at if self.free_at > now else "
                        "now, times))",
                        "self.free_at = (self.free_at if self.free_at > now else now) + "
                        "duration")},
        (streams, "if at > self.free:", "> -> >="): "at == free: a span of no length",
        (streams, "idle = starts > before", "> -> >="):
            "a kernel starting as the last ends: a span of no length",
        (streams, "yield from zip(before[idle].tolist(), starts[idle].tolist(), strict=True)",
         "True -> False"): "both come from one mask over arrays of one length",
        **{(streams, line, m): "a span ending exactly now adds 0 whether it is kept or dropped"
           for line, m in (
               ("if gaps and _last_end(gaps[0]) <= now:", "<= -> <"),
               ("if _last_end(gaps[-1]) <= now:  # all of them (the usual case: a chain per "
                "step)", "<= -> <"),
               ("gaps[:] = [x for x in gaps if _last_end(x) > now]", "> -> >="))},
        (streams, "if factor > 1:", "> -> >="):
            "factor 1: a wait of (now − t0)·0 = 0 s, the same time",
    }


def _hardware_equivalents() -> dict:
    """Equivalent mutants of the hardware group (the catalogue, the kernel profiles, the
    spilled record columns; stop 49)."""
    profiles, spill = "simulator/gpu/profiles.py", "simulator/spill.py"
    same_flops = ("the H100 and the H200, the two measured GPUs, have the same peak FLOP/s, so "
                  "the compute term of the distance is the same for both and the comparison "
                  "is decided by the bandwidth term alone")
    return {
        (profiles, "return abs(np.log(spec.hbm_bandwidth / base.hbm_bandwidth)) + \\",
         "+ -> -"): same_flops,
        (profiles, "abs(np.log(spec.peak_flops / base.peak_flops))", "/ -> *"): same_flops,
        (profiles, 'name = "h100-vidur" if distance(h100) <= distance(h200) else "h200"',
         "<= -> <"):
            "a tie needs a bandwidth whose log ratios to the H100's and the H200's are equal to "
            "the bit; none of the 4,000 floats around √(3.35 · 4.8) TB/s gives one (checked)",
        (profiles, 'if both is None or not {"t0", "t1"} <= params.keys():', "<= -> <"):
            "the indexer's fitted parameters always hold s, ek, g and c besides t0 and t1, so "
            "{t0, t1} is a proper subset whenever it is a subset",
        (spill, "self._file.seek(0, 2)", "delete `self._file.seek(0, 2)`"):
            "only writes move the file's position, and they leave it at the end (np.memmap "
            "seeks to the end too, to size the file)",
        (spill, "self._file.flush()", "delete `self._file.flush()`"):
            "np.memmap seeks the file to its end to size it, which flushes the write buffer "
            "before the map is made",
        (spill, "if len(self._chunks) > 1:", "> -> >="):
            "concatenating a single chunk gives an equal array (a copy of it)",
    }


def _deployment_equivalents() -> dict:
    """Equivalent mutants of the deployment group (stop 49)."""
    inst = "simulator/engine/instances.py"
    memo = ("a cache of the paths between the instance's GPUs: without it the fabric and the "
            "cost model find the same paths on demand (paths_among follows gpu_path's rule)")
    return {
        (inst, "self.rng = None  # the MoE routing stream, spawned by the run",
         "delete `self.rng = None`"):
            "setup() sets the stream before anything reads it (the run calls it before the "
            "first event)",
        (inst, "run.fabric.paths.prime(paths)", "delete `run.fabric.paths.prime(paths)`"): memo,
        (inst, "run.cm._paths.prime(paths)", "delete `run.cm._paths.prime(paths)`"): memo,
        (inst, "m = np.array([r[12:20] for r in rows], float)", "20 -> 21"):
            "a moe record has 20 columns: r[12:21] is r[12:20]",
    }


def _workloads_equivalents() -> dict:
    """Equivalent mutants of the workloads group (the synthetic generators; stop 48)."""
    agentic = "workloads/agentic.py"
    n_draw = ("n_draw = int(expected + 10 * np.sqrt(expected + 1) * max(1.0, p.burst_cv) "
              "+ 16)")
    batch = ("the size of a batch of gap draws: the loop draws batch after batch until one "
             "passes the window's end, so any positive size gives the same arrivals (only the "
             "stream's later draws move)")
    more = ("the loop then draws one more batch before it stops, or stops one batch later, "
            "which adds no arrival inside the window (only the stream's later draws move)")
    none = "a negative id means none: the schema and the remapping read -2 as they read -1"
    share = "a uniform draw equal to the share: probability 0 (2⁻⁵³ at a share of 0)"
    strict = "columns of one frame (or keys made from them): equal lengths by construction"
    remap = "parent = np.where(parent >= 0, new_id[np.maximum(parent, 0)], -1)"
    nested, sessions, spans = ("workloads/nested.py", "workloads/sessions.py",
                               "workloads/spans.py")
    return {
        (sessions, "parent = -1", "1 -> 2"): none,
        **{(path, remap, "1 -> 2"): none for path in (agentic, sessions)},
        **{("workloads/mixed.py", line, "1 -> 2"): none for line in (
            '-1 if pd.isna(parent) else int(parent), int(a["input_tokens"].iloc[i]),',
            'parts.append((at, key, -1, inp, out, blocks, -1, np.zeros(0, np.int64), "private", '
            "-1))",
            'parts.append((float(at), ("c", i), -1, tokens, out, blocks, -1, np.zeros(0, '
            "np.int64),", '"chat", -1))',
            "parent_id=[new_index[r[2]] if r[2] >= 0 else -1 for r in rows],")},
        ("workloads/mixed.py", "duration_time=self.duration_time, task_rate=max(self.task_rate, "
         "1e-9), n_repos=1,", "1e-09 -> 2e-09"):
            "a positive stand-in for a rate of 0, where the sub-agent generator is not run",
        ("workloads/mixed.py", "repo_min_tokens=min(self.repo_tokens, 100_000), "
         "subagents=self.subagents,", "100000 -> 100001"):
            "a floor on repository sizes that only bounds a spread, and the fleet's repository "
            "has none",
        ("workloads/mixed.py", "if p.task_rate > 0:", "> -> >="):
            "at a rate of 0 the generator runs at its stand-in of 1e-9 tasks a second and draws "
            "none (from its own stream): the same trace",
        **{(path, line, "True -> False"): strict for path, line in [
            ("workloads/mixed.py", 'pr["output"], pr["blocks"], strict=True):'),
            ("workloads/selections.py", "for row, (r, s, ids) in enumerate(zip(rids, steps, "
             'sel["block_ids"], strict=True)):'),
            ("workloads/selections.py", 'df["layer"].to_numpy().tolist(), strict=True)'),
            ("workloads/selections.py", "strict=True)})"),
            ("workloads/blocks.py", "strict=True)],")]},
        (sessions, "len(self.files) - 1))", "- -> +"):
            "the cap never binds: cum ends at exactly 1.0 and a uniform draw is below 1, so the "
            "search gives at most the last file",
        **{("simulator/engine/trace.py", line, d): (
            "which child stream of the seed a generator draws from: one kind of workload runs "
            "in a run, so another key gives a trace of the same law")
           for line, d in [("df = (generate_agentic(np.random.default_rng([seed, 1]), p)",
                            "1 -> 2"),
                           ("else generate_sessions(np.random.default_rng([seed, 2]), p))",
                            "2 -> 3"),
                           ("return generate(np.random.default_rng([seed, 3]), p)", "3 -> 4"),
                           ("return generate_mixed_fleet(np.random.default_rng([seed, 4]), p)",
                            "4 -> 5")]},
        ("workloads/selections.py", "fwidth = max([len(q[4]) for q in queries] + [1])",
         "1 -> 2", "1"): "a wider focus array is more padding (-1), which the selector ignores",
        ("workloads/selections.py", "focus = np.full((len(chunk), fwidth), -1, dtype=np.int64)",
         "1 -> 2"): "padding of -2 instead of -1: negative either way, which the selector ignores",
        ("workloads/selections.py", "table = pa.Table.from_pandas(df[list(SELECTION_COLUMNS)], "
         "schema=schema, preserve_index=False)", "False -> True"):
            "an index written along comes back as the frame's index, and nothing that reads a "
            "selection trace reads its index (rows are named by position)",
        ("workloads/selections.py", "inside = (j < len(ctx)) & (ctx[np.minimum(j, len(ctx) - 1)] "
         "== ids)", "< -> <="):
            "j == len(ctx) means the id is past the context's last (largest) id, so the "
            "comparison with that last id is false either way",
        ("workloads/selections.py", "contexts[key] = ctx", "delete `contexts[key] = ctx`"):
            "a memo of one request step's context: without it the same context is computed "
            "again",
        ("workloads/stats.py", 'turns = int(df.groupby(["session_id", "turn_id"]).ngroups) if '
         "turn_known else 0", "0 -> 1"):
            "the turn count is read only where the turns are known",
        ("workloads/selections.py", "if n <= have:", "<= -> <"):
            "n == have: the prompt's first n blocks, or the prompt and no generated block: "
            "the same ids",
        **{("workloads/blocks.py", line, "1 -> 2"):
           "a trace of no request: the ratio is never applied"
           for line in ("ratio = ratios.pop() if ratios else 1",
                        "ratio = block_ratio(int(bt[0]), engine_block_tokens) if len(df) else 1")},
        ("workloads/focus.py", "total = -(-available_blocks // region_blocks)", "// -> /",
         "#2"):
            "drift_focus's region count as a float (62.5 for 62 whole regions and a part) "
            "bounds the integer regions and makes arange(total) exactly as its ceiling does",
        ("workloads/focus.py", "if total <= 0:", "<= -> <"):
            "total is a ceiling of a count, never below 0; at 0, choosing 0 of 0 regions gives "
            "the same empty set without a draw",
        **{(path, line, "< -> <="): share for path, line in [
            ("workloads/focus.py", "move = np.flatnonzero(rng.random(len(regions)) < drift)"),
            (sessions, "spawn = main and rng.random() < p.spawn_fraction"),
            (sessions, "if u < p.read_fraction:"),
            (sessions, "elif u < p.read_fraction + p.edit_fraction:")]},
        (spans, "base = blocks.offsets[srow[0::2]]", "0 -> 1"):
            "a span's end sits in its start's row: the rows of the ends are the rows of the "
            "starts",
        (sessions, "for b in range(batches + 1):", "1 -> 2"):
            "the loop returns at its last batch (b == batches): a longer range is never reached",
        (spans, "p = np.full(max(n, 1), np.uint64(base), dtype=np.uint64)", "1 -> 2"):
            "a power past the longest row's is never read",
        (spans, "p[0] = 1", "delete `p[0] = 1`"):
            "the powers then start at B and B⁻¹ instead of 1: every term is scaled by B⁻¹ and "
            "the prefix sum by B, which cancel modulo 2^64",
        **{(path, "while t < p.duration_time:", "< -> <="):
           "an arrival exactly at the window's end: a continuous draw lands there with "
           "probability 0" for path in (nested, sessions, "workloads/rag.py")},
        (nested, "rows.append(dict(at=t, query=query, parent=-1, blocks=prompt, answers=None,",
         "1 -> 2"): none,
        (nested, 'parent_id=np.asarray([new_id[rows[i]["parent"]] if rows[i]["parent"] >= 0 '
         "else -1", "1 -> 2"): none,
        (agentic, "expected = p.task_rate * p.duration_time", "* -> /"): batch,
        **{(agentic, n_draw, d, node): batch for d, node in [
            ("* -> /", "10 * np.sqrt(expected + 1)"),
            ("* -> /", "10 * np.sqrt(expected + 1) * max(1.0, p.burst_cv)"),
            ("10 -> 11", "10"), ("1 -> 2", "1"), ("max -> min", "max(1.0, p.burst_cv)"),
            ("1.0 -> 2.0", "1.0"), ("16 -> 17", "16")]},
        **{(agentic, "if t[-1] >= p.duration_time:", d): more
           for d in (">= -> >", "-x -> x", "1 -> 2")},
        (agentic, "after=-1, gap=0.0):", "1 -> 2"): none,
        (agentic, "root = emit(task_at, session, -1, plan_tokens, ids.take(-(-plan_tokens // "
         "bt)),", "1 -> 2", "1"): none,
        (agentic, 'follows = {"after_id": np.where(after >= 0, new_id[np.maximum(after, 0)], '
         "-1)[order],", "1 -> 2"): none,
        **{(agentic, line, d): (
            "the last turn's loop then goes on to draw a tool result and a think time that no "
            "request uses, and takes fresh block ids no request reads: the same trace up to "
            "the labels of later fresh ids and the stream's later draws")
           for line, d in [("if turn == turns - 1:", "- -> +"), ("break", "delete `break`")]},
    }


def _inputs_equivalents() -> dict:
    """Equivalent mutants of the inputs group (scenario files and traces; stop 47)."""
    validate = "simulator/scenario/validate.py"
    schema, loaders = "workloads/schema.py", "workloads/loaders.py"
    # the trace schema, since split out of schema.py (stop 47 scored the same lines there)
    columns, checks = "workloads/columns.py", "workloads/validation.py"
    block = ("a generator's table is built with the placement's block size only to be checked, "
             "and none of its checks reads the block size but its own `block_tokens > 0` "
             "(a bad placement value is refused where it is written)")
    falsy = "the caller tests the answer for truth: None is falsy, as False is"
    copy = "a copy or not of an array nobody writes to: the same values"
    null_stand_in = "null entries are masked out before the value standing in for them is read"
    return {
        **{(validate, 'bt = placement.get("block_tokens", 64) if isinstance(placement, Mapping) '
            "else 64", "64 -> 65"): block},
        **{(validate, "bt = bt if isinstance(bt, int) and not isinstance(bt, bool) and bt >= 1 "
            "else 64", m): block for m in ("not x -> x", ">= -> >", "1 -> 2", "64 -> 65")},
        (validate, "name = next((f for f in sorted(fields, key=len, reverse=True)",
         "True -> False"):
            "no field name of either generator (AgenticParams, MixedFleetParams) is a prefix of "
            "another: the first match is the only one in either order",
        (columns, "return cls(offsets, values.astype(np.int64, copy=False))", "False -> True"):
            copy,
        (checks, "out.append(arr.astype(np.int64, copy=False))", "False -> True"): copy,
        (schema, 'return pd.Series(pd.array([pd.NA] * n, dtype="Int64"))', "return X -> None"):
            "a column of None is all null, and validate casts it to Int64 as it does this one",
        **{(checks, "ok = np.isin(parent.to_numpy(dtype=np.int64, na_value=-1), rid)", m):
           null_stand_in for m in ("-x -> x", "1 -> 2")},
        (checks, 'after = df["after_id"].to_numpy(dtype=np.int64, na_value=-1)', "1 -> 2"):
            "a null after_id stands in as -2 instead of -1: negative either way, not followed",
        (checks, 'for r, (sp, nb) in enumerate(zip(df["spans"], need, strict=True)):',
         "True -> False"): "one of each per row: equal lengths by construction",
        (checks, "return False", "return X -> None"): falsy,
        (schema, "table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)",
         "False -> True"):
            "validate gives a RangeIndex, which pyarrow keeps as metadata (no column), and "
            "reading validates and resets the index again",
        **{(loaders, "return False", "return X -> None", f"#{k}"): falsy for k in range(1, 8)},
        (loaders, 'raw = pd.read_csv(path, compression="infer", dtype=str, '
         "keep_default_na=False)", "False -> True"):
            "a field read as NaN instead of its text fails the vectorized checks as that text "
            "does, and the file goes line by line either way",
        (loaders, "if not row[0].strip()[:1].isdigit():", "1 -> 2"):
            "an ISO 8601 date starts with a four-digit year: one digit or two decide alike "
            "(and a lone digit is refused by to_datetime itself)",
        (loaders, 'raise ValueError(f"TIMESTAMP {row[0]!r} is not a date-time")', "0 -> 1"):
            "unreachable: to_datetime raises, not returns NaT, for a text that starts with a "
            "digit and is no date (the branch is a guard)",
        (loaders, "for name, text in zip(_AZURE_FIELDS[1:], row[1:], strict=True):",
         "True -> False"): "the row has three fields (checked just before): two and two",
    }


def _records_equivalents() -> dict:
    """Equivalent mutants of the records group (tables, summary, link accounting; stop 47)."""
    records, columns = "simulator/engine/records.py", "simulator/engine/columns.py"
    links, bins = "simulator/network/linkstats.py", "simulator/network/binning.py"
    same_lengths = "columns of one table: equal lengths by construction"
    return {
        (records, "return float(v[min(i, len(v) - 1)])", "- -> +"):
            "q <= 1: q·cum[-1] <= cum[-1], so the search stops inside the array already",
        (records, "if len(requests) == 0:", "0 -> 1"):
            "one request: its finish is after its own arrival, the last entry, so the window "
            "never opens (NaN either way)",
        (records, 'fin = iterations["finished_at"].to_numpy(float) if len(iterations) else '
         "np.zeros(0)", "0 -> 1"): "without iterations fin is not read (their tokens are 0)",
        (columns, "return len(self.rows) + len(self.cols[0])", "0 -> 1"): same_lengths,
        (columns, "for field, col, codes in zip(self._record.names, self.cols, self.codes, "
         "strict=True):", "True -> False"): same_lengths,
        (columns, "for name, col, codes in zip(self.names, self.cols, self.codes, strict=True):",
         "True -> False"): same_lengths,
        (columns, "return pd.DataFrame(data, copy=False)", "False -> True"):
            "a copy or not of the columns' arrays: the same table",
        ("simulator/engine/results.py", "completed.tolist(), req.reason, strict=True))",
         "True -> False"): same_lengths,
        ("simulator/engine/results.py", '"class_timeline": (fabric.class_timeline(max(now / '
         '100.0, 1e-6)) if now > 0', "> -> >="):
            "a run of no time: the class timeline is an empty frame of the same columns and "
            "dtypes either way (linkstats.empty_timeline)",
        (records, "return df.astype(dict(zip(REQUEST_COLUMNS, REQUEST_DTYPES, strict=True)))",
         "True -> False"): "the requests table's columns and their dtypes: equal lengths by "
                           "construction",
        (links, "self.acc_at = [0.0] * n  # when each link's bytes/busy were last brought up "
         "to date [s]", "0.0 -> 1.0"):
            "read only once the link's load changed, which sets it; until then its load is 0 "
            "and adds nothing over any span",
        (links, "if dt > 0.0:", "> -> >="): "dt = 0: adds 0 bytes and 0 s",
        (links, "lone = len(self.lo_route) + sum(len(b[0]) for b in self._held)", "0 -> 1"):
            same_lengths + " (a held batch's five columns)",
        (links, "for name, values in zip(_LONE, batch, strict=True):", "True -> False"):
            same_lengths + " (a held batch has one column per name of _LONE)",
        (links, "if names[0] in _LONE:", "0 -> 1"):
            "the names of one call are all lone-flow columns or all shared-flow ones: the "
            "second answers as the first",
        (links, "n = len(cols[0])", "0 -> 1"): same_lengths + " (one segment's columns)",
        (links, "for name, values in zip(_COLUMNS, self._take(tuple(_COLUMNS)), strict=True):",
         "True -> False"): same_lengths + " (_take gives one array per name)",
        **{(links, "yield tuple(np.concatenate(x) for x in zip(*parts, strict=True))",
            "True -> False", k): same_lengths + " (each part has one column per name)"
           for k in ("#1", "#2")},
        (links, "zip(_LONE, (routes, starts, ends, nbytes, tags), strict=True)))",
         "True -> False"): same_lengths + " (five names, five columns)",
        (bins, "if nkeys * nbins <= key.size:  # rows for every key cost no more than the "
         "records do", "<= -> <"):
            "which rows spread hands back (every key's or those that occur) is a cost choice: "
            "the caller adds them at their keys, the same sums either way (test_spread_is_a_loop"
            "_over_the_records_bit_for_bit holds both)",
        (links, "strict=True):", "True -> False"):
            "the links and their starts come from one np.unique: equal lengths",
    }


def _loop_equivalents() -> dict:
    """Equivalent mutants of the loop group (``exact.py``, ``gpu_loop.py``, ``arrivals.py``,
    ``requests.py``; stop 42), and of the instances group's loop (stop 43)."""
    exact, loop = "simulator/engine/exact.py", "simulator/engine/gpu_loop.py"
    instances = "simulator/engine/instance_loop.py"  # its loop is gpu_loop's, per instance
    fast_instances = "simulator/engine/fast_instances.py"
    columns = "the record columns' names and dtypes are two tuples of one length (records.py)"
    distinct = ("distinct = n_blocks if b == 1 else len(set(members.tolist())) if n_blocks <= 256 "
                "\\")
    counted = "a set and np.unique count the same distinct blocks: the bound picks the faster"
    woken = ("a waker succeeds wake[g] only while it is untriggered: a triggered event left "
             "there is never touched")
    return {
        (exact, "strict=True)]", "True -> False"):
            "the GPUs' names and specs come from one list: their lengths agree",
        (exact, "strict=True)))", "True -> False", "#1"): columns,
        (exact, "strict=True)))", "True -> False", "#2"): columns,
        (exact, distinct, "<= -> <"): counted,
        (exact, distinct, "256 -> 257"): counted,
        (exact, "host_cap = int(pl.host_capacity // self.block_bytes) if pl.host_tier and "
                "has_host else 0", "// -> /"):
            "both positive: int() truncates the quotient as // floors it (they differ only if "
            "a capacity a few ulps under a whole number of blocks rounds up; none is)",
        (exact, "self.deploy.setup(root.spawn(1)[0])  # the MoE routing stream", "1 -> 2"):
            "a generator numbers its children in order: spawn(2)[0] is spawn(1)[0], and the "
            "run spawns nothing from root after it",
        (exact, "RoundReplay(self, pending, g, k if k < G else -1, owner, code, option, b, "
                "n_blocks,", "1 -> 2"):
            "a host round's holder is any negative number: the replay tests k >= 0",
        (loop, "wake[g] = None", "delete `wake[g] = None`", "#1"): woken,
        (loop, "wake[g] = None", "delete `wake[g] = None`", "#2"): woken,
        (loop, "continue", "delete `continue`", "#1"):
            "a GPU is woken by an arrival in its queue: the step that follows is the one the "
            "loop's next turn would run",
        **{(loop, line, desc, k): "unreachable (stop 66, docs/mutation.md): a plan that ran "
           "nothing rejected or preempted a request — without a [deployment] every admission "
           "computes at least its last block, a running request decodes, computes a chunk or is "
           "preempted, and with none running the queue's first is admitted or rejected"
           for line, desc, k in (("wake[g] = env.event()", "delete `wake[g] = env.event()`",
                                  "#2"), ("continue", "delete `continue`", "#3"))},
        (loop, "if plan.chunks or plan.prompt_done:", "or -> and"): "without chunked prefill "
        "every chunk is a whole prompt (chunks imply prompt_done), and every admission computes "
        "at least its last block (prompt_done implies chunks): both mean plan.chunks",
        (loop, "yield env.timeout(at - env.now)", "- -> +"): "unreachable: a step without "
        "decodes has chunks, and both prefill paths end with at = env.now",
        **{(path, line, f"delete `{line}`"): "packing or spilling records changes where they "
           "are kept, not what they hold (test_records_moved_to_temporary_files_change_no_result)"
           for path in (loop, instances)
           for line in ("run.rounds.maybe_pack()", "run.iters.maybe_pack()",
                        "run.fabric.spill_records()")},
        **{(path, "run.dir.check()", "delete `run.dir.check()`"):
           "an invariant check (check_invariants): a run that holds them gives the same answers "
           "without it" for path in (loop, instances)},
        (instances, "req.wake[g] = None", "delete `req.wake[g] = None`"): woken,
        (fast_instances, "for s in range(run.S if live else 0):", "0 -> 1"):
            "with no micro-batch live a slot's turn composes, waits for and posts nothing: one "
            "such turn or none gives the same step",
        (fast_instances, "return at", "return X -> None"):
            "_attend_at is asked only for a live micro-batch, which has a rank with tokens: "
            "homes is never empty",
        (fast_instances, "for g, x in zip(ranks, plan.expert_time.tolist(), strict=True):",
         "True -> False"): "the MoE plan has one expert time per rank: the lengths agree",
        **{(fast_instances, f"if e > {v}:", "> -> >="): f"e = {v}: it sets {v} to the value it "
           "has (a running maximum)" for v in ("finish", "t2", "t4")},
        (instances, "if start + period * layers > env.now:", "> -> >="): "when fold returns, "
        "now is the later lane's end, at most start + period, and a folded slot has layers >= 2 "
        "and period > 0: the condition holds either way",
        (fast_instances, 'p["q_local"][s] if p["q_local"] is not None else 0, pre, at))',
         "0 -> 1"): "_prepare sets q_local and n_local together: where q_local is None n_local "
        "is 0, and SlotComposer.slots reads the local queries only beside local blocks",
        (fast_instances, "busy = np.flatnonzero(loads > 0)", "0 -> 1"): "a link's load is whole "
        "tokens times one token's bytes (kilobytes): never between 0 and 1",
        (instances, "continue", "delete `continue`", "#1"):
            "an instance sleeps until a request reaches one of its ranks: the step that follows "
            "is the one the loop's next turn would run",
        (instances, "int(plan.rows.max()) if R else 0, plan.dispatch_bytes, plan.combine_bytes, "
                    "t0,", "0 -> 1"):
            "an instance has at least one rank (R >= 1): the else is never taken",
        **{(instances, line, mutation): "a list of one value per rank, every element of which "
           "the loop below sets before it is read" for line, mutation in (
               ("work = [0.0] * R", "0.0 -> 1.0"), ("logits = [0] * R", "0 -> 1"))},
        ("simulator/engine/arrivals.py",
         'after_id = trace["after_id"].to_numpy(dtype=np.int64, na_value=-1)', "1 -> 2"):
            "a missing after_id is any negative id: every reader tests >= 0 and no row has it",
        ("simulator/engine/arrivals.py", "if dt > 0:", "> -> >="):
            "dt = 0: a timeout of 0 lets the request in at the same time, in the same order",
        ("simulator/engine/requests.py",
         "elif not state.reason[r] and (np.isnan(state.finish_at[r])", "or -> and"):
            "an entered request without a reason has a finish time exactly when it made all "
            "its tokens: either test alone decides",
    }


def _steps_equivalents() -> dict:
    """Equivalent mutants of the steps group (``locate.py``, ``locate_kernels.py``,
    ``stepcosts.py``, ``copystore.py``) and of the selector's ``focus_entries`` (stop 38)."""
    path = "simulator/engine/locate.py"
    same_shape = "a sample's valid mask (c[4]) has the shape of its blocks (c[3])"
    stability = "if self.observed is not None and T > 1:  # stability: slot 0, step to next step"
    memo = "a memo not kept (or kept longer) changes the time a run takes, not its answers"
    sort_choice = "if n_keys <= 4 * n + 4096:  # a counting sort (stable: ties keep the flat order)"
    either_sort = ("the counting sort and the stable comparison sort give the same order: the "
                   "bound only picks the faster")
    first_read = ("the previous key and query are read only from the second element on, after "
                  "the first set them")
    memo_bound = "if len(self._indexer_cache) > 100_000:"
    layout = ("where the store turns paged (or re-lays a size it has): the layout, not a value; "
              "every read equals the dense table's (test_kvcache_copystore.py)")
    size = "if self.n_gpus * need * PAGE * (8 * self.words + 8) <= DENSE_BYTES:"
    n_pool = ("the dense layout never reads n_pool (alloc returns before it), and turning paged "
              "sets it anew")
    return {
        **_of_module("workloads/sparse.py", (
            ("return np.empty((qn, 0), dtype=np.int64), np.zeros(qn, dtype=np.int64)", "0 -> 1",
             "with every count 0 the focus array is never read: its width does not matter"),
            ("if nf.sum() < foc.size:  # padding or ignored entries: valid ones first (a stable "
             "sort)", "< -> <=",
             "a stable sort of rows whose entries are all valid leaves them as they are"),
        )),
        **_of_module(path, (
            ("width = max(c[3].shape[2] for c in cached)", "3 -> 4", same_shape),
            ("w = c[3].shape[2]", "3 -> 4", same_shape),
            ("for k, (r, c) in enumerate(zip(reqs, cached, strict=True)):", "True -> False",
             "cached holds one entry per request of reqs"),
            ("return False", "return X -> None",
             "the caller only tests the answer's truth: None is false as False is"),
            ("fw = max([len(req.focus[r]) for r in reqs] + [1])", "1 -> 2",
             "a wider focus row is more padding, which the selector ignores (stop 38)"),
            ("shift = (max(int(a.max()), int(b.max())) + 1) * np.arange(len(a), dtype=np.int64)"
             "[:, None]", "1 -> 2",
             "any shift past the largest value keeps the rows' ranges apart (_in_row, stop 76)"),
            ("focus = np.full((len(reqs), fw), -1, np.int64)", "1 -> 2",
             "-2 is padding too: the selector ignores every negative entry"),
            ("pos = sel.indices[i, :, : sel.counts[i]].reshape(T, S, -1)", "1 -> 2",
             "numpy's reshape infers the size given as any negative number, -2 as -1"),
            ("focus = np.array([f if len(f) else [-1]], np.int64)  # no focus set: -1, ignored",
             "1 -> 2", "-2 is padding too: the selector ignores every negative entry"),
            (stability, "> -> >=", "T is SELECTION_STEPS = 16"),
            (stability, "1 -> 2", "T is SELECTION_STEPS = 16"),
            ("for head, a, b, n_q in zip(heads.tolist(), starts, ends, nq.tolist(), strict=True):",
             "True -> False", "heads, starts, ends and nq have one entry per group"),
        )),
        **_of_module("simulator/engine/locate_kernels.py", (
            ("k = n_gpus + machine[h if h > 0 else 0]", "> -> >=",
             "a holder of 0 reads machine[0] on either side of the choice"),
            *((sort_choice, m, either_sort) for m in ("<= -> <", "* -> /", "+ -> -", "4 -> 5",
                                                      "4096 -> 4097")),
            ("first = np.zeros(n_keys + 1, np.int64)  # then: where each key's elements start",
             "1 -> 2", "the counting sort never reads past entry n_keys: one more is unused"),
            ("batch = per_query > 0", "> -> >=",
             "with one query every element's query is 0 (pos // 0 is 0 as Python, with a "
             "warning), so no group counts a second"),
            ("prev_key = -1", "-x -> x", first_read), ("prev_key = -1", "1 -> 2", first_read),
            ("prev_q = -1", "-x -> x", first_read), ("prev_q = -1", "1 -> 2", first_read),
            ("q = pos[i] // per_query if batch else 0", "0 -> 1",
             "without a batch the query is never compared (only `batch and q != prev_q`)"),
        )),
        **_of_module("simulator/engine/stepcosts.py", (
            (memo_bound, "> -> >=", memo),
            (memo_bound, "100000 -> 100001", memo),
            ("self._indexer_cache.clear()", "delete `self._indexer_cache.clear()`", memo),
            ("self.attn_cache[key] = t", "delete `self.attn_cache[key] = t`", memo),
            ("self.cf_cache[key] = cf", "delete `self.cf_cache[key] = cf`", memo),
        )),
        **_of_module("simulator/kvcache/copystore.py", (
            ("if need <= have:", "<= -> <", layout),
            (size, "<= -> <", layout),
            (size, "8 -> 9", layout),
            ("self.n_pool = 1 + G * pages", "delete `self.n_pool = 1 + G * pages`", n_pool),
            ("self.n_pool = 1 + G * pages", "+ -> -", n_pool),
            ("self.n_pool = 1 + G * pages", "1 -> 2", n_pool),
            ("self.n_pool = 1 + G * pages", "* -> /", n_pool),
            ("r = first[first > 0][:, None] + np.arange(PAGE)", "> -> >=",
             "an absent page's first row is 0, the zero page's, whose bits are never set: "
             "scanning it adds no block to the count"),
            ("r = first[first > 0][:, None] + np.arange(PAGE)", "0 -> 1",
             "a page's first row is a multiple of PAGE (0 for the zero page), never 1"),
            ("return self.bits[:, w][r] if type(w) is int or np.ndim(w) == 0 else self.bits[r, w]",
             "or -> and", "a plain int has no dimension either, and a numpy scalar word read "
             "either way gives the same values: the two branches differ only in speed"),
        )),
    }


EQUIVALENT: dict[tuple[str, ...], str] = {
    ("simulator/network/busy.py", "r = rid.astype(np.int64, copy=False)", "False -> True"):
        "a copy of the route ids or not: the same values, read by the loop or concatenated",
    ("simulator/disaggregation/homogeneous.py",
     "fewest = fewest - 1 if same and fewest is not None else \\", "1 -> 2"):
        "the fewest tokens left counted down too fast is never above the true count: the "
        "shortcut is taken less often, and where it is not the general check finds what is done",
    ("simulator/disaggregation/homogeneous.py",
     "done = [] if fewest is not None and fewest > 0 else \\", "0 -> 1"):
        "with one token left no request is done either: the general check runs and finds none",
    ("simulator/network/binning.py", "return [(p, out[j, :n]) for j, (p, (_, n)) in "
     "enumerate(zip(present, rows, strict=True))]", "True -> False"):
        "present and rows get one entry per keying each: zip never sees unequal lengths",
    ("simulator/network/linkstats.py", "return len(self.routes), len(self.lo_route) + "
     "sum(len(b[0]) for b in self._held) + spilled", "0 -> 1"):
        "a batch's columns all have its length: its route ids' or its starts'",
    ("simulator/network/lone_tables.py",
     "for total, part in zip(totals, piece, strict=True):", "True -> False"):
        "both are three arrays made side by side: zip never sees unequal lengths",
    ("simulator/network/kernels.py", "over = (e if e < greatest else greatest) - s",
     "< -> <="): "e == greatest: either branch gives the same value",
    ("simulator/network/kernels.py", "if over > 0.0:", "> -> >="):
        "over == 0.0 is +0.0 (x - x rounds to +0.0), and adding it to a sum >= +0.0 leaves the "
        "sum as it was",
    ("simulator/network/kernels.py", "if e > greatest:", "> -> >="):
        "e == greatest: the link's greatest end is set to the value it has",
    ("simulator/network/kernels.py", "while j > 0 and edges_at[j - 1] > x:", "0 -> 1"):
        "a start's walk stopping at 1 edge instead of 0 (a time before the first edge): its bin "
        "max(j − 1, 0) is 0 either way",
    ("simulator/network/kernels.py", "while j > 0 and edges_at[j - 1] >= x:", "0 -> 1"):
        "an end's walk stopping at 1 edge instead of 0 (at or before the first edge): its bin "
        "max(j − 1, 0) is 0 either way",
    ("simulator/network/kernels.py", "while j < n and edges_at[j] < x:", "< -> <=",
     "edges_at[j] < x"):
        "the forward walk may step past edges equal to x; the backward walk right after it "
        "(edges_at[j − 1] >= x) steps back over them: the same count",
    ("simulator/network/kernels.py", "js = 0", "0 -> 1"):
        "where the first walk starts: it walks forward and back to the same count from any start",
    ("simulator/network/kernels.py", "je = 0", "0 -> 1"):
        "where the first walk starts: it walks forward and back to the same count from any start",
    ("simulator/cli/jobs.py", "min(jobs, len(policies)))", "min -> max"):
        "a process pool started with spawn starts a worker only for a task that finds none "
        "idle, so a larger cap than the policies starts no more processes (one per policy)",
    ("simulator/plots.py", "continue", "delete `continue`", "#1"):
        "a policy without samples is already in the legend; without the `continue` its empty "
        "series is pooled (no values), registered for `(= other)` (only another empty one "
        "could equal it, and that one takes this branch too) and passed to _cdf, which draws "
        "nothing for no values",
    ("simulator/plots.py", 'tokens = max(float(res.summary.get("decode_tokens", 0.0)), 1.0)',
     "0.0 -> 1.0"): "a summary without decode_tokens counts one token either way (the floor)",
    ("simulator/plots.py", "data = np.array(rows) * 1e6 if rows else np.zeros((0, len(PHASES)))",
     "0 -> 1"): "with no rows there are no labels: x and the bottoms are empty, and a bar row "
                "broadcast against them draws no bar",
    ("simulator/fileio.py", "mask = os.umask(0)", "0 -> 1"):
        "_umask sets any temporary mask to read the current one, then restores it",
    ("simulator/fileio.py", "if len(df) <= rows:", "<= -> <"):
        "a frame of exactly `rows` rows is then written by the row-group path as one group",
    ("simulator/fileio.py", "preserve_index=False,", "False -> True"):
        "later row groups are converted with the first group's schema, which has no index",
    ("simulator/costmodel/closed_form.py", "self._specs[node] = spec",
     "delete `self._specs[node] = spec`"):
        "a memo: the spec is looked up again each time, with the same answer",
    ("simulator/costmodel/closed_form.py", "if src == dst or nbytes <= 0:", "<= -> <"):
        "no bytes: 0 / rate is 0.0 as well",
    ("simulator/costmodel/closed_form.py", "if blocks <= 0 or batch <= 0:", "<= -> <",
     "batch <= 0"):
        "install_time with no queries: a splice of 0 chunks and a gather of 0 bytes take 0 s too",
    ("simulator/engine/gpu_blocks.py",
     "own = -(-(int(a.inp[r]) + int(a.out[r])) // a.bt) - n_reused", "// -> /"):
        "ceil(x) - n > cap exactly when x - n > cap, for whole numbers n and cap",
    ("simulator/engine/gpu_blocks.py", "a.held[r] = 0", "delete `a.held[r] = 0`", "#1"):
        "(on-demand admission) held is zero already: it starts so and release zeroes it",
    ("simulator/engine/gpu_blocks.py", "a.held[r] = 0", "delete `a.held[r] = 0`", "#2"):
        "(release) held is set again at the next admission (need, or 0 on demand) before "
        "anything reads it",
    ("simulator/engine/gpu_blocks.py", "a.held[r] = 0", "0 -> 1", "#2"):
        "a released request's held count is set again at its next admission before anything "
        "reads it",
    ("simulator/engine/gpu_blocks.py", "if delta > 0:", "> -> >="):
        "a zero delta adds nothing, and passes the capacity check (reserved <= cap always)",
    ("simulator/engine/gpu_blocks.py", "return False", "return X -> None"):
        "the scheduler reads grow()'s answer as a truth value (`not kv.grow(...)`)",
    ("simulator/engine/admission.py",
     'self.repo = t["repo_id"].to_numpy(dtype=np.int64, na_value=-1)', "1 -> 2"):
        "no repository is any negative id (every reader tests repo >= 0)",
    ("simulator/engine/admission.py", "self.home = np.full(n, -1, np.int64)", "1 -> 2"):
        "not yet arrived is any negative home (the records test h >= 0)",
    ("simulator/engine/prefix_cache.py", "self.computed_after = np.zeros(0, np.uint64)",
     "0 -> 1"):
        "grown to cover every directory block (zeros) before it is read",
    ("simulator/engine/admission.py", "self.counted[r] = self.counted_tokens[r] = 0",
     "delete `self.counted[r] = self.counted_tokens[r] = 0`"):
        "(keep_computed, on a release) both are read again only after the request's next "
        "admission, which sets both to 0 first (GPUBlocks.admit, on demand; a reserving GPU "
        "never preempts)",
    ("simulator/engine/admission.py", "self.counted[r] = self.counted_tokens[r] = 0", "0 -> 1"):
        "(keep_computed, on a release) both are read again only after the request's next "
        "admission, which sets both to 0 first",
    ("simulator/engine/prefix_cache.py", "if len(self.computed_after) < self.dir.n:",
     "< -> <="):
        "growing an array that already covers every block changes none of its entries",
    ("simulator/engine/prefix_cache.py",
     "grown = np.zeros(max(self.dir.n, 2 * len(self.computed_after)), np.uint64)", "2 -> 3"):
        "a growth factor: the array covers every block either way, the new entries zero",
    ("simulator/sweep/spec.py", "ss = np.random.SeedSequence([sweep_seed, int(pid, 16)])",
     "16 -> 17"):
        "ids are 16 hex digits: read in base 17 they are still distinct, so seeds are still "
        "a function of (sweep seed, id) that differs between ids; no seed value is promised",
    ("simulator/sweep/spec.py", "return int(ss.generate_state(1, dtype=np.uint32)[0])",
     "1 -> 2"):
        "generate_state(2)[0] is generate_state(1)[0] (the same stream, one word more)",
    ("simulator/engine/admission.py",
     "need = -(-(int(self.inp[r]) + int(self.gen[r])) // self.bt)", "// -> /"):
        "ceil(x) > n exactly when x > n, and arange(n, x) is arange(n, ceil(x)) for every x",
    ("simulator/engine/scheduler.py", "i += 1", "1 -> 2", "#1"):
        "a request with prompt left is the newest running one (its chunk took the step's "
        "remaining budget, so nothing was admitted after it): one index more leaves the loop "
        "all the same",
    ("simulator/engine/scheduler.py", "scheduled.add(r)", "delete `scheduled.add(r)`", "#1"):
        "(the decode's) a victim is the newest unscheduled request, and decodes run oldest "
        "first: a request decoded this step is never newer than the one that fails to grow",
    ("simulator/engine/scheduler.py", "continue", "delete `continue`", "#2"):
        "(the decode loop's while-else) the loop body ends right after it",
    ("simulator/engine/scheduler.py",
     "if left is None or r in scheduled or r not in self.running or budget <= 0:", "or -> and"):
        "(`left is None and r in scheduled`) every running request without prompt left was "
        "decoded (scheduled) or preempted (not running) in part 1",
    ("simulator/engine/scheduler.py",
     "if left is None or r in scheduled or r not in self.running or budget <= 0:", "<= -> <"):
        "with no budget a chunked prefill takes min(left, 0) = 0 tokens and is skipped; "
        "without chunking no request has prompt left between steps",
    ("simulator/engine/scheduler.py", "if take <= 0:", "<= -> <", "#1"):
        "(part 2) a chunk of 0 tokens needs budget > 0 and no chunking, and without chunking "
        "no request has prompt left between steps",
    ("simulator/engine/scheduler.py", "continue", "delete `continue`", "#4"):
        "(part 2, `take <= 0`) as above: never reached",
    ("simulator/engine/scheduler.py", "scheduled.add(r)", "delete `scheduled.add(r)`", "#2"):
        "(part 2) only the newest running request has prompt left, so no later part-2 victim "
        "choice or `r in scheduled` test meets it",
    ("simulator/engine/scheduler.py", "scheduled.update(dec[:k])",
     "delete `scheduled.update(dec[:k])`"):
        "(stop 67) a victim is the newest running request not yet scheduled: in part 1 dec[k] "
        "and every later decode are unscheduled and newer than dec[:k], and in part 2 the only "
        "request with prompt left is the newest, never in dec; part 3 does not read scheduled",
    ("simulator/engine/scheduler.py", "scheduled.add(r)", "delete `scheduled.add(r)`", "#3"):
        "(stop 67; part 3, an admission) scheduled is read only in parts 1 and 2",
    ("simulator/engine/scheduler.py", "if take > 0:", "> -> >="):
        "(stop 67; part 3) reached only with need > 0, where take == 0 has already left the "
        "loop and _take never returns less than 0: take > 0 and take >= 0 agree",
    ("simulator/sweep/local_pool.py",
     "proc = ctx.Process(target=_serve, args=(child, run, chatty), daemon=True)",
     "True -> False"):
        "the pool's finally clause ends every worker it started, daemon or not; a worker left "
        "by a client that died reads the end of its pipe and returns",
    ("simulator/sweep/local_pool.py", "child.close()", "delete `child.close()`"):
        "the parent's copy of the worker's end is closed when _start returns anyway (its last "
        "reference dropped), so a dead worker's pipe still reads as ended",
    ("simulator/sweep/local_pool.py", "conn.close()", "delete `conn.close()`", "#1"):
        "a dead worker's pipe, dropped from the pool's tables on the next line: closed when its "
        "last reference goes",
    ("simulator/sweep/local_pool.py", "conn.close()", "delete `conn.close()`", "#2"):
        "the pipes at the end: the worker is terminated next, and the pipe closed when its last "
        "reference goes",
    ("simulator/sweep/executor.py",
     "cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,",
     "1 -> 2"):
        "threads per Dask worker: each point is a pure function, computed the same",
    ("simulator/sweep/executor.py",
     "cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,",
     "True -> False"):
        "Dask workers as threads, not processes: each point is a pure function, computed "
        "the same",
    ("simulator/sweep/executor.py", "return Client(scheduler, timeout=10)", "10 -> 11"):
        "a connection timeout to a remote scheduler (no test starts one)",
    ("simulator/sweep/executor.py", "client.cancel(list(futures))",
     "delete `client.cancel(list(futures))`"):
        "cleanup of a Dask client that is closed next: the results are gathered already",
    ("simulator/sweep/executor.py", "client.close()", "delete `client.close()`", "#1"):
        "cleanup: the results are gathered already",
    ("simulator/sweep/executor.py", "client.close()", "delete `client.close()`", "#2"):
        "a remote scheduler's client closed when the output folder cannot be written: no test "
        "starts a scheduler",
    ("simulator/sweep/executor.py", "if client is not None:", "is not -> is"):
        "there is a client here only when --scheduler named one (a remote scheduler, which no "
        "test starts); none is closed otherwise",
    ("simulator/sweep/executor.py", "if cluster is not None:", "is not -> is"):
        "cleanup of the local cluster: the results are gathered already",
    ("simulator/sweep/executor.py", "cluster.close()", "delete `cluster.close()`"):
        "cleanup of the local cluster: the results are gathered already",
    ("simulator/sweep/executor.py",
     'write_text(json.dumps(failures, indent=2, default=str), out / "failures.json")', "2 -> 3"):
        "the indentation of failures.json: the same JSON for any reader",
    ("simulator/sweep/executor.py", "sweep.skip_bad, pure=False,", "False -> True"):
        "every future has its own key (point id and key): no two are merged either way",
    ("simulator/engine/prefix_cache.py", "if h is None or len(h) != len(idx):", "!= -> =="):
        "a kept hash (admitted but not started, or preempted mid-prompt) always has the "
        "context's length, and recomputing it gives the same values",
    ("simulator/engine/prefix_cache.py",
     "if len(idx) > len(h):  # a recompute after preemption: the generated blocks follow",
     "> -> >="):
        "with no generated blocks the tail is empty and the hashes unchanged",
    ("simulator/engine/prefix_cache.py",
     "tail = extend_prefix_hash(int(h[-1]) if len(h) else 0,", "0 -> 1"):
        "a prompt has at least one block (the trace schema refuses empty prompts)",
    ("simulator/engine/prefix_cache.py", "self.last_hash[r] = h[-1] if len(h) else 0", "0 -> 1"):
        "a prompt has at least one block (the trace schema refuses empty prompts)",
    ("simulator/kvcache/eviction.py", "if count <= 0:", "<= -> <"):
        "a count of 0 takes the first 0 of the order: nothing either way",
    ("simulator/kvcache/eviction.py", "if count < len(blocks):", "< -> <="):
        "count = len(blocks): the cut at the largest time keeps every block",
    ("simulator/kvcache/eviction.py", "return extra", "return X -> None"):
        "make_room's answer is read by no caller (they make room for 0 extra blocks)",
    ("simulator/kvcache/eviction.py",
     "over = int(d.owned[gpu] + d.copies[gpu] + extra - d.capacity[gpu])", "+ -> -",
     "d.owned[gpu] + d.copies[gpu] + extra"):
        "extra is 0 in every call",
    ("simulator/kvcache/eviction.py",
     "over = int(d.owned[gpu] + d.copies[gpu] + extra - d.capacity[gpu])", "+ -> -", "#2"):
        "(the second `over`) it only shapes make_room's answer, which no caller reads",
    ("simulator/kvcache/eviction.py",
     "over = int(d.owned[gpu] + d.copies[gpu] + extra - d.capacity[gpu])", "- -> +", "#2"):
        "(the second `over`) it only shapes make_room's answer, which no caller reads",
    ("simulator/kvcache/eviction.py", "return extra - max(over, 0)", "return X -> None"):
        "make_room's answer is read by no caller",
    ("simulator/kvcache/eviction.py", "return extra - max(over, 0)", "- -> +"):
        "make_room's answer is read by no caller",
    ("simulator/kvcache/eviction.py", "return extra - max(over, 0)", "max -> min"):
        "make_room's answer is read by no caller",
    ("simulator/kvcache/eviction.py", "return extra - max(over, 0)", "0 -> 1"):
        "make_room's answer is read by no caller",
    ("simulator/kvcache/eviction.py", "if target > 0:  # only pinned blocks are left",
     "> -> >="):
        "demoting 0 blocks demotes nothing",
    ("simulator/kvcache/eviction.py", "target -= self.demote(gpu, target)", "-= -> +="):
        "target is not read after the demotion",
    ("simulator/kvcache/eviction.py",
     "order = np.lexsort((mine, d.used_at[mine], d.pins[mine] > 0))", "> -> >="):
        "demote's one caller, make_room, calls it only after evict_lru took every unpinned "
        "owned block it could: every block demote sees is pinned, so `pins > 0` and `pins >= 0` "
        "are alike True",
    ("simulator/kvcache/eviction.py", "return 0", "return X -> None"):
        "(demote with no HBM blocks) unreachable: make_room runs on a GPU that holds the block "
        "it just placed",
    ("simulator/kvcache/eviction.py", "return 0", "0 -> 1"):
        "(demote with no HBM blocks) unreachable, as above",
    ("simulator/kvcache/directory.py", "if kept >= 0:", ">= -> >"):
        "(add_copies_kept) a pass that found no block to copy wrote nothing: the array code "
        "then finds none either and returns (0, 0) unchanged",
    ("simulator/kvcache/directory.py", "if kept >= 0:", "0 -> 1"):
        "(add_copies_kept) as `>= -> >`: only a pass of no blocks goes to the array code",
    ("simulator/kvcache/copy_kernels.py",
     "if m and (m > free or n_listed + m > len(listed)):  # eviction, or the list to grow",
     "> -> >=", "m > free"):
        "(keep_copies) new copies that exactly fill the free blocks go to the array code, "
        "whose make_room_for_copies then makes none and returns them all: the same state",
    **{("simulator/engine/sharing_kernels.py", line, "< -> <=", nth):
       "(max_min_kernel, a running minimum) a value equal to the least so far replaces it with "
       "itself: the same minimum"
       for line, nth in (("if v < inc:", "#1"), ("if v < inc:", "#2"), ("if v < step:", "#1"))},
    ("simulator/engine/sharing_kernels.py", "if cnt[j] > 0:", "> -> >=", "#2"):
        "(max_min_kernel) a link without an unfrozen flow has its residual lowered by "
        "inc x 0: the same residual, and it is read only while its count is positive",
    ("simulator/engine/sharing_kernels.py",
     "if cnt[j] > 0 and res[j] <= 1e-12 * rates_line[j]:", "> -> >="):
        "(max_min_kernel) a saturated link without an unfrozen flow freezes no flow: every "
        "free flow on it would count there",
    ("simulator/engine/sharing_kernels.py", "continue", "delete `continue`"):
        "(max_min_kernel, no flow active yet) without it the filling runs over no flow, the "
        "step is infinite, and the clock moves to the next start as the `continue` does",
    ("simulator/engine/sharing_kernels.py",
     "while b >= 0 and starts[order[b]] > starts[i]:", "> -> >="):
        "(the start order) flows with equal starts then start in the other order: the same "
        "instant, and a filling's sums, products and minima are per flow and per link, so "
        "their order among them changes no float",
    **{("simulator/kvcache/host_order.py", line, "True -> False"):
       "(HostOrder) both lists are built from the same blocks: their lengths agree"
       for line in ("for u, b in zip(used_at[blocks].tolist(), blocks.tolist(), strict=True):",
                    "heap = list(zip(used_at[blocks].tolist(), blocks.tolist(), strict=True))")},
    **{("simulator/kvcache/host_order.py",
        "return len(self.heaps[machine]) > REBUILD_FACTOR * on_host + REBUILD_SLACK", desc):
       "(HostOrder.oversized) when a heap is rebuilt only bounds its memory: a rebuilt heap "
       "holds an up-to-date entry for exactly the host's blocks, so the drops are the same "
       "whenever it is rebuilt"
       for desc in ("> -> >=", "+ -> -")},
    ("simulator/engine/clock.py", "if young and young < YOUNG_THRESHOLD:  # 0: the collector is off",
     "< -> <="):
        "(fewer_collections) a young threshold already at YOUNG_THRESHOLD is set to the same "
        "value: the same thresholds",
    ("simulator/kvcache/copy_kernels.py", "break", "delete `break`"):
        "(keep_copies) the scan of the entry's words goes on after a non-zero one: `copied` "
        "stays True, the same answer with more work",
    ("simulator/kvcache/directory.py",
     "self.n_machines = int(self.machine_of.max()) + 1 if self.n_gpus else 0", "1 -> 2"):
        "one machine more than any GPU names: nothing is ever put on its host tier",
    ("simulator/kvcache/directory.py",
     "self.n_machines = int(self.machine_of.max()) + 1 if self.n_gpus else 0", "0 -> 1"):
        "a directory without GPUs places nothing",
    ("simulator/kvcache/directory.py", "self.words = max(1, (config.layer_slots + 63) // 64)",
     "1 -> 2"):
        "a word of copy bits more than the slots need, never set",
    ("simulator/kvcache/directory.py", "self.words = max(1, (config.layer_slots + 63) // 64)",
     "63 -> 64"):
        "at most a word of copy bits more than the slots need, never set",
    ("simulator/kvcache/directory.py", "cap = 1024", "1024 -> 1025"):
        "the arrays' first size: they grow to whatever is interned",
    ("simulator/kvcache/directory.py", "if need <= cap:", "<= -> <"):
        "growing arrays that are big enough already changes no entry",
    ("simulator/kvcache/directory.py", "new = max(need, 2 * cap)", "max -> min"):
        "grows to exactly what is needed instead of doubling: the same entries",
    ("simulator/kvcache/directory.py", "new = max(need, 2 * cap)", "* -> /"):
        "max(need, cap / 2) is need (need > cap): grows to exactly what is needed",
    ("simulator/kvcache/directory.py", "new = max(need, 2 * cap)", "2 -> 3"):
        "a growth factor: the same entries",
    ("simulator/kvcache/directory.py", "self.used_at = grow(self.used_at, 0.0)", "0.0 -> 1.0"):
        "an owned block's last use is set when it is placed, before anything reads it",
    ("simulator/kvcache/directory.py",
     "h = (base[:, None] + np.arange(self.k)) % max(self.n_gpus, 1)", "1 -> 2"):
        "with one GPU there is one holder (k = 1) and base % 2 = base = 0",
    ("simulator/kvcache/directory.py",
     "d = self.dist[src][np.maximum(h, 0)] + np.arange(self.k) * 1e-30", "1e-30 -> 2e-30"):
        "the 1e-30 tie-break is below a float's resolution at any path latency (argmin takes "
        "the first of equal distances anyway)",
    ("simulator/kvcache/directory.py",
     "d = self.dist[src][np.maximum(h, 0)] + np.arange(self.k) * 1e-30", "+ -> -",
     "self.dist[src][np.maximum(h, 0)] + np.arange(self.k) * 1e-30"):
        "the 1e-30 tie-break is below a float's resolution at any path latency (argmin takes "
        "the first of equal distances anyway)",
    ("simulator/kvcache/directory.py",
     "d = self.dist[src][np.maximum(h, 0)] + np.arange(self.k) * 1e-30", "0 -> 1"):
        "np.maximum(h, 0) only guards unplaced blocks (h = -1), whose pick is UNPLACED "
        "whatever the distance",
    ("simulator/kvcache/directory.py", "shape[axis] = new - cap", "- -> +"):
        "arrays grown by more than needed: the same entries",
    ("simulator/kvcache/directory.py", "self.keys = grow(self.keys, 0)", "0 -> 1"):
        "keys are read only below n, where intern wrote them",
    ("simulator/kvcache/directory.py", "d[h == src] = -1.0", "1.0 -> 2.0"):
        "any negative distance puts the reader's own replica first",
    ("simulator/kvcache/placement.py",
     "n = len(idx) if n_context is None else max(int(n_context), 1)", "1 -> 2"):
        "a context given with positions has at least one block; a 1-block context has only "
        "position 0, placed on GPU 0 either way",
    ("simulator/kvcache/placement.py", "base = np.minimum(pos * g // n, g - 1).astype(np.int64)",
     "// -> /"):
        "positions are >= 0: truncating the quotient is flooring it",
    ("simulator/kvcache/placement.py", "base = np.minimum(pos * g // n, g - 1).astype(np.int64)",
     "- -> +"):
        "positions lie in the context (pos < n), so pos * g // n <= g - 1 already",
    ("simulator/kvcache/directory.py",
     "if len(idx) > 1 and np.count_nonzero(dup := idx[1:] == idx[:-1]):", "> -> >="):
        "one block has no repeats to drop",
    ("simulator/kvcache/directory.py", "if self.k == 1:  # one holder per block: its base",
     "== -> !="):
        "a fast path: the general branch gives the same answer for one holder",
    ("simulator/kvcache/directory.py", "if self.k == 1:  # one holder per block: its base",
     "1 -> 2"):
        "a fast path: the general branch gives the same answer for one holder",
    ("simulator/kvcache/eviction.py", "if free >= want:", ">= -> >", "#1"):
        "(host_room) free = want: nothing needs dropping (need = 0) and all fit either way",
    ("simulator/kvcache/eviction.py", "if need > 0:", "> -> >="):
        "dropping 0 blocks drops nothing",
    ("simulator/kvcache/eviction.py", "return min(want, cap - int(d.host_used[machine]))",
     "- -> +"):
        "after the drops the host has room for min(want, cap) blocks exactly as computed either "
        "way: it holds cap - want blocks, or none",
    ("simulator/kvcache/blocklists.py",
     "self._buf = [np.zeros(256, np.int64) for _ in range(n_keys)]", "256 -> 257"):
        "the buffers' first size: they are pruned and grown as blocks arrive",
    ("simulator/kvcache/blocklists.py", "self._n = [0] * n_keys", "0 -> 1"):
        "one zero entry listed at the start: the predicate drops it unless block 0 is in the "
        "set, which then lists it anyway (duplicates are merged)",
    ("simulator/kvcache/blocklists.py", "self._sorted = [0] * n_keys  # leading entries that are "
     "ascending and distinct", "0 -> 1"):
        "a first entry alone is ascending and distinct; the merge sorts and dedupes the rest",
    ("simulator/kvcache/blocklists.py", "if n + k > len(buf):", "> -> >="):
        "prunes a list that is exactly full one append earlier: the same blocks",
    ("simulator/kvcache/blocklists.py", "if n + k > len(buf) // 2:", "> -> >="):
        "a growth policy: grows a little earlier, the same blocks listed",
    ("simulator/kvcache/blocklists.py", "if n + k > len(buf) // 2:", "// -> /"):
        "the same comparison in floats",
    ("simulator/kvcache/blocklists.py", "if n + k > len(buf) // 2:", "2 -> 3"):
        "a growth policy: grows earlier, the same blocks listed",
    ("simulator/kvcache/blocklists.py", "grown = np.zeros(2 * (n + k), np.int64)", "2 -> 3"):
        "a growth factor: the same blocks listed",
    ("workloads/sparse.py", "n = np.asarray(context_blocks, dtype=np.int64).reshape(-1)",
     "1 -> 2"):
        "numpy reads any negative size in reshape as 'the rest'",
    ("workloads/sparse.py",
     "np.asarray(popular_blocks, dtype=np.int64).reshape(-1)[sampled], avail_s)", "1 -> 2"):
        "numpy reads any negative size in reshape as 'the rest'",
    ("workloads/sparse.py", "full = avail <= k", "<= -> <"):
        "exactly k older blocks: sampling k of k picks them all, the same selection (the "
        "random stream is consumed differently, which no promise fixes)",
    ("workloads/sparse.py", "if focus is not None and self.focus_fraction > 0:", "> -> >="):
        "with focus_fraction 0 no draw comes from the focus set either way",
    ("workloads/sparse.py", "small = avail_s <= 4 * k", "<= -> <"):
        "which of the two samplers of the same law (checked against sampling without "
        "replacement) serves a row",
    ("workloads/sparse.py", "small = avail_s <= 4 * k", "* -> /"):
        "which of the two samplers of the same law serves a row",
    ("workloads/sparse.py", "small = avail_s <= 4 * k", "4 -> 5"):
        "which of the two samplers of the same law serves a row",
    ("workloads/sparse.py",
     "recent = np.where(np.arange(w)[None, :] < r[sampled][:, None], recent, -1)", "< -> <="):
        "every sampled row's context is longer than the window, so every row has w recent "
        "blocks and the mask is all true",
    ("workloads/sparse.py",
     "recent = np.where(np.arange(w)[None, :] < r[sampled][:, None], recent, -1)", "-x -> x"):
        "every sampled row has the whole window: the fill is never used",
    ("workloads/sparse.py",
     "recent = np.where(np.arange(w)[None, :] < r[sampled][:, None], recent, -1)", "1 -> 2"):
        "every sampled row has the whole window: the fill is never used",
    ("workloads/sparse.py", "if p_pop > 0:", "> -> >="):
        "(exact path's weights) with popular_fraction 0 the popular block adds 0 × finite "
        "weights",
    ("workloads/sparse.py", "foc = np.where((foc >= 0) & (foc < avail_s[:, None]), foc, -1)",
     "1 -> 2"):
        "any negative focus entry is padding",
    ("workloads/sparse.py", "cdf = _zipf(self.zipf_s, max(int(regions.max()), 1))[0]",
     "1 -> 2"):
        "with at most one region the search over two cumulative weights still returns rank "
        "0 (u · cdf[0] < cdf[0])",
    ("workloads/sparse.py", "weight = np.where(valid, (1.0 - p_pop - p_foc) / "
     "np.maximum(avail, 1)[:, None], 0.0)", "1 -> 2"):
        "the exact path's rows have more older blocks than k >= 1: avail >= 2",
    ("workloads/sparse.py", "mass = np.where(rank < regions[:, None],", "< -> <="):
        "a rank at the query's region count goes to the discarded column (a batch) or does "
        "not exist (one query: its ranks stop there)",
    ("workloads/sparse.py", "pmf[None, :] / cdf[np.maximum(regions, 1) - 1][:, None], 0.0)",
     "0.0 -> 1.0"):
        "ranks past the query's own go to the discarded column (a batch) or do not exist "
        "(one query)",
    ("simulator/network/fabric.py", 'bw, lat = data.get("bandwidth"), data.get("latency", 0.0)',
     "0.0 -> 1.0"):
        "the latency is only validated here (a default of 1 s is valid); the paths read it "
        "with their own default",
    ("simulator/network/shared.py", "self._heap_ok = True  # False while one component holds "
     "every class (no heap kept)", "delete `self._heap_ok = True`"):
        "its readers (the timer, the completion handler) run after a filling, and the first "
        "filling sets it (its one component holds every class)",
    ("simulator/network/shared.py", "self._heap_ok = True  # False while one component holds "
     "every class (no heap kept)", "True -> False"):
        "starting without a heap: the first filling that needs one builds it from the classes",
    ("simulator/network/shared.py", "self._first_at = _INF  # earliest predicted finish when "
     "the heap is not kept [s]", "delete `self._first_at = _INF`"):
        "read only while the heap is not kept, and set whenever it stops being kept",
    ("simulator/policies/observed.py", "return shared if shared < fair else fair", "< -> <="):
        "where the two delays are equal, either is the lesser",
    ("simulator/network/shared.py", "if r > 0.0:", "> -> >="):
        "a flow with nothing left adds 0 either way (sharing_time)",
    ("simulator/network/shared.py", "left += r if r < nbytes else nbytes", "< -> <="):
        "where the bytes left equal the new flow's, both branches add the same value",
    ("simulator/network/shared.py", "if t > worst:", "> -> >="):
        "a link as bad as the worst so far leaves the worst the same",
    ("simulator/network/shared.py", "self._timer_gen = 0", "0 -> 1"):
        "timer generations need only be distinct and increasing",
    ("simulator/network/shared.py", "self._next_cid = 0", "0 -> 1"):
        "class ids need only be distinct and increasing",
    ("simulator/network/fabric.py",
     "cap = eff * info.bottleneck_bandwidth if eff < 1.0 else _INF", "< -> <="):
        "at efficiency 1 a flow's own cap is its bottleneck link's capacity, which the "
        "filling enforces anyway",
    ("simulator/network/fabric.py",
     "cap = eff * info.bottleneck_bandwidth if eff < 1.0 else _INF", "1.0 -> 2.0"):
        "at efficiency 1 a flow's own cap is its bottleneck link's capacity, which the "
        "filling enforces anyway",
    ("simulator/network/fabric.py", "self._routes[(src, dst)] = r",
     "delete `self._routes[(src, dst)] = r`"):
        "a memo: the route is built again each time, the same",
    ("simulator/network/fabric.py",
     "flow = Flow(fid, src, dst, nbytes, issued, now + wait if wait > 0.0 else now, done,",
     "> -> >="):
        "with no wait the start is now + 0.0, which is now",
    ("simulator/network/fabric.py",
     'bw, lat = self._cap[i], float(self.graph.edges[u, v].get("latency", 0.0))', "0.0 -> 1.0"):
        "a link flow's path latency is never read (link flows have no delay: the caller "
        "charges it)",
    ("simulator/network/fabric.py",
     'any(self.graph.nodes[n].get("kind") == "nic" for n in (u, v)))', "== -> !="):
        "a link flow's inter-node flag is never read (its efficiency is given, not the "
        "stack's)",
    ("simulator/network/fabric.py",
     "info, (i,), 0.0, efficiency * bw if efficiency < 1.0 else _INF, bw,", "0.0 -> 1.0"):
        "a link route's delay is never read (a link flow starts at its issue time)",
    ("simulator/network/fabric.py",
     "info, (i,), 0.0, efficiency * bw if efficiency < 1.0 else _INF, bw,", "< -> <="):
        "at efficiency 1 a link flow's own cap is its link's line rate, which the filling "
        "enforces anyway",
    ("simulator/network/fabric.py",
     "info, (i,), 0.0, efficiency * bw if efficiency < 1.0 else _INF, bw,", "1.0 -> 2.0"):
        "at efficiency 1 a link flow's own cap is its link's line rate, which the filling "
        "enforces anyway",
    ("simulator/network/shared.py",
     "c.t_next = c.t_ref + (c.heap[0][0] - c.s_ref) / r if r > 0.0 else _INF", "> -> >=", "#1"):
        "a filled rate is never 0 (every level is at least the first, positive one): "
        "`r >= 0` and `r > 0` agree",
    ("simulator/network/shared.py",
     "c.t_next = c.t_ref + (c.heap[0][0] - c.s_ref) / r if r > 0.0 else _INF", "> -> >=", "#2"):
        "a filled rate is never 0: `r >= 0` and `r > 0` agree",
    ("simulator/network/shared.py",
     "c.t_next = t_next = (c.t_ref + (c.heap[0][0] - c.s_ref) / r if r > 0.0", "> -> >="):
        "a filled rate is never 0: `r >= 0` and `r > 0` agree",
    ("simulator/network/shared.py", "c.dirty = False", "delete `c.dirty = False`", "#1"):
        "(one component) a class left dirty has its prediction recomputed at the next filling "
        "from the same state: the same value",
    ("simulator/network/shared.py", "c.dirty = False", "False -> True", "#1"):
        "(one component) a class left dirty has its prediction recomputed at the next filling "
        "from the same state: the same value",
    ("simulator/network/shared.py", "c.dirty = False", "delete `c.dirty = False`", "#2"):
        "(heap) a class left dirty gets its prediction pushed again at the next filling, "
        "recomputed from the same state: the same value (the older entry goes stale)",
    ("simulator/network/shared.py", "c.dirty = False", "False -> True", "#2"):
        "(heap) a class left dirty gets its prediction pushed again at the next filling, "
        "recomputed from the same state: the same value (the older entry goes stale)",
    ("simulator/network/shared.py", "if c.t_next < first_at:", "< -> <="):
        "the minimum of the predictions either way",
    ("simulator/network/shared.py", "continue", "delete `continue`", "#1"):
        "(heap, a clean class whose rate is unchanged) its prediction is recomputed from the "
        "same state and pushed again: the same value (the older entry goes stale)",
    ("simulator/network/shared.py", "c.gen += 1", "1 -> 2", "#1"):
        "generations need only increase (and stay >= 0)",
    ("simulator/network/shared.py", "c.gen += 1", "1 -> 2", "#2"):
        "generations need only increase (and stay >= 0)",
    ("simulator/network/shared.py", "if len(heap) > 64 and len(heap) > 8 * len(self._classes):", "> -> >=", "len(heap) > 64"):
        "when superseded predictions are dropped from the heap (a compaction keeps every "
        "valid one): the same completions",
    ("simulator/network/shared.py", "if len(heap) > 64 and len(heap) > 8 * len(self._classes):", "> -> >=", "len(heap) > 8 * len(self._classes)"):
        "when superseded predictions are dropped from the heap: the same completions",
    ("simulator/network/shared.py", "if len(heap) > 64 and len(heap) > 8 * len(self._classes):", "and -> or"):
        "when superseded predictions are dropped from the heap: the same completions",
    ("simulator/network/shared.py", "if len(heap) > 64 and len(heap) > 8 * len(self._classes):", "64 -> 65"):
        "when superseded predictions are dropped from the heap: the same completions",
    ("simulator/network/shared.py", "if len(heap) > 64 and len(heap) > 8 * len(self._classes):", "* -> /"):
        "when superseded predictions are dropped from the heap: the same completions",
    ("simulator/network/shared.py", "if len(heap) > 64 and len(heap) > 8 * len(self._classes):", "8 -> 9"):
        "when superseded predictions are dropped from the heap: the same completions",
    ("simulator/network/shared.py", "self._timer_at = t", "delete `self._timer_at = t`"):
        "without the armed time every finite prediction arms a fresh timer (the older one "
        "is superseded) and none is armed for 'never': the same completions, more events",
    ("simulator/network/shared.py", "self._timer_gen += 1", "+= -> -="):
        "timer generations need only be distinct",
    ("simulator/network/shared.py", "self._timer_gen += 1", "1 -> 2"):
        "timer generations need only be distinct",
    ("simulator/network/shared.py", "self._timer_gen += 1", "delete `self._timer_gen += 1`"):
        "a superseded timer then runs the completion handler, which finishes only flows due "
        "at that time (none) and re-arms: the same completions, more events",
    ("simulator/network/shared.py", "if t < _INF:", "< -> <="):
        "a timer for 'never' is armed only when one was pending, and a pending timer means "
        "classes with finite predictions, which only its firing removes: never reached",
    ("simulator/network/shared.py",
     "self.env.timeout(t - now if t > now else 0.0).callbacks.append(", "> -> >="):
        "t = now: a delay of 0 either way",
    ("simulator/network/shared.py",
     "self.env.timeout(t - now if t > now else 0.0).callbacks.append(", "0.0 -> 1.0"):
        "no prediction is in the past: a firing finishes every flow due then (the tolerance "
        "is far above the rounding) and new predictions are now + remaining / rate >= now",
    ("simulator/network/shared.py", "self._timer_at = _INF", "delete `self._timer_at = _INF`",
     "#2"):
        "(on firing) the next prediction never equals the fired time: every flow due then "
        "finishes at the firing, so the timer is re-armed all the same",
    ("simulator/network/shared.py", "near = now * (1.0 + 1e-9)", "1.0 -> 2.0"):
        "a looser pre-filter: which flows finish is decided by the tolerance test after it",
    ("simulator/network/shared.py", "near = now * (1.0 + 1e-9)", "1e-09 -> 2e-09"):
        "a looser pre-filter: which flows finish is decided by the tolerance test after it",
    ("simulator/network/shared.py", "if c.t_next <= near:", "<= -> <"):
        "a class predicted at exactly `near` is 1e-9 x now ahead, far beyond the 1e-12 "
        "tolerance: it does not finish either way",
    ("simulator/network/shared.py", "break", "delete `break`"):
        "(completions, heap) the loop then takes every class off the heap, finishing only "
        "flows due now; the classes it took are refilled and predicted again from the same "
        "state: the same completions, more work",
    ("simulator/network/shared.py", "heappop(heap)", "delete `heappop(heap)`", "#3"):
        "(completions) the class's entry goes stale at the generation bump below and is "
        "popped as such next",
    ("simulator/network/shared.py", "c.gen += 1", "delete `c.gen += 1`", "#2"):
        "(completions) the class's one valid entry was just popped; being touched, it is "
        "refilled and pushed again (or dropped) before the heap is read",
    ("simulator/network/shared.py", "self._next_cid += 1", "1 -> 2"):
        "class ids need only be distinct, increasing and never -1 (fair_share's probe)",
    ("simulator/network/shared.py", "c.gen = -1", "delete `c.gen = -1`"):
        "a dropped class has no valid heap entry left: the completion that drops it bumped its "
        "generation past them, or the heap is not kept and is rebuilt from the live classes",
    ("simulator/network/shared.py", "c.gen = -1", "1 -> 2"):
        "any negative generation matches no heap entry (they are >= 0)",
    ("simulator/network/shared.py", "self._arm_timer()", "delete `self._arm_timer()`", "#2"):
        "(a firing that finishes nothing) never reached: a firing always finishes the flows "
        "predicted for its time",
    ("simulator/network/fabric.py",
     "rate = route.cap if route.cap <= route.bneck else route.bneck", "<= -> <"):
        "cap = bottleneck: the same rate either way",
    ("simulator/network/maxmin.py",
     "self.res = [0.0] * n  # residual capacity [B/s] after the last filling", "0.0 -> 1.0"):
        "every link a filling reports (and the fabric reads) is written by that filling first",
    ("simulator/network/maxmin.py",
     "self.wt = [0] * n  # unfrozen flows per link during a filling", "0 -> 1"):
        "a link's count is set when a filling first meets it (wt[link] = 0 or n)",
    ("simulator/network/maxmin.py",
     "self.stamp = 0  # marks the classes and links of the component being filled", "0 -> 1"):
        "stamps need only differ from the 0 that links and classes start with",
    ("simulator/network/maxmin.py", "if len(d) > 1:", "> -> >="):
        "the fast path (a class alone on its links) is then never taken: the general filling "
        "gives the same floats (min(cap, bottleneck / n))",
    ("simulator/network/maxmin.py", "if len(d) > 1:", "1 -> 2"):
        "a link of `links` with two classes holds `only` (the first class met there), so the "
        "check of only's links below sends it to the general filling anyway",
    ("simulator/network/maxmin.py", "break", "delete `break`", "#1"):
        "(a link with several classes) as above: only's links hold it, and the check below "
        "sends the filling to the general path",
    ("simulator/network/maxmin.py", "if only is None:", "is -> is not", "#1"):
        "the fast path (a class alone on its links) is then never taken: the general filling "
        "gives the same floats (min(cap, bottleneck / n))",
    ("simulator/network/maxmin.py", "if len(link_classes[link]) != 1:", "!= -> =="):
        "the fast path (a class alone on its links) is then never taken: the general filling "
        "gives the same floats (min(cap, bottleneck / n))",
    ("simulator/network/maxmin.py", "if len(link_classes[link]) != 1:", "1 -> 2"):
        "the fast path (a class alone on its links) is then never taken: the general filling "
        "gives the same floats (min(cap, bottleneck / n))",
    ("simulator/network/maxmin.py", "level = only.cap if only.cap <= lk else lk", "<= -> <"):
        "cap = bottleneck / n: the same level either way",
    ("simulator/network/maxmin.py", "self.stamp += 1", "+= -> -="):
        "stamps need only be distinct and differ from the initial 0",
    ("simulator/network/maxmin.py", "self.stamp += 1", "1 -> 2"):
        "stamps need only be distinct and differ from the initial 0",
    ("simulator/network/maxmin.py", "seen[link] = stamp", "delete `seen[link] = stamp`", "#1"):
        "a changed link then counts as first met by the search: its count starts from its "
        "classes all the same, and the repeat in the component's links records no new load",
    ("simulator/network/maxmin.py", "wt[link] = 0", "delete `wt[link] = 0`"):
        "after every filling each link's count is back to 0 (every class is frozen, each "
        "taking its flows off its links)",
    ("simulator/network/maxmin.py", "c.new_rate = -1.0", "1.0 -> 2.0"):
        "any negative rate marks a class not yet frozen",
    ("simulator/network/maxmin.py", "if c.cap < _INF:", "< -> <="):
        "an uncapped class would freeze by its cap only at an infinite level, which no link "
        "with unfrozen flows leaves",
    ("simulator/network/maxmin.py", "use_heap = len(key) > _SCAN_LINKS", "> -> >="):
        "which search finds the next bottleneck (scan or heap): the same answer "
        "(test_matches_oracle_on_two_dgx_h100 runs both)",
    ("simulator/network/maxmin.py",
     "while ci < ncapped and capped[ci][2].new_rate >= 0.0:", ">= -> >"):
        "a frozen rate is never 0 (levels are positive) and an unfrozen one is -1",
    ("simulator/network/maxmin.py", "if ci < ncapped and capped[ci][0] <= lk:", "<= -> <"):
        "cap = next link level: freezing by the link freezes the capped class at the same "
        "level",
    ("simulator/network/maxmin.py", "if capped[ci][0] > level:", "> -> >="):
        "equal: the same level",
    ("simulator/network/maxmin.py", "if lk > level:", "> -> >="):
        "equal: the same level",
    ("simulator/network/maxmin.py", "if c.new_rate < 0.0:", "< -> <="):
        "a frozen rate is never 0 (levels are positive) and an unfrozen one is -1",
    ("simulator/network/lone.py",
     "rate = route.cap if route.cap <= route.bneck else route.bneck", "<= -> <"):
        "cap = bottleneck: the same rate either way",
    ("simulator/network/lone.py", "self.fabric._complete(flow, now, False)", "False -> True"):
        "a flow that stayed lone never joined a class: the by-class record it then adds "
        "carries 0 bytes (its class bytes), which no total or bin shows",
    ("simulator/network/lone.py", "shared = False", "False -> True"):
        "callers then refill links whose flows did not change: the same rates and predictions",
    ("simulator/network/lone.py",
     "self.shared.join(f, f.nbytes - done if done < f.nbytes else 0.0, now)", "< -> <="):
        "done = nbytes: nbytes - done is 0.0 as well",
    ("simulator/network/maxmin.py", "key[link] = (r if r > 0.0 else 0.0) / w", "> -> >="):
        "r = 0: 0.0 either way",
    ("simulator/network/maxmin.py", "touched.clear()", "delete `touched.clear()`"):
        "links met before are pushed again with their current level: duplicate heap entries, "
        "which the pops skip (a link leaves the levels once)",
    ("simulator/network/shared.py", "c = FlowClass(-1, (src, dst), route, self.env.now)",
     "1 -> 2"):
        "the probe's class id need only differ from the real ones (>= 0)",
    ("simulator/network/accounts.py", "one = n > 0 and bool((tags == tags[0]).all())",
     "== -> !="):
        "one class in an array is then added message by message (the loop): the same additions "
        "in the same order (the counters may become numpy floats, as a mixed batch makes them)",
    ("simulator/network/accounts.py", "type(delivered) is type(sent) else fold_sum(delivered, "
     "counted)", "is -> is not"):
        "delivered equals sent here, so fold_sum(delivered, ...) and the new sent are the same "
        "value either way",
    ("simulator/network/accounts.py", "for tag, b in zip(tags, counted, strict=True):",
     "True -> False"):
        "the lengths were checked equal before any counter moved",
    **_set_before_read("simulator/network/flows.py", {
        "self.lone = False  # reserved alone on idle links (see :mod:`simulator.network.lone`)":
            ("self.lone = False", "False -> True",
             "read only by a reserved flow's end event, and reserve sets it first"),
        "self.rate = 0.0  # its rate while lone [B/s]":
            ("self.rate = 0.0", "0.0 -> 1.0",
             "read only for a reserved (lone) flow, and reserve sets it first"),
        "self.joined_at = 0.0  # when it joined a flow class [s] ...":
            ("self.joined_at = 0.0", "0.0 -> 1.0", _SET_BY_JOINING),
        "self.class_bytes = 0.0  # ... with this many bytes left [B] (link records by class)":
            ("self.class_bytes = 0.0", "0.0 -> 1.0", _SET_BY_JOINING),
    }),
    ("simulator/network/flows.py", "self.n, self.rate, self.new_rate = 0, 0.0, 0.0",
     "0.0 -> 1.0"):
        "rate: a new class is joined and filled at the time it is made (rate x 0 s of service "
        "either way); new_rate: the filling sets it before anything reads it",
    ("simulator/network/flows.py", "self.gen, self.dirty, self.stamp = 0, True, 0",
     "True -> False"):
        "joining a class, right after it is made, marks it dirty; the probe's class is never "
        "read for it",
    ("workloads/sparse.py", "logw = np.where(positive, np.log(np.where(positive, weight, 1.0)), "
     "-np.inf)", "1.0 -> 2.0"):
        "the placeholder under log() for zero weights, whose log the outer where discards",
    ("workloads/sparse.py", "logw = np.where(positive, np.log(np.where(positive, weight, 1.0)), "
     "-np.inf)", "-x -> x"):
        "non-finite keys are replaced in the fill step below (1e300 for an older block, inf "
        "otherwise), whatever their sign",
    ("workloads/sparse.py", "positive = valid & (weight > 0)", "> -> >="):
        "a zero weight then takes log(0) = -inf: the key it had",
    ("workloads/sparse.py", "region_mass = np.zeros((qn, rmax + 1))  # + a column for ranks past "
     "a query's own", "1 -> 2"):
        "one more discarded column",
    ("workloads/sparse.py", "weight += p_pop * np.where(no_pop[:, None], valid / "
     "np.maximum(avail, 1)[:, None],", "1 -> 2"):
        "the exact path's rows have more older blocks than k >= 1: avail >= 2",
    ("workloads/sparse.py", "fmass = np.zeros((qn, amax + 1))", "1 -> 2"):
        "one more column for padding focus entries, never read",
    ("workloads/sparse.py", "contrib = np.where(f_ok, p_foc / np.maximum(nf, 1)[:, None], 0.0)",
     "1 -> 2"):
        "with no valid focus entry (nf = 0) every contribution is the 0.0 branch",
    ("workloads/sparse.py", "contrib = np.where(f_ok, p_foc / np.maximum(nf, 1)[:, None], 0.0)",
     "0.0 -> 1.0"):
        "padding focus entries add to the discarded column amax",
    ("workloads/sparse.py", "weight += np.where((nf == 0)[:, None], p_foc * valid / "
     "np.maximum(avail, 1)[:, None],", "* -> /"):
        "p_foc / True = p_foc at older blocks; padding (p_foc / False = inf) is masked out of "
        "the log weights by valid",
    ("workloads/sparse.py", "weight += np.where((nf == 0)[:, None], p_foc * valid / "
     "np.maximum(avail, 1)[:, None],", "1 -> 2"):
        "the exact path's rows have more older blocks than k >= 1: avail >= 2",
    ("workloads/sparse.py", "if rho <= 0 or shape[1] < 2:", "1 -> 2"):
        "shape[2] < 2 never holds: a mask of one layer is drawn, all renewals (layer 0); only "
        "the random stream is consumed differently, which no promise fixes",
    ("workloads/sparse.py", "weight = np.where(valid, (1.0 - p_pop - p_foc) / "
     "np.maximum(avail, 1)[:, None], 0.0)", "0.0 -> 1.0"):
        "positions past a row's older blocks get -inf keys (valid is false) whatever their "
        "weight",
    ("workloads/sparse.py", "renew = rng.random(shape) >= rho", ">= -> >"):
        "a uniform draw equal to rho has probability 0",
    ("workloads/sparse.py", "cdf.flags.writeable = pmf.flags.writeable = False",
     "delete `cdf.flags.writeable = pmf.flags.writeable = False`"):
        "a guard on the cached arrays: no code writes them",
    ("workloads/sparse.py", "cdf.flags.writeable = pmf.flags.writeable = False",
     "False -> True"):
        "a guard on the cached arrays: no code writes them",
    ("workloads/sparse.py", "m = int(np.ceil(k * self.oversample)) + 4", "* -> /"):
        "fewer candidate slots: rows short of k distinct go to the exact sampler of the same "
        "law",
    ("simulator/sweep/spec.py", 'return "unknown"', "return X -> None"):
        "an uninstalled tree: any constant serves as its version in the key",
    ("simulator/sweep/spec.py", "raw = [dict(zip(keys, combo, strict=True)) for combo in combos]",
     "True -> False"):
        "itertools.product yields one value per grid key: the lengths always agree",
    ("simulator/sweep/spec.py", 'for chunk in iter(lambda: f.read(1 << 20), b""):', "1 -> 2"):
        "the chunk size read at a time: the file's digest is the same",
    ("simulator/sweep/spec.py", 'for chunk in iter(lambda: f.read(1 << 20), b""):', "20 -> 21"):
        "the chunk size read at a time: the file's digest is the same",
    ("simulator/sweep/spec.py", "cache[path] = h.hexdigest()[:16]", "16 -> 17"):
        "an input file's digest only enters the point's key (itself hashed to 16 digits): "
        "the key still changes exactly when the file's content does",
    **_of_module("simulator/policies/adaptive.py", (
        ('return owner_wait, home_wait, slow.get("route", 0.0), slow.get("fetch", 0.0)',
         "0.0 -> 1.0",
         "slow_times gives both options whenever it gives a dict: the default is never used"),
        ("if self._least_recompute(lc, rnd.src) < fetch_round + slow_fetch:", "< -> <=",
         "the gate is loose by the fetch round's attention and merge: where the cheapest "
         "recompute equals the round (+ its slow-down), local's step (its recompute at least "
         "that) exceeds fetch's, so local is priced and loses"),
        ("pi = min(max(share, 0.0), 1.0)", "1.0 -> 2.0",
         "any share of 1 or more returns m on the next line, before pi is used"),
        ("elif room - held >= need:", ">= -> >",
         "room - held = need: room / (held + need) is 1.0 as well (whole numbers)"),
        ("survival = min(1.0, room / (held + need))", "1.0 -> 2.0",
         "here room < held + need: the ratio is below 1 and the min never binds"),
        ("return mine / max(obs.queries.item(home), 1) if mine > 0 else 0.0", "> -> >=",
         "an owner with no queries: 0 / max(home, 1) is 0.0 as well"),
        ("if nbytes > 0:", "> -> >=", _NO_TINY_MESSAGE),
        ("if nbytes > 0:", "0 -> 1", _NO_TINY_MESSAGE),
        ("if nbytes <= 0:", "<= -> <", _NO_TINY_MESSAGE),
        ("if nbytes <= 0:", "0 -> 1", _NO_TINY_MESSAGE),
        ("continue", "delete `continue`", _NO_TINY_MESSAGE),
        ("if last > blocks:  # (max without the call: asked every round)", "> -> >=",
         "last = blocks: blocks is set to the value it has"),
        ('best, best_t = OPTIONS[0], float("inf")', "0 -> 1",
         "local's live total is the closed form's, always finite: some option beats inf and "
         "replaces the initial one"),
    )),
    ("simulator/policies/observed.py",
     "return wait if wait > 0.0 else 0.0  # (max(0.0, ·) without the call: twice a round)",
     "> -> >="): "a wait of exactly 0.0 is returned as 0.0 either way",
    ("simulator/policies/observed.py", "over = row.max() > WINDOW", "> -> >="):
        "a row whose largest count is exactly WINDOW has no column past it: nothing halves, "
        "and the count after is the same row's (> WINDOW: False)",
    ("simulator/policies/observed.py",
     "over = (self.copies[home] + self.hits[home]).max() > WINDOW", "> -> >="):
        "_over only says when copied() must call _decay: a row exactly at WINDOW is checked "
        "once more, nothing halves, and _decay sets it False",
    ("simulator/policies/observed.py",
     "if self._over[home] or self.copies[home, owner] + self.hits[home, owner] > WINDOW:",
     "> -> >="):
        "a pair exactly at WINDOW calls _decay, whose row has no column past it: nothing halves",
    ("simulator/engine/fast_streams.py", "if self.last_end <= start:", "<= -> <"):
        "last_end = start: every known item ends by start (last_end is the latest end), so the "
        "search finds none after it: idle either way",
    ("simulator/engine/fast_streams.py",
     "if not n or at >= at_l[-1]:  # the common case: issued after everything known", ">= -> >"):
        "an item issued at the last known issue time then goes through _insert, which puts it "
        "last (bisect_right) with the same end and pushes nothing",
    ("simulator/engine/fast_streams.py",
     "if n and at < at_l[-1]:  # items known after the first: one reserve each", "< -> <="):
        "a chain issued at the last known issue time then takes one reserve per item, each "
        "reserve's common case: the same items and floats, and the one cut on the way takes the "
        "same items (the new ones end after now: their durations are positive)",
    **{("simulator/engine/fast_streams.py", line, "> -> >=", *nth): _EQUAL_SAME
       for line, *nth in (("e = (prev if prev > at else at) + duration", "#1"),
                          ("e = (prev if prev > at else at) + duration", "#2"),
                          ("new = (last if last > a else a) + dur_l[j]",),
                          ("e = (prev if prev > at else at) + d",),
                          ("if e > self.last_end:",), ("if push > debts[o]:",),
                          ("if end_l[-1] > self.last_end:",), ("if prev > self.last_end:",),
                          ("if end > self.last_end:", "#1"), ("if end > self.last_end:", "#2"),
                          ("if e > last:",))},
    ("simulator/engine/fast_streams.py",
     "for d, fold, kk in zip(busy, folds, kernels, strict=True):", "True -> False"): _ONE_STEP,
    ("simulator/engine/clock.py", "env.schedule(self, NORMAL + 1 + gpu, delay)", "1 -> 2"):
        "(GpuTimeout) any offset above NORMAL keeps the GPUs' timeouts after every other kind "
        "at a tie and in GPU order among themselves",
    ("simulator/engine/fast_streams.py", "if k < len(busy):", "< -> <="):
        "(Calendar.chain_until) with every item reserved, the slices are the whole lists: "
        "equal lists, copied",
    ("simulator/engine/fast_streams.py", "for d, fold in zip(busy, folds, strict=True):",
     "True -> False"): _ONE_STEP,
    ("simulator/engine/fast_streams.py", "for d, e in zip(self.dur, self.end, strict=True):",
     "True -> False"):
        "dur and end are kept in step: every insertion, append and cut touches both",
    ("simulator/engine/fast_streams.py", "for c, spb in zip(cals, spbs, strict=True):",
     "True -> False"):
        "a route's calendars and seconds per byte are built together from its links "
        "(fast_links.Links.route): their lengths agree",
    ("simulator/engine/fast_streams.py", "elif start < now:", "< -> <="):
        "start = now: it adds now - start = 0",
    ("simulator/engine/fast_streams.py",
     "arrivals = [*zip(ats[:k], durs[:k], strict=True), (at, duration),", "True -> False"):
        "a calendar's issue times and durations are kept in step (every insertion, append and "
        "cut touches both): their lengths agree",
    ("simulator/engine/fast_streams.py", "*zip(ats[k:], durs[k:], strict=True)]",
     "True -> False"):
        "a calendar's issue times and durations are kept in step (every insertion, append and "
        "cut touches both): their lengths agree",
    ("simulator/engine/fast_streams.py",
     "served = 0.0  # service each present job has received since the first arrival",
     "0.0 -> 1.0"):
        "served is an offset: every heap entry is served + a job's work, a pop sets served to "
        "the entry, and a finish is now + (entry - served) x jobs: a constant cancels (up to "
        "float rounding)",
    ("simulator/engine/fast_streams.py", "now = arrivals[0][0]", "0 -> 1"):
        "now is set by the first arrival before it is read (the heap is empty then), so its "
        "starting value is never used; a calendar asked for a share holds work, so there are "
        "at least two arrivals",
    ("simulator/engine/fast_streams.py",
     "if nxt <= done:  # an arrival: the present jobs' shares shrink from then on", "<= -> <"):
        "an arrival at the instant a job ends: the ended job has no work left, so taking the "
        "arrival or the end first gives every job the same shares from then on",
    ("simulator/engine/fast_sharing.py", "left, finish = list(nbytes), [0.0] * n",
     "0.0 -> 1.0"): _EVERY_FINISH,
    ("simulator/engine/fast_sharing.py", "t, k = (starts[order[0]] if n else 0.0), 0",
     "0.0 -> 1.0"): _NO_FLOWS,
    ("simulator/engine/fast_sharing.py",
     "join = [s - tolerance * b / c for s, b, c in zip(starts, nbytes, caps, strict=True)]",
     "True -> False"): _ONE_PHASE,
    ("simulator/engine/fast_sharing.py",
     "end = [s + b / c for s, b, c in zip(starts, nbytes, caps, strict=True)]",
     "True -> False"): _ONE_PHASE,
    ("simulator/engine/fast_sharing.py", "if k < n and starts[order[k]] - t < step:",
     "< -> <=", "starts[order[k]] - t < step"): _EQUAL_SAME,
    ("simulator/engine/fast_sharing.py", "finish[i] = t + d if t + d > lone else lone",
     "> -> >="): _EQUAL_SAME,
    ("simulator/engine/fast_sharing.py", "if t > end[i]:", "> -> >="): _EQUAL_SAME,
    ("simulator/engine/fast_sharing.py", "continue", "delete `continue`", "#2"):
        "(shared_finish, a link with one flow) a flow alone on a link ends there at its start + "
        "bytes / line rate, never after its lone time: its cap (a route's lone rate, "
        "fast_links) is at most its links' line rates",
    ("simulator/engine/fast_sharing.py", "t = starts[flows[0]]", "0 -> 1"):
        "t is set to the first arrival before it is read (with no flow present yet, the "
        "virtual time does not advance)",
    ("simulator/engine/fast_sharing.py",
     "v = 0.0  # bytes served to every flow present since the link's first start (virtual)",
     "0.0 -> 1.0"):
        "(stop 65) the virtual time is read only as differences (a departure's tag - v): an "
        "offset common to v and every tag pushed after it cancels, up to rounding",
    ("simulator/engine/fast_sharing.py", "if arrive <= leave:", "<= -> <"):
        "(stop 65) an arrival and a departure at the same instant: taken first, the departure "
        "sets v to its tag and the arrival then adds nothing; taken first, the arrival brings "
        "v to that same tag. The same flows, tags and times either way, up to rounding",
    ("simulator/engine/fast_sharing.py", "if c > 0:", "> -> >="):
        "c = 0: it subtracts 0",
    ("simulator/engine/fast_sharing.py", "if c > 0 and res[link] <= 1e-12 * line[link]:",
     "> -> >="):
        "c = 0: no unfrozen flow crosses the link, so it freezes none",
    **_links_equivalents(),
    **_slots_equivalents(),
    **_fast_equivalents(),
    **_laid_equivalents(),
    **_adaptive_kernel_equivalents(),
    **_kernels_equivalents(),
    **_steps_equivalents(),
    **_rounds_equivalents(),
    **_serving_equivalents(),
    **_loop_equivalents(),
    **_costmodel_equivalents(),
    **_gpu_equivalents(),
    **_basics_equivalents(),
    **_inputs_equivalents(),
    **_records_equivalents(),
    **_workloads_equivalents(),
    **_hardware_equivalents(),
    **_deployment_equivalents(),
    **_pools_equivalents(),
    **_cli_equivalents(),
    **_cli_tools_equivalents(),
    **_topologies_equivalents(),
}


# -- planted bugs ------------------------------------------------------------------------------


def scratch_copy() -> Path:
    """A temporary copy of the tracked and untracked-but-not-ignored files of the work tree."""
    dst = Path(tempfile.mkdtemp(prefix="kvfabric-mut-"))
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    return dst


def run_planted(names: list[str] | None) -> int:
    missed = 0
    for bug in PLANTED:
        if names and not any(n in bug.name for n in names):
            continue
        work = scratch_copy()
        try:
            target = work / bug.path
            text = target.read_text()
            if text.count(bug.old) != 1:
                print(f"STALE    {bug.name}: the text to replace is not in {bug.path} once")
                missed += 1
                continue
            target.write_text(text.replace(bug.old, bug.new))
            env = dict(os.environ, PYTHONPATH=str(work), PYTHONDONTWRITEBYTECODE="1")
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p",
                                  "no:cacheprovider", *bug.tests], cwd=work, env=env,
                                 capture_output=True, text=True)
            took = time.perf_counter() - t0
            failed = [ln.split(" ")[1] for ln in out.stdout.splitlines()
                      if ln.startswith("FAILED ")]
            if out.returncode == 1 and failed:
                print(f"CAUGHT   {bug.name}  ({took:.0f} s) by {', '.join(failed)}")
            else:
                missed += 1
                print(f"MISSED   {bug.name}  (pytest exit {out.returncode})")
                print(out.stdout[-2000:])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if missed else 0


# -- mutants -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    path: str
    line: int
    col: int
    desc: str
    start: int  # offsets into the source text
    end: int
    text: str  # replacement
    func: tuple[str, int]  # (qualname, first line) of the outermost enclosing function
    node: str = ""  # the mutated expression or statement's source, on one line


_BINOPS = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*"),
           ast.FloorDiv: ("//", "/"), ast.Mod: ("%", "*"), ast.Pow: ("**", "*")}
_AUG = {ast.Add: ("+=", "-="), ast.Sub: ("-=", "+="), ast.Mult: ("*=", "/="),
        ast.Div: ("/=", "*="), ast.FloorDiv: ("//=", "/=")}
_CMPS = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
         ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.Is: ("is", "is not"),
         ast.IsNot: ("is not", "is"), ast.In: ("in", "not in"), ast.NotIn: ("not in", "in")}


class _Offsets:
    def __init__(self, source: str) -> None:
        self.starts = [0]
        for ln in source.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(ln))
        self.source = source

    def __call__(self, line: int, col: int) -> int:
        # ast columns are UTF-8 byte offsets
        text = self.source[self.starts[line - 1]:self.starts[line]]
        return self.starts[line - 1] + len(text.encode()[:col].decode())


def _between(off: _Offsets, a: ast.AST, b: ast.AST, token: str) -> tuple[int, int] | None:
    """Offsets of operator ``token`` in the source between nodes ``a`` and ``b``."""
    s, e = off(a.end_lineno, a.end_col_offset), off(b.lineno, b.col_offset)
    seg = off.source[s:e]
    # skip parentheses, whitespace and comments around the operator
    i = seg.find(token)
    while i >= 0:
        before = seg[:i]
        if "#" not in before.splitlines()[-1] if before else True:
            return s + i, s + i + len(token)
        i = seg.find(token, i + 1)
    return None


def mutants(path: str) -> list[Mutant]:
    source = (ROOT / path).read_text()
    tree = ast.parse(source)
    off = _Offsets(source)
    out: list[Mutant] = []
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef
                                | ast.AsyncFunctionDef)
                  and n.body and isinstance(n.body[0], ast.Expr)
                  and isinstance(n.body[0].value, ast.Constant)}

    def visit(node: ast.AST, func: tuple[str, int] | None, qual: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                first = (child.decorator_list[0].lineno if child.decorator_list
                         else child.lineno)  # a decorated function's code starts there
                inner = func or (".".join([*qual, child.name]), first)
                for stmt in child.body:  # the body only: not defaults, decorators, annotations
                    consider(stmt, inner)
                    visit(stmt, inner, [*qual, child.name, "<locals>"])
            elif isinstance(child, ast.ClassDef):
                visit(child, func, [*qual, child.name])
            else:
                if func is not None:
                    consider(child, func)
                visit(child, func, qual)

    def add(node: ast.AST, start: int, end: int, text: str, desc: str, func) -> None:
        seg = " ".join((ast.get_source_segment(source, node) or "").split())
        out.append(Mutant(path, node.lineno, node.col_offset, desc, start, end, text, func, seg))

    def consider(n: ast.AST, func) -> None:
        if isinstance(n, ast.BinOp) and type(n.op) in _BINOPS:
            tok, new = _BINOPS[type(n.op)]
            got = _between(off, n.left, n.right, tok)
            if got:
                add(n, *got, new, f"{tok} -> {new}", func)
        elif isinstance(n, ast.AugAssign) and type(n.op) in _AUG:
            tok, new = _AUG[type(n.op)]
            got = _between(off, n.target, n.value, tok)
            if got:
                add(n, *got, new, f"{tok} -> {new}", func)
            _stmt_delete(n, func)
        elif isinstance(n, ast.Compare):
            left = n.left
            for op, right in zip(n.ops, n.comparators, strict=True):
                if type(op) in _CMPS:
                    tok, new = _CMPS[type(op)]
                    got = _between(off, left, right, tok)
                    if got:
                        add(n, *got, new, f"{tok} -> {new}", func)
                left = right
        elif isinstance(n, ast.BoolOp):
            tok, new = ("and", "or") if isinstance(n.op, ast.And) else ("or", "and")
            got = _between(off, n.values[0], n.values[1], tok)
            if got:
                add(n, *got, new, f"{tok} -> {new}", func)
        elif isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not | ast.USub):
            s = off(n.lineno, n.col_offset)
            e = off(n.operand.lineno, n.operand.col_offset)
            add(n, s, e, "", "not x -> x" if isinstance(n.op, ast.Not) else "-x -> x", func)
        elif isinstance(n, ast.Constant) and id(n) not in docstrings:
            v = n.value
            s, e = off(n.lineno, n.col_offset), off(n.end_lineno, n.end_col_offset)
            if isinstance(v, bool):
                add(n, s, e, str(not v), f"{v} -> {not v}", func)
            elif isinstance(v, int):
                add(n, s, e, f"({v + 1})", f"{v} -> {v + 1}", func)
            elif isinstance(v, float):
                new = 1.0 if v == 0 else 2 * v
                add(n, s, e, f"({new!r})", f"{v!r} -> {new!r}", func)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in (
                "min", "max"):
            new = "max" if n.func.id == "min" else "min"
            s = off(n.func.lineno, n.func.col_offset)
            add(n, s, s + 3, new, f"{n.func.id} -> {new}", func)
        elif isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) or isinstance(n, ast.Assign) and all(isinstance(t, ast.Attribute | ast.Subscript)
                                               for t in n.targets) or isinstance(n, ast.Continue | ast.Break):
            _stmt_delete(n, func)
        elif isinstance(n, ast.Return) and n.value is not None and not (
                isinstance(n.value, ast.Constant) and n.value.value is None):
            s, e = off(n.lineno, n.col_offset), off(n.end_lineno, n.end_col_offset)
            add(n, s, e, "return None" + "\n" * (n.end_lineno - n.lineno), "return X -> None",
                func)

    def _stmt_delete(n: ast.stmt, func) -> None:
        s, e = off(n.lineno, n.col_offset), off(n.end_lineno, n.end_col_offset)
        if source[off.starts[n.lineno - 1]:s].strip():  # not alone on its line (a; b)
            return
        add(n, s, e, "pass" + "\n" * (n.end_lineno - n.lineno),
            f"delete `{ast.get_source_segment(source, n).splitlines()[0][:50]}`", func)

    visit(tree, None, [])
    return sorted(set(out), key=lambda m: (m.line, m.col, m.desc))


# -- running them ------------------------------------------------------------------------------


def _live_functions(path: Path) -> dict[tuple[str, int], list[types.FunctionType]]:
    """The function objects compiled from ``path``, by (qualname, first line)."""
    got: dict[tuple[str, int], list[types.FunctionType]] = {}
    name = str(path)
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and obj.__code__.co_filename == name:
            c = obj.__code__
            got.setdefault((c.co_qualname, c.co_firstlineno), []).append(obj)
    return got


def _code_of(code: types.CodeType, key: tuple[str, int]) -> types.CodeType | None:
    if (code.co_qualname, code.co_firstlineno) == key:
        return code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            got = _code_of(c, key)
            if got is not None:
                return got
    return None


def equivalent_reason(m: Mutant, source: str) -> str | None:
    """Why ``m`` is equivalent, if :data:`EQUIVALENT` lists it: by its line's text and
    description, and where that is not enough, the mutated expression's source or ``#k``, the
    k-th line of the module with that text."""
    lines = [ln.strip() for ln in source.splitlines()]
    line = lines[m.line - 1]
    nth = f"#{lines[: m.line].count(line)}"
    for key in ((m.path, line, m.desc, m.node), (m.path, line, m.desc, nth),
                (m.path, line, m.desc)):
        if key in EQUIVALENT:
            return EQUIVALENT[key]
    return None


def ambiguous_equivalents() -> list[tuple[str, ...]]:
    """Keys of :data:`EQUIVALENT` without a ``#k`` or expression whose line text occurs more
    than once in its module (they would excuse every such line), or not at all (stale)."""
    bad = []
    for key in EQUIVALENT:
        path, line = key[0], key[1]
        text = [ln.strip() for ln in (ROOT / path).read_text().splitlines()]
        if text.count(line) == 0 or (len(key) == 3 and text.count(line) > 1):
            bad.append(key)
    return bad


def _pytest_args(tests: list[str]) -> list[str]:
    return ["-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist", "--no-header",
            "-o", "addopts=", *tests]


class _Coverage:
    """A pytest plugin: which functions of ``files`` each test enters (setup, call and
    teardown), and how long each test takes. A function entered while a test sets up a fixture
    wider than one function is charged to every test that uses that fixture (the others would
    see its result without calling it)."""

    def __init__(self, files: set[str]) -> None:
        self.files = files
        self.current: str | None = None
        self.in_setup = False
        self.hits: dict[str, set[tuple[str, int]]] = {}
        self.setup_hits: dict[str, set[tuple[str, int]]] = {}
        self.shared: dict[str, set[int]] = {}  # nodeid -> ids of its wider fixtures
        self.durations: dict[str, float] = {}
        self.order: list[str] = []

    def _trace(self, frame, event, arg):
        c = frame.f_code
        if event == "call" and c.co_filename in self.files and self.current is not None:
            key = (c.co_qualname, c.co_firstlineno)
            self.hits[self.current].add(key)
            if self.in_setup:
                self.setup_hits[self.current].add(key)
        return None  # no line events

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):  # noqa: ARG002 (a pytest hook)
        self.current = item.nodeid
        self.order.append(item.nodeid)
        self.hits[item.nodeid], self.setup_hits[item.nodeid] = set(), set()
        info = getattr(item, "_fixtureinfo", None)
        self.shared[item.nodeid] = {
            id(d) for defs in (info.name2fixturedefs.values() if info else ())
            for d in defs if getattr(d, "scope", "function") != "function"}
        self.t0 = time.perf_counter()
        sys.settrace(self._trace)
        threading.settrace(self._trace)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item):  # noqa: ARG002
        self.in_setup = True
        try:
            return (yield)
        finally:
            self.in_setup = False

    def pytest_runtest_logfinish(self, nodeid, location):  # noqa: ARG002
        sys.settrace(None)
        threading.settrace(None)
        self.durations[nodeid] = self.durations.get(nodeid, 0.0) + time.perf_counter() - self.t0
        self.current = None

    def covering(self) -> dict[tuple[str, int], list[str]]:
        """Function key → the tests that reach it, fastest first."""
        out: dict[tuple[str, int], set[str]] = {}
        for node, keys in self.hits.items():
            for k in keys:
                out.setdefault(k, set()).add(node)
        for node, keys in self.setup_hits.items():
            wide = self.shared[node]
            if not keys or not wide:
                continue
            sharing = {n for n, s in self.shared.items() if s & wide}
            for k in keys:
                out[k] |= sharing
        return {k: sorted(v, key=lambda n: (self.durations.get(n, 0.0), n))
                for k, v in out.items()}


def _cover(tests: list[str], modules: list[str], devnull: int) -> tuple[dict, dict]:
    """Run ``tests`` once in a child with :class:`_Coverage`: (function key → tests reaching it,
    fastest first; test → seconds). The child hands its answer back through a file."""
    import json

    fd, out = tempfile.mkstemp(suffix=".json", prefix="kvfabric-cover-")
    os.close(fd)

    def collect():
        plugin = _Coverage({str(ROOT / m) for m in modules})
        rc = pytest.main(_pytest_args(tests), plugins=[plugin])
        cov = plugin.covering()
        Path(out).write_text(json.dumps({
            "covering": [[k[0], k[1], v] for k, v in cov.items()],
            "durations": plugin.durations}))
        return rc

    try:
        rc = _in_child(collect, None, devnull)
        if rc != 0:
            raise SystemExit(f"the tests fail while their coverage is recorded (exit {rc})")
        data = json.loads(Path(out).read_text())
    finally:
        Path(out).unlink(missing_ok=True)
    covering = {(q, line): nodes for q, line, nodes in data["covering"]}
    return covering, data["durations"]


def run_group(group: str, timeout: float, show: bool, limit: int | None,
              all_tests: bool = False, progress: bool = False,
              limit_factor: float = 5.0, only: list[str] | None = None,
              lines: tuple[int, int] | None = None, again: set | None = None) -> dict:
    """Mutation score of ``group``'s modules. Each mutant runs only the tests that reach its
    function (recorded once per group, fastest first: a mutant is usually killed by the first);
    one that no test reaches survives without a run. ``all_tests`` runs every test of the group
    for every mutant instead (the slow, assumption-free way). ``only``: just the group's modules
    whose path contains one of these strings (the group's tests all the same); ``lines``: just
    the mutants on lines ``first..last``; ``again``: just the mutants whose (path, line,
    description) is in the set (:func:`survivors_in`) — partial scores, for re-checking
    survivors after new tests."""

    modules, tests = GROUPS[group]
    if only:
        modules = [m for m in modules if any(o in m for o in only)]
        if not modules:
            return {}
    tests = [t for t in tests if (ROOT / t.split("::")[0]).exists()]
    os.environ["HYPOTHESIS_PROFILE"] = "mutation"
    # import everything once (and check the tests pass on the original code)
    t0 = time.perf_counter()
    devnull = os.open(os.devnull, os.O_WRONLY)
    rc = _in_child(lambda: pytest.main(_pytest_args(tests)), None, devnull)
    base_time = time.perf_counter() - t0
    if rc != 0:
        print(f"{group}: the tests fail on the original code (exit {rc}); fix them first")
        return {}
    covering, durations = ({}, {}) if all_tests else _cover(tests, modules, devnull)
    with contextlib.redirect_stdout(io.StringIO()):  # imports the test modules here, once,
        pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                     *tests])  # for every child to share
    for mod in modules:  # and the group's modules, which a test may import only lazily (a
        # module first imported in a child would run its own, unmutated functions)
        importlib.import_module(mod.removesuffix(".py").replace("/", "."))
    results = {}
    for mod in modules:
        path = ROOT / mod
        live = _live_functions(path)
        source = path.read_text()
        ms = mutants(mod)
        if lines:
            ms = [m for m in ms if lines[0] <= m.line <= lines[1]]
        if again is not None:
            ms = [m for m in ms if (m.path, m.line, m.desc) in again]
        if limit:
            ms = ms[:limit]
        killed, survived, equivalent, skipped, unreached = 0, [], [], 0, 0
        for m in ms:
            why = equivalent_reason(m, source)
            if why is not None:
                equivalent.append((m, why))
                continue
            new_src = source[:m.start] + m.text + source[m.end:]
            try:
                code = compile(new_src, str(path), "exec")
            except SyntaxError:
                skipped += 1
                continue
            new = _code_of(code, m.func)
            targets = live.get(m.func)
            if new is None or not targets:
                skipped += 1  # never imported / not a live function (e.g. an unused closure)
                continue
            if all_tests:
                chosen, limit_s = tests, max(timeout, limit_factor * base_time)
            else:
                chosen = covering.get(m.func, [])
                if not chosen:  # no test reaches it: nothing can kill it
                    survived.append(m)
                    unreached += 1
                    if progress:
                        print(f"  unreached {m.path}:{m.line} {m.desc}", flush=True)
                    continue
                limit_s = max(timeout, limit_factor * sum(durations.get(n, 0.0)
                                                          for n in chosen) + 10)

            def apply(targets=targets, new=new, chosen=chosen):
                for f in targets:
                    f.__code__ = new
                return pytest.main(_pytest_args(chosen))

            t_m = time.perf_counter()
            rc = _in_child(apply, limit_s, devnull)
            if rc == 0:
                survived.append(m)
            else:
                killed += 1
            if progress:
                print(f"  {'survived' if rc == 0 else 'killed  '} {m.path}:{m.line} {m.desc} "
                      f"({len(chosen)} tests, {time.perf_counter() - t_m:.1f} s)", flush=True)
        total = killed + len(survived)
        score = killed / total if total else 1.0
        results[mod] = (score, killed, survived, equivalent, skipped)
        print(f"{mod:40s} {score:6.1%}  killed {killed}/{total}  equivalent {len(equivalent)}"
              f"  not run {skipped}  reached by no test {unreached}", flush=True)
        if show:
            for m in survived:
                line = source.splitlines()[m.line - 1].strip()
                print(f"    survived {m.path}:{m.line}  {m.desc:30s} | {line[:70]}")
            for m, why in equivalent:
                print(f"    equivalent {m.path}:{m.line}  {m.desc}: {why}")
    return results


def survivors_in(log: str) -> set[tuple[str, int, str]]:
    """(path, line, description) of every mutant a ``score --progress`` log says survived or
    no test reached (line numbers: the source must be unchanged since that run)."""
    import re

    pat = re.compile(r"^  (?:survived|unreached) (\S+?):(\d+) (.*?)(?: \(\d+ tests, [\d.]+ s\))?$")
    out = set()
    for ln in Path(log).read_text().splitlines():
        m = pat.match(ln)
        if m:
            out.add((m.group(1), int(m.group(2)), m.group(3)))
    return out


def _in_child(fn, timeout: float | None, devnull: int) -> int:
    """Run ``fn`` in a forked child (stdout/stderr to /dev/null); its exit code, or -1 on a
    timeout (the child is killed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        rc = 3
        try:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            rc = int(fn())
        finally:
            os._exit(rc)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if deadline is not None and time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -1
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("planted", help="apply each planted bug in a scratch copy; caught?")
    p.add_argument("names", nargs="*", help="only bugs whose name contains one of these")
    s = sub.add_parser("score", help="mutation score per core module")
    s.add_argument("groups", nargs="*", help=f"groups (default all): {', '.join(GROUPS)}")
    s.add_argument("--timeout", type=float, default=60.0,
                   help="seconds a mutant's tests may run at least")
    s.add_argument("--limit-factor", type=float, default=5.0,
                   help="a mutant's tests may run this many times their clean run (+ 10 s) "
                        "before it counts as killed (hanging)")
    s.add_argument("--show-survivors", action="store_true")
    s.add_argument("--limit", type=int, help="first N mutants per module (a quick look)")
    s.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    s.add_argument("--progress", action="store_true", help="a line per mutant as it is run")
    s.add_argument("--equivalents", action="store_true",
                   help="print the listed equivalent mutants as a Markdown table, run nothing")
    s.add_argument("--all-tests", action="store_true",
                   help="run every test of the group for every mutant (slow), not only the "
                        "tests that reach the mutated function")
    s.add_argument("--module", action="append", metavar="TEXT",
                   help="only the groups' modules whose path contains TEXT (repeatable; "
                        "e.g. --module executor.py): a slow group's modules one at a time")
    s.add_argument("--lines", metavar="FIRST-LAST",
                   help="only the mutants on these lines (a partial score: re-checks the "
                        "survivors of a region after new tests)")
    s.add_argument("--survivors-of", metavar="LOG",
                   help="only the mutants that LOG (the output of an earlier `score "
                        "--progress` on the same source) says survived or were reached by no "
                        "test: re-checks them after new tests")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    if a.cmd == "planted":
        return run_planted(a.names)
    lines = None
    if a.lines:
        try:
            first, _, last = a.lines.partition("-")
            lines = (int(first), int(last or first))
        except ValueError:
            ap.error(f"--lines {a.lines!r}: give FIRST-LAST, e.g. 120-180")
    groups = a.groups or list(GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        ap.error(f"unknown group {unknown[0]!r}: give some of {', '.join(GROUPS)}")
    if a.cmd == "score" and any(m in COMPILED for g in groups for m in GROUPS[g][0]
                                if not a.module or any(o in m for o in a.module)):
        # a mutant replaces a function's code: numba's kernels must run as that code (before
        # numba is first imported, which reads this)
        os.environ["NUMBA_DISABLE_JIT"] = "1"
    if a.equivalents:
        print("| module | line | mutation | why no test can tell |\n|---|---|---|---|")
        for key, why in EQUIVALENT.items():
            path, line, desc = key[:3]
            where = f"`` {line} ``" + (f" (`` {key[3]} ``)" if len(key) > 3 else "")
            print(f"| `{path}` | {where} | `` {desc} `` | {why} |")
        return 0
    if a.list:
        for g in groups:
            for mod in GROUPS[g][0]:
                if a.module and not any(o in mod for o in a.module):
                    continue
                ms = [m for m in mutants(mod) if not lines or lines[0] <= m.line <= lines[1]]
                print(f"{mod}: {len(ms)} mutants")
        return 0
    for key in ambiguous_equivalents():
        print(f"warning: EQUIVALENT key matches no line or several: {key}")
    rows = []
    for g in groups:
        res = run_group(g, a.timeout, a.show_survivors, a.limit, a.all_tests, a.progress,
                        a.limit_factor, a.module, lines,
                        survivors_in(a.survivors_of) if a.survivors_of else None)
        rows += [(mod, *v) for mod, v in res.items()]
    print("\nmodule                                    score  killed/total  equivalent")
    low = 0
    for mod, score, killed, survived, equivalent, _ in rows:
        print(f"{mod:40s} {score:6.1%}  {killed:5d}/{killed + len(survived):<5d}  "
              f"{len(equivalent):5d}")
        low += score < 0.85
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
