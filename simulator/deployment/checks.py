"""Does a ``[deployment]`` fit the model it serves and the topology it runs on?

:func:`validate_deployment` (:mod:`simulator.deployment.spec`) checks the section alone, field by
field. What needs the model and the topology is :func:`check_against`'s, run before the first
event: the model's layers and experts (dense layers, one popularity weight per expert and enough
of them > 0, experts that spread evenly over the EP ranks), enough GPUs of each kind for the
pools, a layout the pools fit — laid out as the engine will
(:func:`~simulator.deployment.layout.take_gpus`), so a prefill pool of any kind that would take
the GPUs the decode pool's kind needs is refused —, and the weights on each kind of GPU a pool
is laid on (:func:`~simulator.deployment.weights.weights_per_gpu`), which must leave room for
one KV block where the caller gives its size. Every error is one
:class:`~simulator.errors.UserError` ``"file: field 'deployment.x': …"`` naming the fix.
"""

from __future__ import annotations

from simulator import hardware
from simulator.deployment.layout import PoolsDoNotFit, take_gpus
from simulator.deployment.spec import DeploymentSpec
from simulator.deployment.weights import weights_per_gpu
from simulator.errors import UserError


def room_block_bytes(placement, arch) -> float:
    """The KV block [B] each pool's GPUs must have room for after their own weights
    (:func:`check_against`'s ``block_bytes``): one block of ``placement.block_tokens`` over every
    layer — or 0 where ``placement.weights_per_gpu`` is set, since the engine then counts every
    GPU's room with that figure instead (checked with the rest of the placement)."""
    if placement.weights_per_gpu is not None:
        return 0.0
    return placement.block_tokens * arch.kv_bytes_per_token * arch.layers


