"""One GPU's serving loop: continuous batching, step after step, on either engine.

:func:`gpu_loop` is the SimPy process a run starts per GPU (without a ``[deployment]``, whose
instances step together in :class:`~simulator.engine.instance_loop.InstanceLoop` instead). Each
iteration it

1. asks the GPU's :class:`~simulator.engine.scheduler.Scheduler` for a plan — admissions,
   rejections, preemptions, prefill chunks, decodes — and tells the run's
   :class:`~simulator.engine.admission.Admission` what it decided; with nothing to run it sleeps
   until woken (an arrival, or a request finishing elsewhere);
2. runs the prefill: whole prompts before the step's decodes (the loop without chunked prefill),
   or chunks fused into the decode step (their projections + FFN and attention added to each
   layer's, :func:`chunk_work`) — a prefill-only step layer slot by slot (the run's
   ``_prefill_layers``);
3. runs the decode step — the run's ``_decode``, the one thing the engines do differently
   (:mod:`simulator.engine.exact` replays it event by event, :mod:`simulator.engine.fast`
   composes it at once) — with one layer's projections + FFN and the DSA indexer's pass from the
   run's :class:`~simulator.engine.stepcosts.StepCosts`;
4. grows the decoded requests' contexts, retires the finished ones, and records the iteration.

The loop reads the run's parts and calls its two step methods; it holds no state of its own
beyond the iteration count, so both engines' runs share it unchanged.
"""

from __future__ import annotations


def gpu_loop(run, g: int):
    """GPU ``g``'s serving loop for ``run`` (a SimPy process; see the module docstring): one
    iteration per step until the run's clock stops."""
    env = run.env
    costs = run.costs
    req = run.req
    sched = req.sched[g]
    queue, wake = req.queue[g], req.wake
    gen, out = req.gen, req.out
    stream = run.streams[g]
    chunked = run.serving.chunked_prefill
    overhead = run.serving.overhead_time()
    iteration = 0
    while True:
        if not queue and not sched.running:
            if run.observed is not None:
                run.observed.idle(g)
            wake[g] = env.event()
            yield wake[g]
            wake[g] = None
            continue
        started = env.now
        plan = sched.step(queue)
        for r in plan.rejected:
            req.reject(r)
        for r in plan.admitted:
            req.admitted(r)
        if not plan and not plan.prompt_done:
            if plan.rejected or plan.preempted:
                # only rejections or preemptions happened: nothing ran, and the loop plans again
                # at once — the preemptions join the next step's row (the same instant). (A
                # request that fits alone never preempts itself, so a plan that preempted has
                # run another request, unless a KV pool holds more than its running requests)
                continue
            # nothing fits until a running request finishes elsewhere in time: wait for one
            wake[g] = env.event()
            yield wake[g]
            wake[g] = None
            continue
        prefill_time = 0.0
        na_layer = None
        at = started + overhead
        # prompts done in the step that had produced a token before (recomputes after a
        # preemption): each gives its next token in this step, a TBT sample as a decode's
        recomputed = sum(1 for r in plan.prompt_done if gen[r] > 0)
        if not chunked:  # whole prompts first, then the step's decodes (the earlier loop)
            if plan.chunks or plan.prompt_done:
                if overhead:
                    yield env.timeout(overhead)
                yield stream.run(sum(req.prefill_plan(g, r, c) for r, c in plan.chunks))
                prefill_time = env.now - started
                at = env.now
                for r in plan.prompt_done:
                    req.prompt_done(g, r)
        elif plan.chunks:
            work, extra = chunk_work(run, g, sched, plan)
            samples = len(plan.decode) + len(plan.prompt_done)  # rows the LM head computes
            if plan.decode:
                na_layer = costs.na(g, len(plan.decode) + plan.prefill_tokens, samples,
                                   len(plan.decode)) + extra
                prefill_time = work
            else:  # a prefill-only step: layer slot by slot, as a decode step's
                if overhead:
                    yield env.timeout(overhead)
                yield from run._prefill_layers(g, costs.na(g, plan.prefill_tokens, samples, 0)
                                               + extra)
                prefill_time = env.now - started
                at = env.now
        decoding = plan.decode
        if decoding:
            if na_layer is None:
                na_layer = costs.na(g, len(decoding))
            na_layer += costs.indexer(g, decoding)
            yield from run._decode(g, decoding, iteration, na_layer, at)
            for r in decoding:
                gen[r] += 1
                req.grow_context(g, r)
        elif at > env.now:
            yield env.timeout(at - env.now)
        if chunked:
            for r in plan.prompt_done:
                req.prompt_done(g, r)
        for r in [r for r in sched.running if gen[r] >= out[r]]:
            req.retire(g, r)
        if run.check_invariants:
            run.dir.check()
        run.iters.append((g, iteration, started, env.now, len(decoding), prefill_time,
                          len(decoding) + recomputed, plan.prefill_tokens,
                          sched.take_preempted()))
        iteration += 1
        run.rounds.maybe_pack()
        run.iters.maybe_pack()
        run.fabric.spill_records()


def chunk_work(run, g: int, sched, plan) -> tuple[float, float]:
    """(the prefill chunks' share of the step [s], their attention per layer [s]): each chunk
    attends its own tokens and the context computed (or reused) before it."""
    req, costs = run.req, run.costs
    spec, L = run.gpus[g].spec, run.arch.layers
    attn = 0.0
    for r, c in plan.chunks:
        before = sched.prefill_left.get(r, 0) + c  # tokens left before this chunk
        cached = int(req.inp[r]) + int(req.gen[r]) - before
        attn += run.kernels.prefill_attention_time(spec, run.arch, c, max(cached, 0))
        attn += req.take_rotary(g, r)  # the span blocks' rotary pass, with the first chunk
    B = len(plan.decode)
    samples = B + len(plan.prompt_done)
    work = (costs.na(g, B + plan.prefill_tokens, samples, B) - costs.na(g, B)) * L + attn
    return work, attn / L
