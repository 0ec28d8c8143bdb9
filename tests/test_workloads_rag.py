"""The RAG generator's corpus, layout and parameters (the reuse it allows: test_workloads_spans)."""

from __future__ import annotations

import numpy as np
import pytest

from workloads.rag import RagParams, generate_rag


def _whole_corpus(**kw):
    """Every request retrieves every document: each prompt shows the whole corpus."""
    p = RagParams(duration_time=2.0, request_rate=2.0, permute=False, **kw)
    df = generate_rag(np.random.default_rng(7), p)
    assert len(df) > 0
    return p, df


def test_documents_have_the_asked_mean_size_in_whole_blocks_one_after_another():
    p, df = _whole_corpus(n_documents=3_000, docs_per_request=3_000, doc_tokens=1_024,
                          doc_sigma=0.5, system_tokens=200)
    ids, spans = df["block_ids"].iloc[0], df["spans"].iloc[0].reshape(-1, 2)
    np.testing.assert_array_equal(ids[:4], np.arange(4))  # 200 tokens → 4 blocks
    lens = spans[:, 1] - spans[:, 0]
    # lognormal of mean 16 blocks, median 16 e^(−σ²/2) ≈ 14.1 (3,000 documents: ~2 %)
    assert lens.mean() == pytest.approx(16.0, rel=0.04)
    assert np.median(lens) == pytest.approx(16.0 * np.exp(-0.125), rel=0.06)
    # in corpus order the documents are ids 4, 5, … in one run, no gap and no overlap
    docs = ids[4:spans[-1, 1]]
    np.testing.assert_array_equal(docs, np.arange(4, 4 + lens.sum()))
    assert ids[spans[-1, 1]:].min() == 4 + lens.sum()  # the question's ids come after


def test_a_document_is_at_least_one_block():
    _, df = _whole_corpus(n_documents=50, docs_per_request=50, doc_tokens=8, doc_sigma=0.1)
    spans = df["spans"].iloc[0].reshape(-1, 2)
    np.testing.assert_array_equal(spans[:, 1] - spans[:, 0], 1)


def test_requests_arrive_at_the_asked_rate_over_the_window():
    p = RagParams(duration_time=1_000.0, request_rate=1.0, n_documents=20,
                  docs_per_request=2)
    df = generate_rag(np.random.default_rng(8), p)
    assert len(df) == pytest.approx(1_000, rel=0.1)
    at = df["arrival_at"].to_numpy()
    assert at.min() < 10.0 and 990.0 < at.max() < 1_000.0
    assert df.attrs["params"] == p.to_dict() and RagParams(**p.to_dict()) == p


def test_parameters_at_their_edges():
    RagParams(doc_sigma=0.0, doc_zipf_s=0.0, system_tokens=0)  # zeros allowed
    RagParams(n_documents=3, docs_per_request=3)  # every document in every prompt
    RagParams(duration_time=1e-3, request_rate=1e-3, question_tokens=1, block_tokens=1,
              n_documents=1, docs_per_request=1, doc_tokens=1, output_tokens_mean=1e-3)
    for name in ("duration_time", "request_rate", "n_documents", "doc_tokens",
                 "docs_per_request", "question_tokens", "output_tokens_mean", "block_tokens"):
        with pytest.raises(ValueError, match=name):
            RagParams(**{name: 0})
    for name in ("doc_sigma", "doc_zipf_s", "system_tokens"):
        with pytest.raises(ValueError, match=name):
            RagParams(**{name: -1})
    with pytest.raises(ValueError, match="docs_per_request"):
        RagParams(n_documents=3, docs_per_request=4)


@pytest.mark.parametrize(("name", "value", "says"), [
    ("n_documents", float("inf"), "an integer"), ("n_documents", 2.0, "an integer"),
    ("docs_per_request", True, "an integer"), ("doc_tokens", "1024", "an integer"),
    ("permute", 1, "true or false"), ("permute", "yes", "true or false"),
    ("output_tokens_mean", float("inf"), "a finite number"),
    ("doc_zipf_s", float("nan"), "a finite number"), ("duration_time", True, "a finite number"),
    ("output_tokens_mean", 1e30, "<= 100,000,000 tokens"),
    ("question_tokens", 2**63, "<= 100,000,000 tokens"),
])
def test_a_value_of_the_wrong_type_or_past_a_requests_tokens_is_refused(name, value, says):
    # output_tokens_mean = inf once ran with one-token answers (an int64 cast overflowed)
    with pytest.raises(ValueError, match=rf"^{name} must be {says}"):
        RagParams(**{name: value})
    RagParams(question_tokens=100_000_000, doc_tokens=np.int64(8))  # the edge; numpy integers


def test_each_request_asks_a_fresh_question_over_distinct_documents():
    p = RagParams(duration_time=1_000.0, request_rate=2.0, n_documents=40, docs_per_request=8,
                  question_tokens=100, output_tokens_mean=50.0, system_tokens=0)
    df = generate_rag(np.random.default_rng(9), p)
    questions, q_tokens = [], []
    for ids, spans, tokens in zip(df["block_ids"], df["spans"], df["input_tokens"],
                                  strict=True):
        spans = spans.reshape(-1, 2)
        docs = {tuple(ids[a:b]) for a, b in spans}
        assert len(docs) == 8  # retrieved without replacement
        q = tokens - spans[-1, 1] * 64  # the question's tokens after the documents
        assert len(ids) - spans[-1, 1] == -(-q // 64) and q >= 1
        questions.append(ids[spans[-1, 1]:])
        q_tokens.append(q)
    ids = np.concatenate(questions)
    assert len(np.unique(ids)) == len(ids)  # no two questions share a block
    # lognormal lengths (σ = 0.8) of the asked means, at least one token (~2,000 requests)
    assert np.mean(q_tokens) == pytest.approx(100.0, rel=0.06)
    assert df["output_tokens"].mean() == pytest.approx(50.0, rel=0.06)
    assert df["output_tokens"].min() >= 1
