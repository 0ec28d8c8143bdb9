"""The agentic generator: fan-out structure, shared repositories, growth, seeding."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from workloads.agentic import AgenticParams, generate_agentic, task_arrivals
from workloads.schema import blocks_needed, write_trace

SMALL = dict(duration_time=60.0, task_rate=0.1, n_repos=2, repo_tokens=8_192,
             repo_size_sigma=0.0, repo_min_tokens=1, file_tokens=512, subagents=3,
             turns_mean=2.0, system_tokens=256, tool_tokens_mean=300.0, block_tokens=64)


def repo_part(df, row):
    """Blocks between the system prompt and the private context (the repository)."""
    sp = df["spans"].iloc[row]
    return df["block_ids"].iloc[row][sp[0]:sp[-1]]


def test_one_turn_agents_make_one_plan_and_one_request_each():
    p = AgenticParams(**{**SMALL, "turns_mean": 1.0, "duration_time": 200.0})
    df = generate_agentic(np.random.default_rng(0), p)
    tasks = int(df["parent_id"].isna().sum())
    assert tasks > 1
    assert len(df) == tasks * (1 + 3)
    assert df["parent_id"].value_counts().tolist() == [3] * tasks
    assert df["session_id"].nunique() == len(df)


def test_the_engine_default_256k_repository_with_32_subagents_is_expressible():
    p = AgenticParams(n_repos=1, repo_tokens=262_144, repo_size_sigma=0.0, subagents=32,
                      duration_time=25.0, task_rate=0.1, turns_mean=1.0)
    df = generate_agentic(np.random.default_rng(3), p)
    assert df.attrs["repo_blocks"] == [4096]
    children = df[df["parent_id"].notna()]
    assert children["parent_id"].value_counts().eq(32).all()
    repos = {tuple(repo_part(df, i)) for i in range(len(df))}
    assert len(repos) == 1 and len(next(iter(repos))) == 4096


def test_a_repository_is_the_same_blocks_for_all_its_subagents():
    df = generate_agentic(np.random.default_rng(1), AgenticParams(**SMALL))
    for repo, rows in df.groupby("repo_id").groups.items():
        parts = {tuple(repo_part(df, i)) for i in rows}
        assert len(parts) == 1, f"repo {repo} differs between requests"
    shuffled = generate_agentic(np.random.default_rng(1),
                                AgenticParams(**{**SMALL, "file_order": "per_agent"}))
    for _, rows in shuffled.groupby("repo_id").groups.items():
        sets = {tuple(sorted(repo_part(shuffled, i))) for i in rows}
        orders = {tuple(repo_part(shuffled, i)) for i in rows}
        assert len(sets) == 1 and len(orders) > 1


def test_private_context_grows_turn_by_turn_and_keeps_its_full_blocks():
    df = generate_agentic(np.random.default_rng(2), AgenticParams(**{**SMALL, "turns_mean": 4}))
    grew = 0
    for _, g in df[df["parent_id"].notna()].groupby("session_id"):
        inp = g["input_tokens"].to_numpy()
        assert (np.diff(inp) > 0).all()
        assert (np.diff(g["arrival_at"].to_numpy()) > 0).all()
        for a, b, t in zip(g["block_ids"].iloc[:-1], g["block_ids"].iloc[1:], inp[:-1],
                           strict=True):
            full = t // 64
            assert (a[:full] == b[:full]).all()
            grew += 1
    assert grew > 0


def test_sub_agents_start_after_their_plan():
    df = generate_agentic(np.random.default_rng(4), AgenticParams(**SMALL))
    at = dict(zip(df["request_id"], df["arrival_at"], strict=True))
    kids = df[df["parent_id"].notna()]
    assert (kids["arrival_at"].to_numpy() > [at[p] for p in kids["parent_id"]]).all()
    assert df.loc[df["parent_id"].isna()].index.size == kids["parent_id"].nunique()


def test_a_causal_fleet_says_whom_each_request_follows_with_the_same_draws():
    p = AgenticParams(**{**SMALL, "turns_mean": 3.0})
    open_loop = generate_agentic(np.random.default_rng(5), p)
    df = generate_agentic(np.random.default_rng(5), AgenticParams(**{**SMALL, "turns_mean": 3.0,
                                                                      "causal": True}))
    # the same trace, plus whom each request follows
    pd.testing.assert_frame_equal(df.drop(columns=["after_id", "after_time"]),
                                  open_loop.drop(columns=["after_id", "after_time"]))
    assert open_loop["after_id"].isna().all() and (open_loop["after_time"] == 0).all()
    roots = df["parent_id"].isna().to_numpy()
    assert df.loc[roots, "after_id"].isna().all() and (df.loc[roots, "after_time"] == 0).all()
    after = df["after_id"].to_numpy(dtype=np.int64, na_value=-1)
    rows = np.flatnonzero(~roots)
    assert (after[rows] >= 0).all()
    first = df.iloc[rows].groupby("session_id").head(1).index.to_numpy()
    # a sub-agent's first call follows its orchestrator, each later turn the previous turn
    np.testing.assert_array_equal(after[first], df["parent_id"].to_numpy()[first])
    later = np.setdiff1d(rows, first)
    assert len(later) > 0
    sub = df.iloc[rows]
    previous = pd.Series(sub.index, index=sub.index).groupby(sub["session_id"]).shift(1)
    np.testing.assert_array_equal(after[later], previous.loc[later].to_numpy(np.int64))
    # the nominal schedule: entry = the followed call's arrival + its output at the nominal
    # speed + the gap (stagger or think time)
    at, out = df["arrival_at"].to_numpy(), df["output_tokens"].to_numpy()
    gap = df["after_time"].to_numpy()
    np.testing.assert_allclose(at[rows], at[after[rows]] + out[after[rows]] * 0.02 + gap[rows],
                               rtol=1e-12)


def test_same_seed_identical_parquet_and_another_seed_differs(tmp_path):
    p = AgenticParams(**SMALL)

    def digest(seed, name):
        path = write_trace(generate_agentic(np.random.default_rng(seed), p), tmp_path / name)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest(5, "a.parquet") == digest(5, "b.parquet")
    assert digest(5, "a.parquet") != digest(6, "c.parquet")


def test_bursty_arrivals_are_burstier_than_poisson():
    def cv(kind):
        p = AgenticParams(duration_time=20_000.0, task_rate=1.0, arrival=kind, burst_cv=3.0)
        gaps = np.diff(task_arrivals(np.random.default_rng(9), p))
        return gaps.std() / gaps.mean(), len(gaps)

    (poisson, n1), (bursty, n2) = cv("poisson"), cv("bursty")
    assert poisson == pytest.approx(1.0, abs=0.05) and bursty > 2.0
    assert n1 == pytest.approx(20_000, rel=0.05) and n2 == pytest.approx(20_000, rel=0.1)


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="subagents"):
        AgenticParams(subagents=0)
    with pytest.raises(ValueError, match="arrival"):
        AgenticParams(arrival="weekly")


@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.sampled_from(["fixed", "per_agent"]),
       st.sampled_from(["poisson", "bursty"]), st.sampled_from([16, 64]))
def test_any_generated_fleet_is_a_valid_trace(seed, subagents, order, arrival, bt):
    p = AgenticParams(**{**SMALL, "subagents": subagents, "file_order": order,
                         "arrival": arrival, "block_tokens": bt})
    df = generate_agentic(np.random.default_rng(seed), p)
    assert (np.diff(df["arrival_at"].to_numpy()) >= 0).all()
    assert (df["input_tokens"] > 0).all() and (df["output_tokens"] > 0).all()
    assert [len(b) for b in df["block_ids"]] == blocks_needed(df["input_tokens"], bt).tolist()
    for _, rows in df.groupby("repo_id").groups.items():
        assert len({tuple(sorted(repo_part(df, i))) for i in rows}) == 1
