"""A prompt under construction: block ids that grow call by call, with commutative spans.

Structured generators (:mod:`workloads.sessions`, :mod:`workloads.nested`) build each LLM call's
prompt by appending to a :class:`Context`, then take a :meth:`Context.snapshot` (the block ids,
the token count and the spans of that call). Three kinds of segment:

- **shared** — whole blocks whose ids are fixed outside the context (a system prompt, a
  repository's instructions): every context that starts with them shares their KV;
- **span** — whole blocks of a commutative segment (a file read by a tool, a retrieved
  document, a candidate answer): its ids are the file's wherever it lands, and its position is
  recorded in ``spans`` so position-independent reuse can find it;
- **private** — tokens only this context has (a user message, a model output, a tool's text
  output). They fill the last, partial block first — which then gets a *fresh id*, since its
  content changed — and continue in new blocks.

Shared segments and spans start on a block (page) boundary: when the context ends mid-block,
the rest of that block is *padding* (counted in the prompt's tokens, never filled later), as a
span-aware server must lay out page-aligned spans to share their pages. The padding tokens are
counted in :attr:`Context.padding`. Within one context, every snapshot's full blocks are a
prefix of every later snapshot's blocks (only a partial last block changes id), which is what
a prefix cache exploits call after call.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from workloads.loaders import MAX_REQUEST_TOKENS

__all__ = ["BlockIds", "Context", "check_params", "length", "lognormal", "positive_int"]

#: What a generator field of each default's type must be, as its error says it.
_KINDS = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}


class BlockIds:
    """Fresh block ids, counted up from ``start`` (never reused)."""

    def __init__(self, start: int = 0) -> None:
        self.next = int(start)

    def take(self, count: int) -> np.ndarray:
        """``count`` new ids (int64)."""
        out = np.arange(self.next, self.next + int(count), dtype=np.int64)
        self.next += int(count)
        return out


def lognormal(rng: np.random.Generator, mean: float, sigma: float, size=None):
    """Lognormal draws with the given *mean* (not median) and log-space ``sigma``; without
    spread, or of mean 0 (nothing: a tool that takes no time), the mean itself, drawn from
    nothing."""
    if sigma == 0 or mean == 0:
        return np.full(size, float(mean)) if size is not None else float(mean)
    return rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, size=size)


def positive_int(x) -> np.ndarray:
    """Round to int64, at least 1."""
    return np.maximum(np.rint(x).astype(np.int64), 1)


def check_params(params, positive: tuple[str, ...] = (),
                 non_negative: tuple[str, ...] = ()) -> None:
    """A ``ValueError`` naming the first bad field of the generator parameters ``params`` (a
    dataclass): a value not of its default's type (an integer and not a boolean, a finite
    number, true or false), a size in tokens (``*_tokens``, ``*_tokens_mean``) above
    :data:`~workloads.loaders.MAX_REQUEST_TOKENS`, a ``positive`` field not > 0 or a
    ``non_negative`` one below 0."""
    for f in dataclasses.fields(params):
        value, kind = getattr(params, f.name), type(f.default)
        if not _of_kind(value, kind):
            raise ValueError(f"{f.name} must be {_KINDS.get(kind, kind.__name__)}, got {value!r}")
        if f.name.endswith(("_tokens", "_tokens_mean")) and value > MAX_REQUEST_TOKENS:
            raise ValueError(f"{f.name} must be <= {MAX_REQUEST_TOKENS:,} tokens (the most a "
                             f"request may have), got {value:,}")
    for name in positive:
        if not getattr(params, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(params, name)}")
    for name in non_negative:
        if not getattr(params, name) >= 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(params, name)}")


def _of_kind(value, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    return isinstance(value, kind)


def length(rng: np.random.Generator, mean: float, sigma: float) -> int:
    """One length of the given mean [tokens]: lognormal, rounded, at least 1."""
    return int(positive_int(lognormal(rng, mean, sigma)))


class Context:
    """A growing prompt of ``block_tokens``-token blocks (see the module docstring).

    Args:
        ids: where fresh private block ids come from.
        block_tokens: tokens per block [tokens].
    """

    def __init__(self, ids: BlockIds, block_tokens: int) -> None:
        self.ids = ids
        self.bt = int(block_tokens)
        self._chunks: list[np.ndarray] = []
        self.n_blocks = 0
        self.tokens = 0  # prompt tokens, padding included
        self.padding = 0  # tokens of padding before shared segments and spans
        self._tail = 0  # tokens in the last block when it is partial, else 0
        self._spans: list[int] = []

    def _pad(self) -> None:
        if self._tail:
            self.padding += self.bt - self._tail
            self.tokens += self.bt - self._tail
            self._tail = 0

    def _append(self, blocks: np.ndarray) -> None:
        if len(blocks):
            self._chunks.append(blocks)
            self.n_blocks += len(blocks)
            self.tokens += len(blocks) * self.bt

    def add_shared(self, blocks: np.ndarray) -> None:
        """Append whole blocks with fixed ids (not a commutative span), page-aligned."""
        self._pad()
        self._append(np.asarray(blocks, dtype=np.int64))

    def add_span(self, blocks: np.ndarray) -> None:
        """Append a commutative span (whole blocks with fixed ids), page-aligned."""
        self._pad()
        start = self.n_blocks
        self._append(np.asarray(blocks, dtype=np.int64))
        if self.n_blocks > start:
            self._spans += [start, self.n_blocks]

    def add_private(self, tokens: int) -> None:
        """Append ``tokens`` private tokens: fill the partial last block (fresh id), then new ones."""
        n = int(tokens)
        if n <= 0:
            return
        if self._tail:
            last = self._chunks[-1]
            if len(last) == 1:
                self._chunks[-1] = self.ids.take(1)
            else:
                self._chunks[-1] = last[:-1]
                self._chunks.append(self.ids.take(1))
            take = min(n, self.bt - self._tail)
            self._tail = (self._tail + take) % self.bt
            self.tokens += take
            n -= take
        if n:
            full, rest = divmod(n, self.bt)
            self._chunks.append(self.ids.take(full + (rest > 0)))
            self.n_blocks += full + (rest > 0)
            self.tokens += n
            self._tail = rest

    def snapshot(self) -> tuple[np.ndarray, int, np.ndarray]:
        """(block ids, prompt tokens, flattened spans) of the prompt as it stands now."""
        blocks = (np.concatenate(self._chunks) if self._chunks
                  else np.zeros(0, dtype=np.int64))
        return blocks, self.tokens, np.asarray(self._spans, dtype=np.int64)