def check_against(spec: DeploymentSpec, arch, gpu_kinds: list[str],
                  source: str = "<dict>", reserve_fraction: float = 0.1, *,
                  block_bytes: float = 0.0) -> None:
    """Checks that need the model and the topology; a :class:`UserError` naming the field.

    Args:
        spec: the validated section.
        arch: the :class:`~simulator.models.Architecture` served.
        gpu_kinds: catalog kind of every topology GPU, in topology order.
        source: the scenario file, for messages.
        reserve_fraction: share of each GPU's HBM kept free (``placement.reserve_fraction``).
        block_bytes: one KV block's bytes over every layer [B]; each pool's GPUs must have room
            for one after their weights and the reserve (0: only that the weights fit).
    """
    def fail(key: str, msg: str) -> UserError:
        return UserError(f"{source}: field 'deployment.{key}': {msg}")

    experts = int(arch.experts)
    if spec.dense_layers is not None and spec.dense_layers >= arch.layers:
        raise fail("dense_layers", f"{spec.dense_layers} leaves no MoE layer of the model's "
                   f"{arch.layers}; give fewer than {arch.layers}")
    if isinstance(spec.popularity, tuple) and len(spec.popularity) != experts:
        raise fail("popularity", f"{len(spec.popularity)} weights for model {arch.name!r}'s "
                   f"{experts} experts; give one weight per expert")
    if isinstance(spec.popularity, tuple) and experts:
        k, hot = int(arch.experts_per_token), sum(w > 0 for w in spec.popularity)
        if hot < k:  # a token picks k distinct experts of weight > 0: fewer never end
            raise fail("popularity", f"{hot} weights > 0, but each token of {arch.name!r} "
                       f"picks {k} distinct experts; give at least {k} experts a weight > 0")
    need: dict[str, int] = {}
    for name, pool in spec.pools():
        prefix = "" if name == "decode" else "prefill."
        if pool.attention_tp > 1:
            raise fail(prefix + "attention_tp", f"{pool.attention_tp}: tensor-parallel attention "
                       "is not simulated by the engine yet (each attention rank is one GPU); "
                       "use attention_tp = 1")
        if not experts:
            for key in ("experts_per_rank", "redundant_experts"):
                if getattr(pool, key):
                    raise fail(prefix + key, f"model {arch.name!r} has no experts; remove it")
        else:
            ep, total = pool.ep_degree, experts + pool.redundant_experts
            per = pool.experts_per_rank
            if per is None and total % ep:
                raise fail(prefix + "redundant_experts",
                           f"{experts} experts + {pool.redundant_experts} redundant do not "
                           f"spread evenly over ep = {ep} ranks; give redundant_experts so "
                           f"that the sum is a multiple of {ep} (e.g. "
                           f"{-(-total // ep) * ep - experts})")
            if per is not None and per * ep != total:
                raise fail(prefix + "experts_per_rank",
                           f"{per} × ep {ep} = {per * ep} slots, but the model's {experts} "
                           f"experts + {pool.redundant_experts} redundant need {total}; "
                           f"set experts_per_rank = {total / ep:g} or change redundant_experts")
            if pool.redundant_experts > experts * (ep - 1):
                raise fail(prefix + "redundant_experts", "more replicas than ranks to hold them")
        kind = (pool.gpu or "").upper()
        need[kind] = need.get(kind, 0) + pool.gpus
    upper = [k.upper() for k in gpu_kinds]
    for name, pool in spec.pools():
        prefix = "" if name == "decode" else "prefill."
        kind = (pool.gpu or "").upper()
        have = upper.count(kind) if kind else len(upper)
        if need[kind] > have or (not kind and sum(need.values()) > len(upper)):
            what = f"{kind} GPUs" if kind else "GPUs"
            raise fail(prefix + "instances",
                       f"the pools need {need[kind] if kind else sum(need.values())} {what}, "
                       f"the topology has {have}; lower instances or attention_dp, or use a "
                       "larger topology")
    # enough GPUs of each kind, and yet a prefill pool of any kind, laid out first, may take
    # those the decode pool's kind needs: lay the pools out as the engine will
    try:
        taken = take_gpus(spec, gpu_kinds)
    except PoolsDoNotFit as exc:  # only a prefill pool of any kind leaves a kind short
        kind = spec.decode.gpu
        n_kind = upper[: spec.prefill.gpus].count(str(kind).upper())
        raise fail("prefill.gpu", f"the prefill pool (of any kind) takes the topology's first "
                   f"{spec.prefill.gpus} GPUs, {n_kind} of them {kind}s, and leaves the decode "
                   f"pool {exc.free} of the {exc.need} {kind} GPUs it needs; give the prefill "
                   f"pool a GPU kind (gpu = \"...\") or list the {kind}s last in the "
                   "topology") from None
    for name, pool in spec.pools():  # the weights on each kind of GPU the pool is laid on
        prefix = "" if name == "decode" else "prefill."
        weights = weights_per_gpu(arch, pool, spec.dense_layers)
        for kind in sorted({gpu_kinds[g] for g in taken[name]}):
            usable = hardware.gpu(kind).hbm_bytes * (1 - reserve_fraction)
            # room for no KV block (the engine's rule, kvcache.capacity_blocks) or none at all
            if weights < usable and usable - weights >= block_bytes:
                continue
            of = f"a {kind}'s {usable / 1e9:.1f} GB usable"
            if weights >= usable:
                fits, too, also = f"more than {of}", f"does not fit {of}", ""
            else:
                fits = too = (f"leaves less than one KV block ({block_bytes / 1e6:.3g} MB) of "
                              f"{of} (reserve {reserve_fraction:.0%})")
                fits, also = f"which {fits}", " or lower placement.reserve_fraction"
            if not arch.experts:
                raise fail(prefix + "attention_tp", f"model {arch.name!r} "
                           f"({weights / 1e9:.1f} GB) {too}, and tensor-parallel ranks are not "
                           f"simulated yet; use a smaller model{also} or leave out [deployment]")
            raise fail(prefix + "attention_dp", f"each GPU would hold {weights / 1e9:.1f} "
                       f"GB of {arch.name!r}'s weights (its routed experts and the rest), "
                       f"{fits}; spread the experts over more GPUs (raise "
                       f"{prefix}attention_dp){also}")
