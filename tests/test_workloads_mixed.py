"""The mixed fleet: sub-agents over one repository, private long-context sessions that move
between GPUs, short chats — one trace, each population from its own stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator import Scenario
from simulator.errors import UserError
from simulator.runner import load_trace
from workloads.mixed import MixedFleetParams, generate_mixed_fleet
from workloads.schema import validate

SMALL = MixedFleetParams(duration_time=30.0, subagents=4, task_rate=0.1, repo_tokens=4096,
                         private_rate=0.3, private_tokens=8192, chat_rate=1.0)


def _population(df, name):
    """The rows of one population (``"subagent"``, ``"private"``, ``"chat"``)."""
    return df[np.array(df.attrs["population"]) == name]


def test_three_populations_in_time_order_with_disjoint_blocks():
    df = generate_mixed_fleet(np.random.default_rng(1), SMALL)
    validate(df)
    pop = np.array(df.attrs["population"])
    assert set(pop) == {"subagent", "private", "chat"}
    assert np.all(np.diff(df["arrival_at"]) >= 0)
    blocks = {p: set(np.concatenate(df["block_ids"][pop == p].tolist())) for p in set(pop)}
    assert not blocks["chat"] & (blocks["private"] | blocks["subagent"])
    assert not blocks["private"] & blocks["subagent"]
    # sub-agents read one repository (shared blocks); parents point at their orchestrator
    agents = df[pop == "subagent"]
    assert set(agents["repo_id"].dropna()) == {0}
    repo = set.intersection(*(set(b.tolist()) for b in agents["block_ids"]))
    assert len(repo) >= SMALL.repo_tokens // 64
    parents = agents["parent_id"].dropna().astype(int)
    assert len(parents) and all(pop[p] == "subagent" and p < i
                                for i, p in zip(parents.index, parents, strict=True))
    # chats: one request per session, no repository
    assert df[pop == "chat"]["session_id"].is_unique


def test_a_private_session_extends_its_document_turn_after_turn_on_any_gpu():
    p = MixedFleetParams(**{**SMALL.to_dict(), "private_turns_mean": 4.0})
    df = generate_mixed_fleet(np.random.default_rng(2), p)
    private = _population(df, "private")
    # without affinity every turn is a session of its own (the balancer places it) …
    assert private["session_id"].is_unique
    # … while its prompt extends the previous turn's: the earlier full blocks are kept
    by_doc: dict[int, list] = {}
    for b in private["block_ids"]:
        by_doc.setdefault(int(b[0]), []).append(b)
    turns = max(by_doc.values(), key=len)
    assert len(turns) >= 2, "the seed should draw a session with two turns"
    for first, then in zip(turns, turns[1:], strict=False):
        kept = len(first) - 1
        assert np.array_equal(then[:kept], first[:kept]) and len(then) > len(first)
    # with affinity the turns of a session share one id (one home)
    q = MixedFleetParams(**{**p.to_dict(), "private_affinity": True})
    dq = generate_mixed_fleet(np.random.default_rng(2), q)
    assert not _population(dq, "private")["session_id"].is_unique


def test_same_seed_same_trace_and_populations_can_be_switched_off():
    a = generate_mixed_fleet(np.random.default_rng(3), SMALL)
    b = generate_mixed_fleet(np.random.default_rng(3), SMALL)
    assert a.drop(columns=["block_ids", "spans"]).equals(b.drop(columns=["block_ids", "spans"]))
    assert all(np.array_equal(x, y) for x, y in zip(a["block_ids"], b["block_ids"], strict=True))
    only = MixedFleetParams(**{**SMALL.to_dict(), "task_rate": 0.0, "private_rate": 0.0})
    c = generate_mixed_fleet(np.random.default_rng(3), only)
    assert set(c.attrs["population"]) == {"chat"}
    with pytest.raises(ValueError, match="private_tokens"):
        MixedFleetParams(private_tokens=0)


def test_the_shipped_scenario_loads_and_a_bad_field_is_named(tmp_path):
    sc = Scenario.load("scenarios/mixed_fleet.toml")
    assert sc.workload.kind == "mixed"
    trace = load_trace(sc.with_changes(engine=type(sc.engine)(max_requests=20)), 0)
    assert len(trace) == 20
    bad = tmp_path / "bad.toml"
    text = Path("scenarios/mixed_fleet.toml").read_text()
    bad.write_text(text.replace("[workload.mixed]", "[workload.mixed]\nsubagentz = 3"))
    with pytest.raises(UserError, match="workload.mixed"):
        Scenario.load(bad)
    bad.write_text(text.replace("[workload.mixed]", "[workload.mixed]\nprivate_rate = -1.0"))
    with pytest.raises(UserError, match="workload.mixed.private_rate"):
        Scenario.load(bad)



def test_private_turns_and_chats_of_fixed_lengths_are_laid_out_and_placed_exactly():
    # no spread, no think time: a session's turn t reads the 1,000-token document and t
    # answers (200) and user messages (56); it starts when the previous answer is done
    # (200 tokens × 20 ms); a chat is 100 tokens (2 blocks) and answers 30
    p = MixedFleetParams(duration_time=200.0, task_rate=0.0, private_rate=0.2,
                         private_tokens=1_000, private_turns_mean=3.0,
                         private_output_tokens_mean=200.0, private_user_tokens_mean=56.0,
                         private_think_time_mean=0.0, private_affinity=True, chat_rate=0.5,
                         chat_tokens_mean=100.0, chat_output_tokens_mean=30.0,
                         length_sigma=0.0)
    df = generate_mixed_fleet(np.random.default_rng(3), p)
    private = _population(df, "private")
    assert private["session_id"].nunique() > 20
    for _, s in private.groupby("session_id"):
        t = np.arange(len(s))
        np.testing.assert_array_equal(s["input_tokens"], 1_000 + 256 * t)
        assert (s["output_tokens"] == 200).all()
        np.testing.assert_allclose(np.diff(s["arrival_at"]), 200 * 0.02, rtol=1e-9)
        assert [len(b) for b in s["block_ids"]] == [-(-(1_000 + 256 * k) // 64) for k in t]
        # a turn's last block is partly filled; the next turn fills it, so it is new content
        # under a fresh id, while the full blocks before it keep theirs
        for a, b in zip(s["block_ids"], s["block_ids"].iloc[1:], strict=False):
            assert a[-1] not in b and (b[: len(a) - 1] == a[:-1]).all()
    chats = _population(df, "chat")
    assert len(chats) > 50 and chats["session_id"].is_unique
    assert (chats["input_tokens"] == 100).all() and (chats["output_tokens"] == 30).all()
    assert (chats["block_ids"].map(len) == 2).all()
    ids = np.concatenate(chats["block_ids"].tolist())
    assert len(np.unique(ids)) == len(ids)  # every chat its own blocks
    owner: dict[int, int] = {}  # each private block belongs to one session
    for sid, blocks in zip(private["session_id"], private["block_ids"], strict=True):
        for b in blocks.tolist():
            assert owner.setdefault(b, sid) == sid
    assert private["parent_id"].isna().all() and chats["parent_id"].isna().all()
    assert private["repo_id"].isna().all() and chats["repo_id"].isna().all()
    assert ids.min() > max(int(b.max()) for b in private["block_ids"])  # after the sessions'
    assert df.attrs["params"] == p.to_dict() and MixedFleetParams(**p.to_dict()) == p


def test_private_sessions_and_chats_arrive_at_their_rates_from_the_window_start():
    p = MixedFleetParams(duration_time=1_000.0, task_rate=0.0, private_rate=0.5,
                         private_turns_mean=1.0, chat_rate=1.0, private_tokens=64,
                         chat_tokens_mean=64.0)
    df = generate_mixed_fleet(np.random.default_rng(4), p)
    for name, rate in (("private", 0.5), ("chat", 1.0)):
        at = _population(df, name)["arrival_at"].to_numpy()
        assert len(at) == pytest.approx(1_000 * rate, rel=0.1)
        assert at.min() < 20.0 and 980.0 < at.max() < 1_000.0
    none = MixedFleetParams(duration_time=10.0, task_rate=0.0, private_rate=0.0, chat_rate=1.0)
    assert set(generate_mixed_fleet(np.random.default_rng(0), none).attrs["population"]) == {
        "chat"}


def test_the_sub_agents_are_the_agentic_generator_over_one_repository():
    p = MixedFleetParams(duration_time=30.0, subagents=3, task_rate=0.2, repo_tokens=8_192,
                         agent_turns_mean=2.5, agent_output_tokens_mean=90.0,
                         agent_tool_tokens_mean=300.0, length_sigma=0.4,
                         decode_time_per_token=0.03, block_tokens=32)
    a = p.agentic()
    assert (a.duration_time, a.task_rate, a.n_repos, a.repo_tokens, a.repo_size_sigma) == (
        30.0, 0.2, 1, 8_192, 0.0)
    assert (a.subagents, a.turns_mean, a.output_tokens_mean, a.tool_tokens_mean) == (
        3, 2.5, 90.0, 300.0)
    assert (a.length_sigma, a.decode_time_per_token, a.block_tokens) == (0.4, 0.03, 32)
    assert a.repo_min_tokens == 8_192  # no spread: the floor never binds
    assert MixedFleetParams(task_rate=0.0).agentic().task_rate > 0  # valid, never generated


def test_mixed_fleet_parameters_at_their_edges():
    for name in ("duration_time", "subagents", "repo_tokens", "agent_turns_mean",
                 "agent_output_tokens_mean", "private_tokens", "private_turns_mean",
                 "private_output_tokens_mean", "chat_tokens_mean", "chat_output_tokens_mean",
                 "block_tokens"):
        with pytest.raises(ValueError, match=name):
            MixedFleetParams(**{name: 0})
    for name in ("task_rate", "private_rate", "chat_rate", "agent_tool_tokens_mean",
                 "private_user_tokens_mean", "private_think_time_mean", "length_sigma",
                 "decode_time_per_token"):
        MixedFleetParams(**{name: 0})
        with pytest.raises(ValueError, match=name):
            MixedFleetParams(**{name: -1})
    MixedFleetParams(agent_turns_mean=1.0, private_turns_mean=1.0)
    for name in ("agent_turns_mean", "private_turns_mean"):
        with pytest.raises(ValueError, match="turns_mean"):
            MixedFleetParams(**{name: 0.99})


def test_without_sub_agents_the_private_ids_start_at_zero_and_a_message_may_be_empty():
    # no task arrives (a rate of 0, or one too small to draw any in 10 s): the sessions'
    # blocks are counted from 0; without user messages a turn grows by its answer alone
    for rate in (0.0, 1e-6):
        p = MixedFleetParams(duration_time=10.0, task_rate=rate, private_rate=1.0,
                             private_tokens=640, private_turns_mean=3.0,
                             private_output_tokens_mean=64.0, private_user_tokens_mean=0.0,
                             chat_rate=0.0, length_sigma=0.0, private_affinity=True)
        df = generate_mixed_fleet(np.random.default_rng(5), p)
        assert set(df.attrs["population"]) == {"private"}
        assert min(int(b.min()) for b in df["block_ids"]) == 0
        for _, s in df.groupby("session_id"):
            np.testing.assert_array_equal(s["input_tokens"], 640 + 64 * np.arange(len(s)))


def test_a_fleet_of_nothing_expects_nothing_and_half_blocks_round_up():
    empty = MixedFleetParams(task_rate=0.0, private_rate=0.0, chat_rate=0.0)
    assert empty.expected_size() == (0.0, 0.0)
    # prompts of 1.5 blocks, one turn, no spread: each is 2 blocks, as the estimate says
    p = MixedFleetParams(duration_time=100.0, task_rate=0.0, private_rate=1.0,
                         private_tokens=96, private_turns_mean=1.0, chat_rate=2.0,
                         chat_tokens_mean=96.0, length_sigma=0.0)
    requests, refs = p.expected_size()
    assert (requests, refs) == (300.0, 600.0)
    df = generate_mixed_fleet(np.random.default_rng(6), p)
    assert (df["block_ids"].map(len) == 2).all()


def test_every_sub_agent_names_its_plan_among_the_other_populations():
    # plans every 0.5 s with long outputs: the second plan comes before the first sub-agents,
    # and private turns and chats are interleaved with them
    p = MixedFleetParams(duration_time=20.0, subagents=2, task_rate=2.0, repo_tokens=1_024,
                         agent_output_tokens_mean=400.0, private_rate=1.0,
                         private_tokens=1_024, chat_rate=2.0)
    df = generate_mixed_fleet(np.random.default_rng(7), p)
    population = np.array(df.attrs["population"])
    agents = df[population == "subagent"]
    plans = agents[agents["parent_id"].isna()]
    assert len(plans) > 20 and pd.isna(agents["parent_id"].iloc[1])  # the second agent row
    children = agents[agents["parent_id"].notna()]
    parents = children["parent_id"].to_numpy(np.int64)
    assert set(parents) <= set(plans.index) and (parents == plans.index[1]).any()
    assert (df["arrival_at"].to_numpy()[parents] <= children["arrival_at"].to_numpy()).all()
