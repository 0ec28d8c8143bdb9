"""Structured agentic sessions: the copilot_2026 preset against the published aggregates, then
the structure (files as spans, growing contexts, compaction, sub-agents), then properties."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracetools import spans_of

from simulator.errors import UserError
from workloads.context import BlockIds, Context
from workloads.presets import COPILOT_2026_TARGETS, compare, session_params
from workloads.schema import blocks_needed
from workloads.sessions import SessionParams, generate_sessions
from workloads.stats import trace_stats

#: Small sessions for the structural tests (seconds, not minutes).
SMALL = dict(sessions=12, n_repos=2, repo_tokens=60_000, file_tokens=1_500,
             tool_tokens_mean=2_000.0, system_tokens=2_048, subagent_system_tokens=512,
             compact_tokens=30_000, summary_tokens=1_000, user_tokens_mean=300.0)


@pytest.fixture(scope="module")
def copilot():
    """The preset at a fixed seed, 600 sessions (~19k calls). Sample size: turns per session
    are geometric (sd ≈ 3.4 around 3.95), so their mean over 600 sessions has a standard error
    of ~3.5%; calls and tool calls per turn (over ~2,400 turns) and the token means (over
    ~19k calls, clustered by session) ~2–3%: the 10% band is ~3 standard errors wide.
    256-token blocks keep the hit classification to 5 M block references (~0.5 GB, 5 s; at
    the preset's 64 it takes 1.6 GB): the aggregates are token counts, which the block size
    moves only through page padding (prompt +1.8%, cached share +0.2 points at seed 0;
    ``benchmarks/copilot_preset.py`` prints them at 64)."""
    df = generate_sessions(np.random.default_rng(0), session_params(
        "copilot_2026", sessions=600, block_tokens=256))
    return df, trace_stats(df)


def test_the_copilot_preset_reproduces_every_published_aggregate_within_10_percent(copilot):
    _, stats = copilot
    assert stats["sessions"] == 600
    for key, row in compare(stats).items():
        assert abs(row["relative_error"]) < 0.10, (key, row)
    assert set(compare(stats)) == set(COPILOT_2026_TARGETS)
    assert COPILOT_2026_TARGETS["calls_per_turn"] == pytest.approx(7.83, abs=0.005)
    assert COPILOT_2026_TARGETS["cached_prompt_fraction"] == pytest.approx(0.857, abs=0.001)


def test_shared_files_make_span_hits_exceed_prefix_hits(copilot):
    _, stats = copilot
    assert stats["span_hit_fraction"] > stats["prefix_hit_fraction"]


def test_a_file_is_the_same_span_wherever_and_by_whomever_it_is_read(copilot):
    df, _ = copilot
    files: dict[int, tuple] = {}
    readers: dict[int, set] = {}
    for ids, sp, ctx in zip(df["block_ids"], df["spans"], df["context_id"], strict=True):
        for a, b in zip(sp[0::2], sp[1::2], strict=True):
            span = tuple(ids[a:b])
            assert files.setdefault(span[0], span) == span  # one file, one span
            readers.setdefault(span[0], set()).add(int(ctx))
    shared = sum(len(r) > 1 for r in readers.values())
    assert shared > 100  # many files read in more than one context (sessions, sub-agents)


def test_a_file_read_twice_in_one_context_gives_one_span():
    ctx = Context(BlockIds(1000), 64)
    ctx.add_private(100)
    ctx.add_span(np.arange(5))
    ctx.add_private(10)
    ctx.add_span(np.arange(5))
    blocks, tokens, spans = ctx.snapshot()
    assert spans.tolist() == [2, 7, 8, 13]
    assert blocks[2:7].tolist() == blocks[8:13].tolist() == list(range(5))
    # 100 private tokens padded to 128, the file, 10 tokens padded to 64, the file again
    assert tokens == 13 * 64 and ctx.padding == 28 + 54


def test_private_text_fills_the_last_block_and_that_block_gets_a_fresh_id():
    ctx = Context(BlockIds(0), 64)
    ctx.add_private(100)
    first, t1, _ = ctx.snapshot()
    ctx.add_private(50)
    second, t2, _ = ctx.snapshot()
    assert (t1, t2) == (100, 150) and len(first) == 2 and len(second) == 3
    assert second[0] == first[0] and second[1] != first[1]  # the partial block changed


def test_a_context_prompt_is_a_prefix_of_its_next_and_compaction_starts_a_new_one():
    p = SessionParams(**SMALL)
    df = generate_sessions(np.random.default_rng(1), p)
    checked = compacted = 0
    for _, g in df.groupby("context_id", sort=False):
        inp = g["input_tokens"].to_numpy()
        assert (np.diff(inp) > 0).all() and (np.diff(g["arrival_at"].to_numpy()) > 0).all()
        for a, b, t in zip(g["block_ids"].iloc[:-1], g["block_ids"].iloc[1:], inp[:-1],
                           strict=True):
            assert (a[: t // 64] == b[: t // 64]).all()
            checked += 1
    by_id = df.set_index("request_id")
    for _, g in df.groupby("context_id"):
        parent = g["parent_id"].iloc[0]
        if pd.isna(parent) or by_id.loc[parent, "session_id"] != g["session_id"].iloc[0]:
            continue
        up = by_id.loc[parent]
        if up["output_tokens"] == p.summary_tokens and up["tool_calls"] == 0:
            compacted += 1  # summarized past the threshold, then a fresh, shorter context
            assert up["input_tokens"] > p.compact_tokens
            assert g["input_tokens"].iloc[0] < p.compact_tokens / 2
    assert checked > 100 and compacted > 0


def test_only_summarizing_calls_see_contexts_past_the_compaction_threshold():
    p = SessionParams(**SMALL)
    df = generate_sessions(np.random.default_rng(2), p)
    over = df[df["input_tokens"] > p.compact_tokens]
    assert len(over) > 0
    assert (over["output_tokens"] == p.summary_tokens).all() and (over["tool_calls"] == 0).all()


def test_sub_agents_start_together_and_the_parent_resumes_after_the_last_one():
    p = SessionParams(**{**SMALL, "spawn_fraction": 0.5, "subagents_mean": 3.0})
    df = generate_sessions(np.random.default_rng(3), p)
    at = df.set_index("request_id")["arrival_at"]
    firsts = df.groupby("context_id").head(1)
    spawned = firsts[firsts["parent_id"].notna()]
    spawned = spawned[df.set_index("request_id").loc[spawned["parent_id"], "tool_calls"]
                      .to_numpy() > 0]
    assert spawned["parent_id"].value_counts().max() > 1  # k sub-agents from one call
    for parent, kids in spawned.groupby("parent_id"):
        assert kids["arrival_at"].nunique() == 1 and kids["arrival_at"].iloc[0] > at[parent]
        last = df[df["context_id"].isin(kids["context_id"])]["arrival_at"].max()
        pctx = df.loc[df["request_id"] == parent, "context_id"].iloc[0]
        after = df[(df["context_id"] == pctx) & (df["arrival_at"] > at[parent])]
        assert len(after) and after["arrival_at"].min() > last  # the join: waits for all


def test_turns_calls_and_tool_calls_follow_the_loop_structure():
    df = generate_sessions(np.random.default_rng(4), SessionParams(**SMALL))
    for _, g in df.groupby("context_id"):
        tools = g["tool_calls"].to_numpy()
        assert (tools >= 0).all()
    # each turn of a session ends with a call that makes no tool call
    last = df.sort_values("arrival_at").groupby(["session_id", "turn_id"]).tail(1)
    assert (last["tool_calls"] == 0).all()
    assert (df.groupby("session_id")["turn_id"].max() >= 0).all()


def test_same_seed_same_trace_and_another_seed_differs():
    p = SessionParams(**SMALL)
    a = generate_sessions(np.random.default_rng(7), p)
    b = generate_sessions(np.random.default_rng(7), p)
    c = generate_sessions(np.random.default_rng(8), p)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) != len(c) or not a["input_tokens"].equals(c["input_tokens"])


@settings(max_examples=15)
@given(st.integers(0, 2**32 - 1), st.sampled_from([16, 64]), st.floats(0.0, 1.0))
def test_any_generated_session_trace_is_valid_and_its_contexts_grow_by_prefix(seed, bt, spawn):
    p = SessionParams(**{**SMALL, "sessions": 3, "block_tokens": bt, "spawn_fraction": spawn})
    df = generate_sessions(np.random.default_rng(seed), p)
    assert [len(b) for b in df["block_ids"]] == blocks_needed(df["input_tokens"], bt).tolist()
    assert df["session_id"].nunique() == 3 and df["turn_id"].notna().all()
    for _, g in df.groupby("context_id", sort=False):
        for a, b, t in zip(g["block_ids"].iloc[:-1], g["block_ids"].iloc[1:],
                           g["input_tokens"].iloc[:-1], strict=True):
            assert (a[: t // bt] == b[: t // bt]).all()


def test_bad_parameters_and_presets_are_rejected():
    with pytest.raises(ValueError, match="turns_mean"):
        SessionParams(turns_mean=0.5)
    with pytest.raises(ValueError, match="read_fraction"):
        SessionParams(read_fraction=0.9, edit_fraction=0.2)
    with pytest.raises(ValueError, match="unknown"):
        session_params("copilot_1999")
    with pytest.raises(ValueError, match=r"preset \[\] is unknown"):  # not a name: no TypeError
        session_params([])
    with pytest.raises(ValueError, match="sesions"):
        session_params("copilot_2026", sesions=3)


def test_the_preset_in_a_scenario_and_its_errors(tmp_path):
    from simulator import Scenario
    from simulator.engine.trace import load_trace

    base = {"name": "s", "topology": {"spec": "single_node:gpus=2"},
            "model": {"name": "deepseek-v3.2"}, "engine": {"max_requests": 40}}
    sc = Scenario.from_dict({**base, "workload": {"kind": "agentic", "agentic": {
        "preset": "copilot_2026", "sessions": 3}}})
    df = load_trace(sc, seed=0)
    assert len(df) == 40 and df["turn_id"].notna().all() and df["session_id"].nunique() <= 3
    # refused when the scenario is read, before any work, naming the field
    with pytest.raises(UserError, match="field 'workload.agentic.turns': unknown field"):
        Scenario.from_dict({**base, "workload": {"kind": "agentic", "agentic": {
            "preset": "copilot_2026", "turns": 3}}})
    with pytest.raises(UserError, match="field 'workload.agentic.preset'"):
        Scenario.from_dict({**base, "workload": {"kind": "agentic", "agentic": {
            "preset": "copilot_2099"}}})


def test_session_parameters_at_their_edges():
    positive = ("session_rate", "duration_time", "turns_mean", "tools_per_batch_mean",
                "subagents_mean", "output_tokens_mean", "compact_tokens", "n_repos",
                "repo_tokens", "file_tokens", "block_tokens", "summary_tokens")
    for name in positive:
        with pytest.raises(ValueError, match=name):
            SessionParams(**{name: 0})
    # every other number may be 0 but not below
    for name in ("sessions", "batches_mean", "spawn_fraction", "subagent_batches_mean",
                 "read_fraction", "edit_fraction", "system_tokens", "task_tokens",
                 "think_time_mean", "length_sigma", "file_zipf_s", "tool_time_sigma"):
        SessionParams(**{name: 0})
        with pytest.raises(ValueError, match=name):
            SessionParams(**{name: -1})
    # means of "at least one" may be exactly one, or between one and two
    SessionParams(turns_mean=1.0, tools_per_batch_mean=1.0, subagents_mean=1.0)
    SessionParams(turns_mean=1.5, tools_per_batch_mean=1.5, subagents_mean=1.5)
    for name in ("turns_mean", "tools_per_batch_mean", "subagents_mean"):
        with pytest.raises(ValueError, match=name):
            SessionParams(**{name: 0.99})
    # fractions may be 1 (read + edit too), not more
    SessionParams(spawn_fraction=1.0, read_fraction=1.0, edit_fraction=0.0)
    SessionParams(read_fraction=0.5, edit_fraction=0.5)
    for name in ("spawn_fraction", "read_fraction", "edit_fraction"):
        with pytest.raises(ValueError, match=name):
            SessionParams(**{name: 1.01, **({"read_fraction": 0.0} if name == "edit_fraction"
                                             else {"edit_fraction": 0.0})})
    with pytest.raises(ValueError, match="read_fraction \\+ edit_fraction"):
        SessionParams(read_fraction=0.6, edit_fraction=0.41)
    # compaction must leave room past the system prompt and the summary
    SessionParams(system_tokens=1_000, summary_tokens=1_000, compact_tokens=2_001)
    with pytest.raises(ValueError, match="compact_tokens"):
        SessionParams(system_tokens=1_000, summary_tokens=1_000, compact_tokens=2_000)
    assert SessionParams(**SessionParams().to_dict()) == SessionParams()
    p = SessionParams(**FIXED)
    assert generate_sessions(np.random.default_rng(0), p).attrs["params"] == p.to_dict()


def test_a_repository_is_whole_files_picked_by_a_permuted_zipf_law():
    from workloads.sessions import _Repo

    p = SessionParams(file_tokens=640, file_sigma=1.0, file_zipf_s=1.0, length_sigma=0.0,
                      instructions_tokens=100)
    repo = _Repo(np.random.default_rng(2), BlockIds(), p, 64_000.0)  # 1,000 blocks
    np.testing.assert_array_equal(repo.instructions, [0, 1])  # 100 tokens → 2 blocks
    lens = np.array([len(f) for f in repo.files])
    assert lens.min() >= 1 and lens.sum() == 1_000  # whole, non-empty files cover it
    np.testing.assert_array_equal(np.concatenate(repo.files), np.arange(2, 1_002))
    # the pick law: Zipf(1) over the files, ranks in a shuffled order
    k = len(repo.files)
    prob = np.diff(repo.cum, prepend=0.0)
    assert repo.cum[-1] == pytest.approx(1.0)
    zipf = 1.0 / np.arange(1, k + 1)
    np.testing.assert_allclose(np.sort(prob)[::-1], zipf / zipf.sum(), rtol=1e-9)
    assert not np.all(np.diff(prob) <= 0)  # shuffled: the first file is not the hottest
    rng = np.random.default_rng(3)
    picks = np.bincount([repo.pick(rng) for _ in range(60_000)], minlength=k) / 60_000
    np.testing.assert_allclose(picks, prob, atol=0.006)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a mean of 0 draws nothing
def test_a_repository_without_instructions_and_of_one_block():
    from workloads.sessions import _Repo

    p = SessionParams(instructions_tokens=0)
    repo = _Repo(np.random.default_rng(0), BlockIds(), p, 1.0)  # 1 token → 1 block, 1 file
    assert len(repo.instructions) == 0
    assert [f.tolist() for f in repo.files] == [[0]]
    assert {repo.pick(np.random.default_rng(s)) for s in range(20)} == {0}
    empty = _Repo(np.random.default_rng(0), BlockIds(), p, 0.0)  # at least one block
    assert [len(f) for f in empty.files] == [1]
    # files of exactly 10 blocks over 1,000: a hundred files, the last one ending at the end
    even = _Repo(np.random.default_rng(0), BlockIds(),
                 SessionParams(file_tokens=640, file_sigma=0.0), 64_000.0)
    assert [len(f) for f in even.files] == [10] * 100


def test_single_token_pages_need_no_padding():
    small = {**SMALL, "sessions": 3, "repo_tokens": 3_000, "file_tokens": 300,
             "system_tokens": 100, "subagent_system_tokens": 50, "compact_tokens": 8_000}
    df = generate_sessions(np.random.default_rng(1), SessionParams(**small, block_tokens=1))
    assert df.attrs["padding_tokens"] == 0
    assert (df["input_tokens"] == df["block_ids"].map(len)).all()
    paged = generate_sessions(np.random.default_rng(1), SessionParams(**small, block_tokens=64))
    assert paged.attrs["padding_tokens"] > 0


#: Sessions of fixed lengths and no file reads: every context grows by known steps.
FIXED = dict(sessions=6, turns_mean=1.0, batches_mean=5.0, length_sigma=0.0,
             read_fraction=0.0, edit_fraction=0.0, tools_per_batch_mean=1.0,
             system_tokens=128, subagent_system_tokens=64, instructions_tokens=64,
             user_tokens_mean=100.0, output_tokens_mean=50.0, tool_tokens_mean=150.0,
             task_tokens=30, summary_tokens=64, n_repos=1, repo_tokens=6_400,
             repo_size_sigma=0.0, file_tokens=640)


def test_every_prompt_starts_with_its_agent_system_prompt_and_the_repository_instructions():
    # ids: the main system prompt 0–1, the sub-agents' 2, then the repository's instructions
    p = SessionParams(**FIXED, spawn_fraction=1.0, compact_tokens=100_000)
    df = generate_sessions(np.random.default_rng(0), p)
    heads = np.array([ids[:3].tolist() for ids in df["block_ids"]])
    main = (heads == [0, 1, 3]).all(axis=1)
    sub = (heads[:, :2] == [2, 3]).all(axis=1)
    assert main.any() and sub.any() and (main | sub).all()
    first = df.groupby("session_id").head(1)  # a session opens with its main agent
    assert main[first.index].all()
    # a sub-agent's calls name the call that spawned it (the very first call included)
    parents = df.loc[sub, "parent_id"]
    assert parents.notna().all() and main[parents.to_numpy(np.int64)].all()
    assert (parents == 0).any()


def test_a_context_of_exactly_the_compaction_threshold_is_not_compacted():
    # a main context holds 192 shared + 100 user tokens, then 200 more a batch (an answer of
    # 50 and a tool result of 150): its second call sees exactly 492 tokens, which is not
    # longer than the threshold; its third (692) is summarized first (and so is a context
    # on a summary, 256 + 200 a batch, at 656)
    p = SessionParams(**FIXED, spawn_fraction=0.0, compact_tokens=492)
    df = generate_sessions(np.random.default_rng(0), p)
    summaries = (df["output_tokens"] == 64) & (df["tool_calls"] == 0)
    assert summaries.any()
    assert set(df.loc[summaries, "input_tokens"]) <= {692, 656}
    assert (df.loc[~summaries, "input_tokens"] == 492).any()


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a mean of 0 draws nothing
def test_a_session_grows_its_context_and_its_clock_call_by_call():
    # no tool time, no think time: a call starts when the previous one's output is done
    # (1 s overhead + 20 ms a token: 2 s after an answer of 50, 2.28 s after a summary of 64);
    # within a turn the context grows by answer + tool result (200 tokens), from one turn to
    # the next by the final answer and the user's message (150), and a summary starts a new
    # context of the shared 192 tokens + 64
    p = SessionParams(**{**FIXED, "turns_mean": 3.0, "tool_time_mean": 0.0,
                         "think_time_mean": 0.0}, spawn_fraction=0.0, compact_tokens=900)
    df = generate_sessions(np.random.default_rng(4), p)
    summaries = 0
    for _, s in df.groupby("session_id"):
        at, tokens = s["arrival_at"].to_numpy(), s["input_tokens"].to_numpy()
        summary = ((s["output_tokens"] == 64) & (s["tool_calls"] == 0)).to_numpy()
        turns, ctx = s["turn_id"].to_numpy(), s["context_id"].to_numpy()
        np.testing.assert_allclose(np.diff(at), np.where(summary[:-1], 2.28, 2.0), rtol=1e-9)
        for k in range(1, len(s)):
            if summary[k - 1]:
                assert ctx[k] != ctx[k - 1] and tokens[k] == 192 + 64
            else:
                assert ctx[k] == ctx[k - 1]
                assert tokens[k] - tokens[k - 1] == (200 if turns[k] == turns[k - 1] else 150)
        summaries += summary.sum()
    assert summaries > 0 and df["turn_id"].max() > 0


def test_a_sub_agent_reads_its_task_and_loops_over_its_mean_batches():
    # a sub-agent's first call: its system prompt (64 tokens), the instructions (64) and its
    # task (30); it then makes 1 + (geometric − 1) batches of mean subagent_batches_mean (4)
    # and a final answer: 5 calls on average (~360 sub-agents: ±5 %)
    p = SessionParams(**{**FIXED, "sessions": 40}, spawn_fraction=1.0, compact_tokens=10**6)
    df = generate_sessions(np.random.default_rng(5), p)
    sub = df[df["block_ids"].map(lambda ids: ids[0] == 2)]
    first = sub.groupby("context_id").head(1)
    assert len(first) > 250 and (first["input_tokens"] == 158).all()
    calls = sub.groupby("context_id").size()
    assert calls.mean() == pytest.approx(5.0, rel=0.1)
    # the parent waits for its k sub-agents and reads their answers (50 tokens each) after
    # its own (50): its next call is 50 (k + 1) tokens longer
    main = df.drop(sub.index)
    for _, ctx in main.groupby("context_id"):
        k = ctx["tool_calls"].to_numpy()[:-1]
        np.testing.assert_array_equal(np.diff(ctx["input_tokens"].to_numpy()), 50 * (k + 1))


def test_tool_calls_read_files_edit_them_or_return_private_text():
    # ids: system prompts 0–2, instructions 3, the repository's files 4–103 (6,400 tokens)
    base = {**FIXED, "spawn_fraction": 0.0, "compact_tokens": 10**6, "batches_mean": 8.0,
            "edit_tokens_mean": 77.0}
    # every tool edits a file: the context grows by the answer and the edit's result
    edits = generate_sessions(np.random.default_rng(6), SessionParams(
        **{**base, "read_fraction": 0.0, "edit_fraction": 1.0}))
    for _, ctx in edits.groupby("context_id"):
        np.testing.assert_array_equal(np.diff(ctx["input_tokens"].to_numpy()), 50 + 77)
    # every tool reads a file: each call's prompt holds one span per tool call before it,
    # each a whole file of the repository
    reads = generate_sessions(np.random.default_rng(6), SessionParams(
        **{**base, "read_fraction": 1.0, "edit_fraction": 0.0}))
    for _, ctx in reads.groupby("context_id"):
        before = np.concatenate([[0], np.cumsum(ctx["tool_calls"].to_numpy())[:-1]])
        assert [len(row["spans"]) // 2 for _, row in ctx.iterrows()] == before.tolist()
        for span in spans_of(ctx.iloc[-1]):
            assert span.min() >= 4 and span.max() < 104
    # half read, half edit: a file read after this session edited it is a version of its
    # own (fresh ids), read again unchanged until the next edit
    mixed = generate_sessions(np.random.default_rng(6), SessionParams(
        **{**base, "read_fraction": 0.5, "edit_fraction": 0.5}))
    versions = [s for _, row in mixed.iterrows() for s in spans_of(row) if s.min() >= 104]
    assert versions and all(s.max() < 104 or s.min() >= 104 for _, row in mixed.iterrows()
                            for s in spans_of(row))
    final = mixed.groupby("context_id").tail(1)
    spans = [tuple(s) for _, row in final.iterrows() for s in spans_of(row)]
    assert len(set(spans)) < len(spans)  # some version (or file) read twice: the same ids


def test_sessions_pick_repositories_by_zipf_and_number_their_contexts_densely():
    # one call a session (one turn, no tool batch); 3 repositories, Zipf(1): 6/11, 3/11, 2/11
    p = SessionParams(**{**FIXED, "sessions": 3_000, "n_repos": 3, "batches_mean": 0.0,
                         "repo_zipf_s": 1.0, "repo_tokens": 640})
    df = generate_sessions(np.random.default_rng(7), p)
    assert len(df) == 3_000
    share = np.bincount(df["repo_id"].to_numpy(np.int64), minlength=3) / 3_000
    np.testing.assert_allclose(share, np.array([6, 3, 2]) / 11, atol=0.03)
    contexts = df["context_id"].to_numpy(np.int64)
    np.testing.assert_array_equal(np.sort(contexts), np.arange(3_000))


def test_a_length_of_mean_zero_is_no_tokens():
    # no user message: a session's first call reads only the shared 192 tokens
    p = SessionParams(**{**FIXED, "user_tokens_mean": 0.0, "batches_mean": 0.0},
                      spawn_fraction=0.0)
    df = generate_sessions(np.random.default_rng(8), p)
    assert (df.groupby("session_id").head(1)["input_tokens"] == 192).all()


def test_sessions_start_at_their_rate_by_count_or_over_a_window():
    one_call = {**FIXED, "batches_mean": 0.0, "spawn_fraction": 0.0}
    # 2,000 sessions at 4 a second: the last starts near 500 s (σ ≈ 2 %)
    df = generate_sessions(np.random.default_rng(9), SessionParams(
        **{**one_call, "sessions": 2_000}, session_rate=4.0))
    assert len(df) == 2_000
    assert df["arrival_at"].max() == pytest.approx(500.0, rel=0.08)
    # every session that starts in 300 s at 2 a second: ~600 (σ ≈ 4 %), all inside
    df = generate_sessions(np.random.default_rng(9), SessionParams(
        **{**one_call, "sessions": 0}, session_rate=2.0, duration_time=300.0))
    assert len(df) == pytest.approx(600, rel=0.15)
    assert df["arrival_at"].min() < 5.0 and 295.0 < df["arrival_at"].max() < 300.0


def test_session_starts_in_a_window_are_a_poisson_process_from_zero():
    from workloads.sessions import _Generator

    g = _Generator(np.random.default_rng(10), SessionParams(
        **{**FIXED, "sessions": 0}, session_rate=2.0, duration_time=10.0))
    runs = [g.arrivals() for _ in range(500)]
    # its first start is exponential of mean 1 / rate = 0.5 s, its count Poisson of mean 20
    assert np.mean([r[0] for r in runs]) == pytest.approx(0.5, rel=0.15)
    assert np.mean([len(r) for r in runs]) == pytest.approx(20.0, rel=0.05)
