"""A generator's expected size (requests, block references) against the traces it makes.

``expected_size`` is what the runner refuses a workload too large for memory by, before it
generates anything; these tests hold it to the generated traces' own counts. Per arrival unit
(a task, a private session, a chat) the Poisson count of units is taken out: the tests divide
by the units each trace really drew, so what is left is the units' own spread.
"""

from __future__ import annotations

import numpy as np
import pytest

from workloads.agentic import AgenticParams, generate_agentic
from workloads.mixed import MixedFleetParams, generate_mixed_fleet
from workloads.nested import NestedParams, generate_nested
from workloads.rag import RagParams, generate_rag
from workloads.sessions import SessionParams, generate_sessions


def _refs(df) -> int:
    """Block references of a trace's prompts."""
    return sum(len(b) for b in df["block_ids"])


def _agentic_per_task(p: AgenticParams, seeds: int) -> tuple[float, float]:
    """Requests and prompt block references per task, pooled over ``seeds`` traces (of
    repositories without spread: each exactly ``repo_tokens``)."""
    tasks = requests = refs = 0
    for seed in range(seeds):
        df = generate_agentic(np.random.default_rng(seed), p)
        tasks += int(df["parent_id"].isna().sum())
        requests += len(df)
        refs += _refs(df)
        assert df.attrs["repo_blocks"] == [-(-p.repo_tokens // p.block_tokens)] * p.n_repos
    return requests / tasks, refs / tasks


def _expected_per_task(p: AgenticParams) -> tuple[float, float]:
    requests, refs = p.expected_size()
    tasks = p.task_rate * p.duration_time
    repos = p.n_repos * p.repo_tokens / p.block_tokens  # the repositories' own blocks
    return requests / tasks, (refs - repos) / tasks


def test_an_agentic_fleet_of_fixed_lengths_is_its_expected_size():
    # one turn each, no spread: every task is 1 plan + 3 sub-agent requests, and each prompt
    # reads the system prompt (100 tokens → 7 blocks of 16), the repository (6,400 → 400) and
    # 3,000 private tokens (188 blocks: the estimate's 187.5 + 0.5)
    p = AgenticParams(duration_time=200, task_rate=0.1, subagents=3, turns_mean=1.0,
                      repo_tokens=6_400, repo_size_sigma=0.0, repo_min_tokens=6_400,
                      system_tokens=100, task_tokens=3_000, length_sigma=0.0, block_tokens=16,
                      n_repos=2)
    assert _expected_per_task(p) == (4.0, 4 * (7 + 400 + 187.5 + 0.5))
    assert _agentic_per_task(p, seeds=2) == (4.0, 4 * (7 + 400 + 188))
    requests, refs = p.expected_size()
    assert requests == pytest.approx(80.0)
    assert refs == pytest.approx(80 * 595 + 2 * 400)


def test_an_agentic_fleet_whose_private_contexts_grow_is_its_expected_size():
    # geometric turns (mean 3) and private contexts that grow by ~4,400 tokens a turn: a
    # sub-agent's turn reads on average μ − 1 = 2 turns of growth (E[T(T − 1)/2] / E[T]), not
    # (μ − 1)/2 — the estimate was 1.6–1.9× short here before it said so
    p = AgenticParams(duration_time=1_000, task_rate=1.0, subagents=2, turns_mean=3.0,
                      repo_tokens=64, repo_size_sigma=0.0, repo_min_tokens=64, system_tokens=0,
                      task_tokens=64, output_tokens_mean=400.0, tool_tokens_mean=4_000.0,
                      n_repos=1)
    requests, refs = _agentic_per_task(p, seeds=1)
    want_requests, want_refs = _expected_per_task(p)
    assert want_requests == 7.0
    assert requests == pytest.approx(want_requests, rel=0.05)
    assert refs == pytest.approx(want_refs, rel=0.08)


def test_an_agentic_fleet_of_lognormal_lengths_is_its_expected_size():
    # the default length spread, a system prompt, a repository of 313 blocks, 1.5 turns
    p = AgenticParams(duration_time=1_000, task_rate=0.5, subagents=3, turns_mean=1.5,
                      repo_tokens=20_000, repo_size_sigma=0.0, repo_min_tokens=20_000,
                      system_tokens=2_000, n_repos=3)
    requests, refs = _agentic_per_task(p, seeds=1)
    want_requests, want_refs = _expected_per_task(p)
    assert want_requests == 5.5
    assert requests == pytest.approx(want_requests, rel=0.05)
    assert refs == pytest.approx(want_refs, rel=0.05)


def _mixed_per_unit(p: MixedFleetParams, population: str, seeds: int) -> tuple[float, float]:
    """Requests and block references of one population per arrival unit (a task, a session,
    a chat), pooled over ``seeds`` traces."""
    units = requests = refs = 0
    for seed in range(seeds):
        df = generate_mixed_fleet(np.random.default_rng(seed), p)
        mine = np.asarray(df.attrs["population"]) == population
        assert mine.all()  # the other populations' rates are 0
        units += {"subagent": int(df["parent_id"].isna().sum()),
                  "private": df["session_id"].nunique(), "chat": len(df)}[population]
        requests += len(df)
        refs += _refs(df)
    return requests / units, refs / units


@pytest.mark.parametrize("population, rates", [
    ("private", dict(task_rate=0.0, private_rate=2.0, chat_rate=0.0, private_affinity=True)),
    ("chat", dict(task_rate=0.0, private_rate=0.0, chat_rate=5.0)),
    ("subagent", dict(task_rate=0.2, private_rate=0.0, chat_rate=0.0, subagents=4)),
])
def test_each_population_of_a_mixed_fleet_is_its_expected_size(population, rates):
    p = MixedFleetParams(duration_time=600.0, private_tokens=2_048, **rates)
    units = p.duration_time * {"private": p.private_rate, "chat": p.chat_rate,
                               "subagent": p.task_rate}[population]
    want_requests, want_refs = (x / units for x in p.expected_size())
    if population == "subagent":  # the repository's own blocks, once per trace
        want_refs -= p.repo_tokens / p.block_tokens / units
    requests, refs = _mixed_per_unit(p, population, seeds=1)
    assert requests == pytest.approx(want_requests, rel=0.06)
    assert refs == pytest.approx(want_refs, rel=0.06)


def test_the_expected_repository_is_clipped_only_when_sizes_spread():
    # 50k tokens, below the 100k floor: without spread the repository is exactly 50k; with a
    # small spread nearly every draw is clipped up to the floor
    base = dict(duration_time=1_000, task_rate=0.5, subagents=1, turns_mean=1.0,
                repo_tokens=50_000, system_tokens=0, task_tokens=64, n_repos=2)
    for sigma, repo_blocks in [(0.0, 782), (0.3, 1_563)]:
        p = AgenticParams(**base, repo_size_sigma=sigma)
        requests, refs = p.expected_size()
        df = generate_agentic(np.random.default_rng(0), p)
        assert df.attrs["repo_blocks"] == [repo_blocks] * 2
        assert refs == pytest.approx(_refs(df) + sum(df.attrs["repo_blocks"]), rel=0.1)
    # a spread above the ceiling: clipped down to 1M tokens
    p = AgenticParams(**{**base, "repo_tokens": 3_000_000, "repo_max_tokens": 1_000_000},
                      repo_size_sigma=0.1)
    assert p.expected_size()[1] == pytest.approx(
        p.expected_size()[0] * (1_000_000 / 64 + 1 + 0.5) + 2 * 1_000_000 / 64)


def test_a_rag_service_is_its_expected_size():
    # every prompt: the system prompt (100 tokens → 2 blocks), 4 documents of exactly 10
    # blocks, a question of 128 tokens on average (2 + 0.5 blocks); the corpus: 2 a document
    p = RagParams(duration_time=1_000.0, request_rate=1.0, n_documents=50, docs_per_request=4,
                  doc_tokens=640, doc_sigma=0.0, system_tokens=100, question_tokens=128)
    requests, refs = p.expected_size()
    assert (requests, refs) == (1_000.0, 1_000 * (2 + 40 + 2.5) + 2 * 50)
    df = generate_rag(np.random.default_rng(0), p)
    assert len(df) == pytest.approx(requests, rel=0.06)
    assert _refs(df) / len(df) == pytest.approx((refs - 100) / requests, rel=0.02)


def test_nested_generation_is_its_expected_size():
    # a query: 3 answers and a judge, each reading the system prompt (2 blocks) and the task
    # (512 tokens on average: 8 + 0.5); the judge also 3 answers (4 + 0.5) and its question (1)
    p = NestedParams(duration_time=2_000.0, request_rate=0.5, candidates=3, system_tokens=100)
    requests, refs = p.expected_size()
    assert (requests, refs) == (4_000.0, 1_000 * (4 * 10.5 + 3 * 4.5 + 1))
    df = generate_nested(np.random.default_rng(0), p)
    queries = df["session_id"].nunique()
    assert len(df) == 4 * queries
    assert _refs(df) / queries == pytest.approx(refs / 1_000, rel=0.05)


def test_structured_sessions_are_their_expected_calls_and_more_references():
    # no compaction: a turn is 1 + 2 main calls on average, and 2 × 0.3 spawns of 2 sub-agents
    # of 1 + 1 calls each; every call reads at least its system prompt (10 or 5 blocks)
    p = SessionParams(sessions=1_000, turns_mean=2.0, batches_mean=2.0, spawn_fraction=0.3,
                      subagents_mean=2.0, subagent_batches_mean=1.0, tool_tokens_mean=500.0,
                      user_tokens_mean=200.0, repo_tokens=20_000, file_tokens=1_000,
                      system_tokens=640, subagent_system_tokens=320, n_repos=2,
                      compact_tokens=10**7)
    requests, refs = p.expected_size()
    assert requests == pytest.approx(1_000 * 2 * (3 + 2 * 0.3 * 2 * 2))
    assert refs == pytest.approx(1_000 * 2 * (3 * 10 + 2 * 0.3 * 2 * 2 * 5))
    df = generate_sessions(np.random.default_rng(0), p)
    assert len(df) == pytest.approx(requests, rel=0.05)
    assert _refs(df) > refs
    # sessions = 0: those that start within duration_time
    p = SessionParams(sessions=0, session_rate=0.5, duration_time=600.0)
    assert p.expected_size() == pytest.approx(
        tuple(300 * x for x in SessionParams(sessions=1).expected_size()))
