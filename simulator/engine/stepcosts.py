"""What a step's kernels and rounds cost, memoized: the lookups both engines make per step.

:class:`StepCosts` is a part the engine's run holds (``run.costs``, built by
:class:`simulator.engine.exact._Run`). A decode step asks the same few questions many times — one
layer's projections + FFN for a batch, the DSA indexer's pass over a context, a home's attention
over its local blocks, a round's closed-form phases, a routed round's payload — with few distinct
answers, so each is computed once from the kernel-time object or the
:class:`~simulator.costmodel.closed_form.CostModel` and kept in a dictionary:

- per *GPU kind* (GPUs of equal specs share an entry): projections + FFN per ``(tokens, logits,
  decoding tokens)`` and the indexer per ``(batch, mean context)``;

A GPU's projections + FFN are its share of the model-parallel instance the run stands for (its
``G`` GPUs: attention data-parallel ranks with the experts spread over them, or a dense model's
tensor-parallel group) **with every GPU carrying this GPU's load**: the kernel model composes a
step of ``tokens · G`` tokens over ``G`` GPUs, i.e. this GPU's own tokens through the attention
side and ``tokens · k`` expert rows on its ``E / G`` experts (a dense model: every token of the
group over ``1 / G`` of the weights). Each GPU steps its own batch, so a step of ``tokens`` over
``G`` GPUs (the instance's step holding only this GPU's tokens, as until stop 69) gave every GPU
the compute of all ``G`` at once: 7–77× too little for a prefill chunk (docs/accuracy.md).

- per GPU name: attention per ``(blocks, queries)`` (the fast engine reads ``attn_cache``
  directly first); per (option, home, holder, shape): a round's closed form
  (:meth:`StepCosts.closed_form`; the fast engine reads ``cf_cache`` directly first);
- per batch: a routed round's (query bytes, return bytes).

The answers are exactly the uncached calls' (the same arguments, the same floats); memoizing
changes no record.
"""

from __future__ import annotations


class StepCosts:
    """The memoized step costs of one run (see the module docstring).

    Args:
        kernels: the run's kernel-time object (``non_attention_time``, ``indexer_time``).
        cm: the run's :class:`~simulator.costmodel.closed_form.CostModel`.
        arch: the model architecture.
        gpus: the run's :class:`~simulator.gpu.runtime.GPU` objects, one per GPU index.
        names: the GPUs' names, by index.
        requests: the run's :class:`~simulator.engine.admission.Admission` (contexts, for the
            indexer).
        indexer: whether steps run the DSA indexer (a sparse model under DSA selection).
    """

    def __init__(self, kernels, cm, arch, gpus, names: list[str], requests,
                 indexer: bool) -> None:
        self.kernels, self.cm, self.arch = kernels, cm, arch
        self.gpus, self.names, self.req = gpus, names, requests
        self.G = len(names)
        self.with_indexer = indexer
        self.cf_cache: dict[tuple, object] = {}
        #: attention per ``(GPU name, blocks, queries)`` [s] (:meth:`attention`; the fast
        #: engine's quiet slots read it directly first)
        self.attn_cache: dict[tuple, float] = {}
        self._payload_cache: dict[int, tuple[float, float]] = {}
        # GPUs of equal specs share the kernel times memoized per GPU kind (its index here)
        kinds: dict = {}
        self._kind = [kinds.setdefault(x.spec, len(kinds)) for x in gpus]
        self._na_cache: dict[tuple[int, int, int | None, int | None], float] = {}
        self._indexer_cache: dict[tuple[int, int, float], float] = {}

    def na(self, g: int, tokens: int, logits: int | None = None,
           decode: int | None = None) -> float:
        """One layer's projections + FFN on GPU ``g`` for a step of ``tokens`` tokens of which
        ``logits`` sample a token (the LM head's rows; default all) and ``decode`` decode (the
        rows of MLA's absorbed products; default all) [s]."""
        key = (self._kind[g], tokens, logits, decode)
        t = self._na_cache.get(key)
        if t is None:
            G = self.G  # every GPU of the instance carries this GPU's load (module docstring)
            t = self._na_cache[key] = self.kernels.non_attention_time(
                self.gpus[g].spec, self.arch, tokens * G, gpus=G,
                logits=(tokens if logits is None else logits) * G,
                decode_rows=(tokens if decode is None else decode) * G) / self.arch.layers
        return t

    def prefill(self, g: int, tokens: int) -> float:
        """A whole prefill of one prompt of ``tokens`` tokens on GPU ``g``, all layers, as its
        share of the instance's step with every GPU prefilling as much (the rule of :meth:`na`;
        its attention is its own) [s]."""
        G = self.G
        return self.kernels.prefill_time(self.gpus[g].spec, self.arch, tokens, float(G), gpus=G)

    def indexer(self, g: int, reqs: list[int]) -> float:
        """The DSA indexer's pass per layer over each decoding query's whole context [s] (0 for
        models without one, or run with dense selection)."""
        if not self.with_indexer:
            return 0.0
        # the mean context [tokens]: an exact integer sum over the batch, divided once (the
        # float numpy's mean gives, without its overhead)
        inp, gen = self.req.inp, self.req.gen
        if len(reqs) == 1:  # the common batch: the same integer without the array calls
            r = reqs[0]
            ctx = float(inp.item(r) + gen.item(r))
        else:  # Python integers: the same exact sum, without a fancy index's arrays
            ctx = sum([inp.item(r) + gen.item(r) for r in reqs]) / len(reqs)
        spec = self.gpus[g].spec
        key = (self._kind[g], len(reqs), ctx)  # memoized: the three recur
        t = self._indexer_cache.get(key)
        if t is None:
            if len(self._indexer_cache) > 100_000:
                self._indexer_cache.clear()
            t = self._indexer_cache[key] = self.kernels.indexer_time(spec, self.arch, len(reqs),
                                                                     ctx)
        return t

    def route_payload(self, batch: int) -> tuple[float, float]:
        """(query bytes, return bytes) of a routed round of ``batch`` queries [B] (memoized)."""
        p = self._payload_cache.get(batch)
        if p is None:
            p = self._payload_cache[batch] = self.cm.route_payload(batch)
        return p

    def attention(self, name: str, n_blocks: int, batch: int) -> float:
        """GPU ``name``'s attention over ``n_blocks`` blocks for ``batch`` queries [s]."""
        key = (name, n_blocks, batch)
        t = self.attn_cache.get(key)
        if t is None:
            t = self.cm.attention_time(name, n_blocks / batch, batch)
            self.attn_cache[key] = t
        return t

    def closed_form(self, option: str, g: int, code: int, owner: str, n_blocks: int,
                    batch: int):
        """The closed-form phases of an ``option`` round of home ``g`` with holder ``code``
        (``owner`` its name) over ``n_blocks`` blocks for ``batch`` queries."""
        key = (option, g, code, n_blocks, batch)
        cf = self.cf_cache.get(key)
        if cf is None:
            cf = getattr(self.cm, option)(self.names[g], owner, n_blocks / batch, batch)
            self.cf_cache[key] = cf
        return cf
