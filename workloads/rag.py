"""RAG-like workload: requests that read a few retrieved documents in a varying order.

Each request's prompt is ``[ system prompt | document₁ … document_k | question ]``. Documents are
drawn from a corpus by a Zipf popularity law (without replacement within a request); each
document always has the same block ids (same text → same KV if position did not matter), and
each is a commutative span. With ``permute=True`` the retrieved documents come in a random order
per request (retrieval scores differ between questions), so an identical document rarely sits
behind an identical prefix: a prefix cache misses what position-independent span reuse hits.
With ``permute=False`` documents are laid out in corpus order. Arrivals are Poisson. Everything
random comes from the passed ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from workloads.context import BlockIds, check_params, length, lognormal, positive_int
from workloads.schema import FlatBlocks, make_trace

#: lognormal sigma of question and answer lengths (a modelling choice: a long right tail).
_SIGMA = 0.8


@dataclass(frozen=True)
class RagParams:
    """A retrieval-augmented service (modelling choices, not measurements).

    Attributes:
        duration_time: arrival window [s] (120 s).
        request_rate: requests per second (2.0).
        n_documents: corpus size (500 chunks/documents).
        doc_tokens: mean document size [tokens] (1,024: a retrieved chunk of a few pages),
            lognormal with ``doc_sigma`` (0.5), whole blocks.
        doc_zipf_s: Zipf exponent of document popularity (1.0: some documents answer many
            questions).
        docs_per_request: retrieved documents per prompt (5: a common top-k).
        permute: shuffle the retrieved documents per request (True) or keep corpus order.
        system_tokens: shared instructions [tokens] (512).
        question_tokens: mean question length [tokens] (128).
        output_tokens_mean: mean answer length [tokens] (256).
        block_tokens: tokens per block (64, the engine's page).
    """

    duration_time: float = 120.0
    request_rate: float = 2.0
    n_documents: int = 500
    doc_tokens: int = 1_024
    doc_sigma: float = 0.5
    doc_zipf_s: float = 1.0
    docs_per_request: int = 5
    permute: bool = True
    system_tokens: int = 512
    question_tokens: int = 128
    output_tokens_mean: float = 256.0
    block_tokens: int = 64

    def __post_init__(self) -> None:
        check_params(self, positive=("duration_time", "request_rate", "n_documents",
                                     "doc_tokens", "docs_per_request", "question_tokens",
                                     "output_tokens_mean", "block_tokens"),
                     non_negative=("doc_sigma", "doc_zipf_s", "system_tokens"))
        if self.docs_per_request > self.n_documents:
            raise ValueError("docs_per_request must be <= n_documents")

    def to_dict(self) -> dict:
        """The parameters as a plain dict."""
        return asdict(self)

    def expected_size(self) -> tuple[float, float]:
        """Expected (requests, block references), for refusing a workload too large to hold:
        each prompt reads the system prompt, ``docs_per_request`` documents and a question
        (rounded up to whole blocks: + 0.5 on average); the corpus's per-document arrays count
        as two references a document."""
        bt = self.block_tokens
        requests = self.request_rate * self.duration_time
        prompt = (-(-self.system_tokens // bt) + self.docs_per_request * self.doc_tokens / bt
                  + self.question_tokens / bt + 0.5)
        return requests, requests * prompt + 2.0 * self.n_documents


def generate_rag(rng: np.random.Generator, params: RagParams | None = None) -> pd.DataFrame:
    """A request trace of the RAG service described by ``params`` (see the module docstring)."""
    p = params or RagParams()
    bt = p.block_tokens
    n_sys = -(-p.system_tokens // bt)
    sys_blocks = np.arange(n_sys, dtype=np.int64)
    doc_len = positive_int(lognormal(rng, p.doc_tokens / bt, p.doc_sigma, size=p.n_documents))
    doc_start = n_sys + np.concatenate([[0], np.cumsum(doc_len)[:-1]])
    fresh_ids = BlockIds(n_sys + doc_len.sum())  # the questions' blocks, after the documents
    weights = np.arange(1, p.n_documents + 1, dtype=np.float64) ** -p.doc_zipf_s
    weights /= weights.sum()
    popularity = rng.permutation(p.n_documents)  # which documents are the popular ones

    arrivals = []
    t = rng.exponential(1.0 / p.request_rate)
    while t < p.duration_time:
        arrivals.append(t)
        t += rng.exponential(1.0 / p.request_rate)
    blocks, spans, inputs, outputs = [], [], [], []
    for _ in arrivals:
        docs = popularity[rng.choice(p.n_documents, size=p.docs_per_request, replace=False,
                                     p=weights)]
        docs = rng.permutation(docs) if p.permute else np.sort(docs)
        q = length(rng, p.question_tokens, _SIGMA)
        q_ids = fresh_ids.take(-(-q // bt))
        parts = [sys_blocks] + [np.arange(doc_start[d], doc_start[d] + doc_len[d]) for d in docs]
        blocks.append(np.concatenate(parts + [q_ids]))
        starts = n_sys + np.concatenate([[0], np.cumsum(doc_len[docs])[:-1]])
        spans.append(np.stack([starts, starts + doc_len[docs]], axis=1).ravel())
        inputs.append(n_sys * bt + int(doc_len[docs].sum()) * bt + q)
        outputs.append(length(rng, p.output_tokens_mean, _SIGMA))
    df = make_trace(arrival_at=np.asarray(arrivals), input_tokens=inputs, output_tokens=outputs,
                    block_ids=FlatBlocks.from_lists(blocks), block_tokens=bt, spans=spans,
                    source="rag generator")
    df.attrs["params"] = p.to_dict()
    return df
