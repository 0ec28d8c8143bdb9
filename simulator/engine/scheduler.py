"""The serving loop's batch former, shared by every engine: chunked prefill like vLLM v1 and SGLang.

One :class:`Scheduler` serves one instance — a GPU of the decode-loop engine, a tensor-parallel
replica of the homogeneous baseline, a Lamina micro-batch. It never sees the clock and schedules no
event (as BLIS's ``FormBatch`` and Vidur's ``_get_next_batch``): :meth:`Scheduler.step` takes the
waiting queue and returns the next step's :class:`StepPlan`; the engine times the step and calls
:meth:`Scheduler.finish` for requests that generated their last token.

A step, in this order (the ``[serving]`` scenario section, :class:`ServingSpec`, sets the caps):

1. **Decodes first.** Every running request past its prefill generates one token, in admission
   order. Each needs room for that token's KV (:meth:`KVPool.grow`); when the pool is full the
   most recently admitted request not yet scheduled in this step is **preempted by recompute**
   (its KV released, pushed back to the front of the queue; vLLM's default since v0.x and its v1
   scheduler's rule), and if no other is left, the request itself is.
2. **Prefill chunks of running requests**, in admission order, while the step's token budget
   (``max_num_batched_tokens``, decode tokens counted) lasts: a request computes
   ``min(tokens left, budget left)`` of its prompt (with ``chunked_prefill = false``, a whole
   prompt or nothing; the budget then only caps the prompts started in one step).
3. **New requests** from the queue, first come first served — only in a step that preempted no
   one (vLLM v1's scheduler takes from its waiting queue ``if not preempted_reqs``) — while the
   budget lasts, fewer than ``max_num_seqs`` run and the pool admits them (:meth:`KVPool.admit`:
   a request that cannot fit even alone is *rejected*; one that does not fit now waits, and so
   does everyone behind it).
   A request with nothing to compute (its KV arrived computed: a prefill→decode hand-off,
   ``external_prefill``; a prompt held in full still computes its last block,
   :func:`simulator.engine.reuse.plan`) takes one token of the budget: its next token comes
   with this step, and it decodes in the next.

A request whose last prompt chunk is in a step gets its first token at the step's end
(``prompt_done``); a preempted request recomputes its prompt and the tokens it had generated
(under prefix reuse mostly cache hits, as vLLM v1's prefix cache gives them) and its next token
comes at the end of that recompute. Which requests decode, how many tokens each prompt chunk has,
who was admitted, preempted or rejected: everything an engine needs to time the step.

KV is counted by a :class:`KVPool` of the engine's own (blocks per GPU in the decode-loop engine,
bytes in the pool loops), with ``kv_allocation = "on_demand"`` (grow as tokens are computed:
preemption when it runs out) or ``"reserve"`` (a request's whole prompt + output at admission:
never preempts — the rule kvfabric used before this serving loop).

The per-step host overhead (``step_overhead_time``: scheduling, input preparation and output
processing on the CPU, between one step's kernels and the next) defaults to figures from vLLM's
public record; see :func:`default_step_overhead_time`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from simulator.errors import section_errors
from simulator.units import ms

KV_ALLOCATIONS: tuple[str, ...] = ("on_demand", "reserve")

#: Per-step host time with CUDA graphs [s]: vLLM PR #46112 measured one of the per-step CPU
#: phases of the v1 scheduler (``update_from_output``) alone at 0.13–0.29 ms for 128–256 decoding
#: requests on an RTX 5090 host; input preparation and scheduling add to it. Assumed: 0.3 ms per
#: step in all (docs/accuracy.md lists it among the assumptions).
STEP_OVERHEAD_GRAPHS = ms(0.3)
#: Per-step host time in eager mode [s]: vLLM issue #6854 (multi-step scheduling RFC, v0.5) shows
#: "about 4 ms of GPU bubble" per decode step waiting on the CPU; its per-kernel launch cost comes
#: on top (the kernel profiles' eager launch figures).
STEP_OVERHEAD_EAGER = ms(4.0)


def default_step_overhead_time(cuda_graphs: bool) -> float:
    """The per-step host overhead [s] a deployment pays by default (see the module constants)."""
    return STEP_OVERHEAD_GRAPHS if cuda_graphs else STEP_OVERHEAD_EAGER


@dataclass(frozen=True)
class ServingSpec:
    """The ``[serving]`` scenario section: the serving loop's caps and overheads.

    Attributes:
        max_num_batched_tokens: tokens one step may compute (decode tokens + prefill chunks);
            vLLM's and the issue's default 8,192.
        max_num_seqs: requests running at once on one instance; None = ``[engine] max_batch``.
        chunked_prefill: cut prompts into chunks under the budget (vLLM v1, SGLang); false runs
            whole prompts before the step's decodes (kvfabric's earlier loop).
        kv_allocation: ``"on_demand"`` (grow per token, preempt by recompute when full) or
            ``"reserve"`` (whole prompt + output reserved at admission; no preemption).
        cuda_graphs: the deployment replays CUDA graphs for decode (sets the default overhead).
        step_overhead_time: host time per step [s]; None = :func:`default_step_overhead_time`.
    """

    max_num_batched_tokens: int = 8192
    max_num_seqs: int | None = None
    chunked_prefill: bool = True
    kv_allocation: str = "on_demand"
    cuda_graphs: bool = True
    step_overhead_time: float | None = None

    def overhead_time(self) -> float:
        """The per-step host overhead [s] (given, or the default for ``cuda_graphs``)."""
        if self.step_overhead_time is not None:
            return self.step_overhead_time
        return default_step_overhead_time(self.cuda_graphs)

    def seqs(self, max_batch: int) -> int:
        """``max_num_seqs``, or ``max_batch`` (``[engine]``) when not given."""
        return self.max_num_seqs if self.max_num_seqs is not None else max_batch


#: The serving loop kvfabric ran before chunked prefill: whole prompts, whole reservations, no
#: host overhead (for comparisons with earlier results).
LEGACY = ServingSpec(max_num_batched_tokens=2**62, chunked_prefill=False,
                     kv_allocation="reserve", step_overhead_time=0.0)


def validate_serving(raw: Mapping[str, Any] | None, source: str = "<dict>") -> ServingSpec:
    """A :class:`ServingSpec` from the raw ``[serving]`` table (None = defaults); a
    :class:`UserError` ``"{source}: field 'serving.x': …"`` for anything wrong."""
    if raw is None:
        return ServingSpec()
    fail = section_errors(raw, "serving", source)

    known = ("max_num_batched_tokens", "max_num_seqs", "chunked_prefill", "kv_allocation",
             "cuda_graphs", "step_overhead_time")
    for key in sorted(raw):
        if key not in known:
            raise fail(key, f"unknown field; known fields: {', '.join(known)}")
    vals: dict[str, Any] = {}
    for key in ("max_num_batched_tokens", "max_num_seqs"):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise fail(key, f"expected an integer >= 1, got {v!r}")
            vals[key] = v
    for key in ("chunked_prefill", "cuda_graphs"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise fail(key, f"expected true/false, got {raw[key]!r}")
            vals[key] = raw[key]
    if "kv_allocation" in raw:
        if raw["kv_allocation"] not in KV_ALLOCATIONS:
            raise fail("kv_allocation", f"{raw['kv_allocation']!r} is not one of "
                       f"{', '.join(KV_ALLOCATIONS)}")
        vals["kv_allocation"] = raw["kv_allocation"]
    if "step_overhead_time" in raw:
        v = raw["step_overhead_time"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1:
            raise fail("step_overhead_time", f"expected seconds in [0, 1), got {v!r}")
        vals["step_overhead_time"] = float(v)
    return ServingSpec(**vals)


class KVPool(Protocol):
    """An instance's KV memory, as the scheduler asks about it (the engine's own accounting)."""

    def admit(self, r: int) -> int | None:
        """Start request ``r``: take what its start needs (cached or reserved KV) and return the
        prompt tokens it must compute (>= 0); -1 if it does not fit now; None if it can never
        fit, even alone (it is rejected)."""

    def grow(self, r: int, tokens: int) -> bool:
        """Room for ``tokens`` more computed tokens of ``r``? Takes it if so."""

    def release(self, r: int) -> None:
        """``r`` stops running (finished or preempted): give back what it holds."""

    # optional: ``grow_each(rs) -> int`` — :meth:`grow` by one token for each of ``rs`` in
    # order, stopping at the first that does not fit; returns how many grew (a pool that can do
    # this without a call per request offers it; the scheduler falls back to :meth:`grow`)


@dataclass(slots=True)
class StepPlan:
    """One step, as the scheduler formed it (request rows of the engine's trace).

    Attributes:
        decode: requests generating one token.
        chunks: ``(request, prompt tokens computed)`` — prefill chunks, in order.
        prompt_done: requests whose last prompt chunk is in this step (first, or after a
            preemption next, token at the step's end).
        admitted: requests taken from the queue in this step.
        preempted: requests pushed back to the queue (their KV released).
        rejected: requests dropped because they can never fit.
    """

    decode: list[int] = field(default_factory=list)
    chunks: list[tuple[int, int]] = field(default_factory=list)
    prompt_done: list[int] = field(default_factory=list)
    admitted: list[int] = field(default_factory=list)
    preempted: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        """Tokens computed in the step: decode tokens + prefill chunk tokens."""
        return len(self.decode) + self.prefill_tokens

    @property
    def prefill_tokens(self) -> int:
        """Prompt tokens computed in the step."""
        return sum(c for _, c in self.chunks) if self.chunks else 0

    def __bool__(self) -> bool:
        return bool(self.decode or self.chunks)


class Scheduler:
    """Forms the steps of one serving instance (see the module docstring).

    Args:
        spec: the serving caps.
        kv: the instance's KV pool.
        max_num_seqs: requests running at once.
    """

    def __init__(self, spec: ServingSpec, kv: KVPool, max_num_seqs: int) -> None:
        self.spec = spec
        self.kv = kv
        self.max_num_seqs = max_num_seqs
        # admission order; changed in place, never rebound (Admission keeps a reference)
        self.running: list[int] = []
        self.prefill_left: dict[int, int] = {}  # running requests still computing their prompt
        self.preemptions = 0
        self._recorded = 0  # preemptions a step's record has counted (take_preempted)

    def __len__(self) -> int:
        return len(self.running)

    def step(self, waiting: deque[int], seq_limit: int | None = None) -> StepPlan:
        """The next step's plan; takes admitted requests off ``waiting`` and puts preempted ones
        back at its front. ``seq_limit`` lowers ``max_num_seqs`` for this step."""
        plan = StepPlan()
        budget = self.spec.max_num_batched_tokens
        cap = self.max_num_seqs if seq_limit is None else min(seq_limit, self.max_num_seqs)
        scheduled: set[int] = set()
        # 1. decodes first (admission order); preempt the newest unscheduled when KV runs out
        i = 0
        grow_each = getattr(self.kv, "grow_each", None)
        if grow_each is not None:  # the decodes that fit, at once; from the first that does
            # not, one by one as below
            left = self.prefill_left
            dec = [r for r in self.running if r not in left] if left else self.running
            k = grow_each(dec)
            if k == len(dec) and not left and not waiting:  # the usual step: every request
                # decodes and none computes a prompt or waits — steps 2 and 3 would do nothing
                plan.decode.extend(dec)
                return plan
            plan.decode.extend(dec[:k])
            scheduled.update(dec[:k])
            budget -= k
            i = self.running.index(dec[k]) if k < len(dec) else len(self.running)
        while i < len(self.running):
            r = self.running[i]
            if r in self.prefill_left:
                i += 1
                continue
            while not self.kv.grow(r, 1):
                victim = next((x for x in reversed(self.running) if x not in scheduled), None)
                self._preempt(victim, waiting, plan)
                if victim == r:
                    break
            else:
                plan.decode.append(r)
                scheduled.add(r)
                budget -= 1
                i += 1
                continue
            # r itself was preempted: the request now at index i is the next one
        # 2. prefill chunks of running requests, in admission order (KV full: preempt as above)
        for r in list(self.running) if self.prefill_left else ():
            left = self.prefill_left.get(r)
            if left is None or r in scheduled or r not in self.running or budget <= 0:
                continue
            take = self._take(left, budget, plan)
            if take <= 0:
                continue
            while not self.kv.grow(r, take):
                victim = next((x for x in reversed(self.running) if x not in scheduled), None)
                self._preempt(victim, waiting, plan)
                if victim == r:
                    break
            else:
                self._chunk(r, take, plan)
                scheduled.add(r)
                budget -= take
        # 3. new requests, first come first served — none in a step that preempted (vLLM v1's
        # scheduler admits from its waiting queue only `if not preempted_reqs`: a request just
        # preempted is not taken back at once, nor another let into the KV it freed)
        while waiting and budget > 0 and len(self.running) < cap and not plan.preempted:
            r = waiting[0]
            need = self.kv.admit(r)
            if need is None:
                waiting.popleft()
                plan.rejected.append(r)
                continue
            if need < 0:
                break
            take = self._take(need, budget, plan)
            if need > 0 and (take == 0 or not self.kv.grow(r, take)):
                self.kv.release(r)  # its first chunk does not fit now: it waits
                break
            waiting.popleft()
            self.running.append(r)
            plan.admitted.append(r)
            scheduled.add(r)
            if need == 0:  # everything cached: its next token comes with this step, one
                # token of the budget (else admissions could outgrow the budget, whose decodes
                # would all run in the next step)
                plan.prompt_done.append(r)
                budget -= 1
                continue
            self.prefill_left[r] = need
            if take > 0:
                self._chunk(r, take, plan)
                budget -= take
        return plan

    def _take(self, left: int, budget: int, plan: StepPlan) -> int:
        """Prompt tokens a request computes this step: a chunk under the budget, or (without
        chunked prefill) its whole prompt if it fits the budget or is the step's first."""
        if self.spec.chunked_prefill:
            return min(left, budget)
        return left if left <= budget or not plan.chunks else 0

    def _chunk(self, r: int, take: int, plan: StepPlan) -> None:
        plan.chunks.append((r, take))
        left = self.prefill_left[r] - take
        if left > 0:
            self.prefill_left[r] = left
        else:
            del self.prefill_left[r]
            plan.prompt_done.append(r)

    def _preempt(self, r: int | None, waiting: deque[int], plan: StepPlan) -> None:
        if r is None:  # pragma: no cover - the requesting decode itself is always a candidate
            raise RuntimeError("scheduler: no request to preempt")
        self.running.remove(r)
        self.prefill_left.pop(r, None)
        self.kv.release(r)
        waiting.appendleft(r)
        plan.preempted.append(r)
        self.preemptions += 1

    def take_preempted(self) -> int:
        """Preemptions since the last call: what the step being recorded counts. A plan that
        only preempted runs nothing and has no record, so its preemptions join the next."""
        n = self.preemptions - self._recorded
        self._recorded = self.preemptions
        return n

    def detach(self, r: int) -> None:
        """Request ``r`` leaves this instance but keeps its KV until ``kv.release(r)`` (a
        prefill instance handing it to a decode instance)."""
        self.running.remove(r)
        self.prefill_left.pop(r, None)

    def finish(self, r: int) -> None:
        """Request ``r`` generated its last token: it leaves and gives back its KV."""
        self.running.remove(r)
        self.prefill_left.pop(r, None)
        self.kv.release(r)
