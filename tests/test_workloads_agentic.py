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


class _FixedGaps:
    """A stand-in random stream: every gap is ``gap``; it records each call's arguments."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.calls: list[tuple] = []

    def exponential(self, scale, size):
        self.calls.append(("exponential", scale, size))
        return np.full(size, self.gap)

    def gamma(self, shape, scale, size):
        self.calls.append(("gamma", shape, scale, size))
        return np.full(size, self.gap)


@pytest.mark.parametrize("kind", ["poisson", "bursty"])
def test_task_arrivals_stitch_batches_of_gaps_from_time_zero(kind):
    # gaps of 0.25 s (exact in binary) from t = 0, well past one batch of draws (sized for
    # ~1,000 arrivals of mean gap 1 s): every arrival is 0.25 k, k = 1 … 3,999, none at or
    # past the window's end, each batch continuing where the last ended
    rng = _FixedGaps(0.25)
    p = AgenticParams(duration_time=1_000.0, task_rate=1.0, arrival=kind, burst_cv=3.0)
    got = task_arrivals(rng, p)
    np.testing.assert_array_equal(got, 0.25 * np.arange(1, 4_000))
    assert len(rng.calls) > 1  # the premise: more than one batch


def test_task_arrivals_draw_gaps_of_mean_one_over_the_rate_and_the_asked_spread():
    p = AgenticParams(duration_time=100.0, task_rate=4.0, arrival="poisson")
    rng = _FixedGaps(1.0)
    task_arrivals(rng, p)
    assert rng.calls[0][:2] == ("exponential", 0.25)
    # gamma(shape k, scale θ): mean k θ = 1 / rate, coefficient of variation 1 / √k = burst_cv
    rng = _FixedGaps(1.0)
    task_arrivals(rng, AgenticParams(duration_time=100.0, task_rate=4.0, arrival="bursty",
                                     burst_cv=2.0))
    kind, shape, scale, _ = rng.calls[0]
    assert kind == "gamma"
    assert shape == pytest.approx(0.25) and shape * scale == pytest.approx(0.25)


def test_poisson_task_arrivals_are_uniform_over_the_window():
    # a Poisson process on [0, D): its count is Poisson(rate · D) and, given the count, the
    # times are uniform on the window — from 0, not from the first second
    p = AgenticParams(duration_time=5.0, task_rate=20.0)
    rng = np.random.default_rng(3)
    runs = [task_arrivals(rng, p) for _ in range(400)]
    counts = np.array([len(r) for r in runs])
    assert counts.mean() == pytest.approx(100.0, rel=0.02)
    times = np.concatenate(runs)
    assert times.min() >= 0.0 and times.max() < 5.0
    assert np.all(np.diff(runs[0]) > 0)
    # the share of arrivals in each second is 1/5 (40,000 arrivals: σ ≈ 0.002)
    share = np.bincount(times.astype(np.int64), minlength=5) / len(times)
    np.testing.assert_allclose(share, 0.2, atol=0.01)


def test_every_prompt_begins_with_the_system_prompt_the_first_ids():
    # 256 system tokens → 4 blocks of 64, ids 0–3 (ids are counted from 0), in every prompt;
    # the repositories' blocks follow, then private ids never seen before in the trace
    df = generate_agentic(np.random.default_rng(4), AgenticParams(**SMALL))
    assert df.attrs["system_blocks"] == 4
    for ids in df["block_ids"]:
        np.testing.assert_array_equal(ids[:4], np.arange(4))
    repo_total = sum(df.attrs["repo_blocks"])
    repo = np.concatenate([repo_part(df, i) for i in range(len(df))])
    assert repo.min() >= 4 and repo.max() < 4 + repo_total
    private = np.concatenate([ids[df["spans"].iloc[i][-1]:] for i, ids in
                              enumerate(df["block_ids"])])
    assert private.min() >= 4 + repo_total
    # a plan's private blocks are its own: no other task's plan reads them
    plans = df.index[df["parent_id"].isna()]
    own = [set(df["block_ids"].iloc[i][df["spans"].iloc[i][-1]:].tolist()) for i in plans]
    assert all(not (a & b) for k, a in enumerate(own) for b in own[k + 1:])


def test_a_system_prompt_is_padded_to_whole_blocks_and_may_be_empty():
    # 200 tokens → 4 blocks of 64 (the prompt counts the 256 padded tokens); none → none
    for tokens, blocks in [(200, 4), (0, 0)]:
        df = generate_agentic(np.random.default_rng(4),
                              AgenticParams(**{**SMALL, "system_tokens": tokens}))
        assert df.attrs["system_blocks"] == blocks
        first = df["spans"].iloc[0][0]  # the repository's first file starts after it
        assert first == blocks
        row = df.iloc[0]
        private = len(row["block_ids"]) - row["spans"][-1]  # the plan's own blocks
        # the padded system prompt, the 8,192-token repository, a partly filled last block
        assert 64 * (blocks + 128 + private - 1) < row["input_tokens"]
        assert row["input_tokens"] <= 64 * (blocks + 128 + private)


def test_repository_sizes_are_exact_without_spread_and_clipped_with_it():
    # no spread: every repository is repo_tokens, even below repo_min_tokens (100k)
    df = generate_agentic(np.random.default_rng(0), AgenticParams(
        duration_time=30.0, repo_tokens=8_192, repo_size_sigma=0.0, n_repos=3))
    assert df.attrs["repo_blocks"] == [128, 128, 128]
    # a wide spread: every size inside [100k, 1M] tokens, some of them at the bounds
    df = generate_agentic(np.random.default_rng(0), AgenticParams(
        duration_time=30.0, repo_size_sigma=1.5, n_repos=200))
    sizes = np.array(df.attrs["repo_blocks"])
    lo, hi = -(-100_000 // 64), -(-1_000_000 // 64)
    assert sizes.min() == lo and sizes.max() == hi and ((sizes > lo) & (sizes < hi)).any()


def test_tasks_pick_repositories_by_zipf_and_files_have_the_asked_size():
    p = AgenticParams(duration_time=4_000.0, task_rate=0.5, n_repos=4, repo_zipf_s=1.0,
                      repo_tokens=65_536, repo_size_sigma=0.0, repo_min_tokens=1,
                      file_tokens=1_024, subagents=1, turns_mean=1.0, system_tokens=0,
                      task_tokens=64)
    df = generate_agentic(np.random.default_rng(2), p)
    plans = df[df["parent_id"].isna()]
    assert len(plans) == pytest.approx(2_000, rel=0.1)
    # Zipf(1) over 4 ranks: 1, 1/2, 1/3, 1/4 over H₄ = 25/12 → 0.48, 0.24, 0.16, 0.12
    share = np.bincount(plans["repo_id"].to_numpy(np.int64), minlength=4) / len(plans)
    np.testing.assert_allclose(share, np.array([12, 6, 4, 3]) / 25, atol=0.03)
    # files (spans) of lognormal size, mean 1,024 tokens = 16 blocks, log-space σ = 1, so
    # median 16 e^(−1/2) ≈ 9.7 blocks (the last file of a repository is cut at its end;
    # whole blocks, at least one)
    lens = np.concatenate([np.diff(sp.reshape(-1, 2), axis=1).ravel()[:-1]
                           for sp in plans.drop_duplicates("repo_id")["spans"]])
    assert lens.min() >= 1 and len(lens) > 50
    assert lens.mean() == pytest.approx(16.0, rel=0.15)
    assert np.median(lens) == pytest.approx(16.0 * np.exp(-0.5), rel=0.2)  # median e^(μ)


def test_a_fleet_without_spread_places_every_turn_and_grows_every_context_exactly():
    # no length spread, no spawn stagger, no think time: a sub-agent starts when its plan's
    # output is done (400 tokens × 20 ms), each turn 400 × 20 ms after the previous, and its
    # private context grows by output + tool tokens a turn (a tool mean below one token
    # reads as one token; none reads as none)
    for tool, grown in [(1_500.0, 1_900), (0.5, 401), (0.0, 400)]:
        p = AgenticParams(**{**SMALL, "length_sigma": 0.0, "spawn_time_mean": 0.0,
                             "think_time_mean": 0.0, "tool_tokens_mean": tool,
                             "output_tokens_mean": 400.0, "task_tokens": 1_000})
        df = generate_agentic(np.random.default_rng(5), p)
        shared = 256 + 8_192  # system prompt and repository [tokens]
        for _, agent in df[df["parent_id"].notna()].groupby("session_id"):
            plan = df.iloc[int(agent["parent_id"].iloc[0])]
            at = agent["arrival_at"].to_numpy()
            assert at[0] == plan["arrival_at"] + 400 * 0.02
            np.testing.assert_allclose(np.diff(at), 400 * 0.02, rtol=1e-12)
            private = agent["input_tokens"].to_numpy() - shared
            np.testing.assert_array_equal(private, 1_000 + grown * np.arange(len(agent)))
        # each private part is its tokens in whole blocks, the last one partly filled
        for ids, spans, tokens in zip(df["block_ids"], df["spans"], df["input_tokens"],
                                      strict=True):
            assert len(ids) - spans[-1] == -(-(tokens - shared) // 64)


def test_sessions_are_numbered_densely_and_the_parameters_ride_along():
    p = AgenticParams(**SMALL)
    df = generate_agentic(np.random.default_rng(6), p)
    sessions = df["session_id"].to_numpy()
    assert set(sessions.tolist()) == set(range(sessions.max() + 1))
    plans = df["parent_id"].isna().sum()
    assert sessions.max() + 1 == plans * (1 + p.subagents)  # one per plan and per agent
    assert df.attrs["params"] == p.to_dict()
    assert AgenticParams(**df.attrs["params"]) == p


def test_a_repository_of_one_size_is_allowed():
    p = AgenticParams(repo_min_tokens=50_000, repo_max_tokens=50_000, repo_tokens=50_000)
    assert p.repo_min_tokens == p.repo_max_tokens
    with pytest.raises(ValueError, match="repo_min_tokens"):
        AgenticParams(repo_min_tokens=50_001, repo_max_tokens=50_000)


@pytest.mark.parametrize("kind", ["poisson", "bursty"])
def test_a_window_expecting_almost_no_task_draws_a_few_or_none(kind):
    # 0.1 tasks expected, gaps of little spread (a gamma of shape 4 rarely ends a gap before
    # 10 s): a batch of draws still has to be drawn
    p = AgenticParams(duration_time=10.0, task_rate=0.01, arrival=kind, burst_cv=0.5)
    counts = [len(task_arrivals(np.random.default_rng(s), p)) for s in range(200)]
    assert sum(counts) < 60 and min(counts) == 0  # Poisson: ~20 tasks over 200 windows
    assert kind == "bursty" or sum(counts) > 0


def test_repository_sizes_have_the_asked_mean():
    # repo_tokens is the lognormal's mean (as every length's), not its median: 2,000
    # repositories of mean 64,000 tokens (1,000 blocks), σ = 0.5, bounds that never bind
    p = AgenticParams(duration_time=1.0, n_repos=2_000, repo_tokens=64_000,
                      repo_size_sigma=0.5, repo_min_tokens=1, repo_max_tokens=10**9,
                      file_tokens=64_000)
    sizes = np.array(generate_agentic(np.random.default_rng(1), p).attrs["repo_blocks"])
    assert sizes.mean() == pytest.approx(1_000, rel=0.03)
    assert np.median(sizes) == pytest.approx(1_000 * np.exp(-0.125), rel=0.04)
