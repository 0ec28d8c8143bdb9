"""The mixed fleet: sub-agents over one repository, private long-context sessions that move
between GPUs, short chats — one trace, each population from its own stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator import Scenario
from simulator.errors import UserError
from simulator.runner import load_trace
from workloads.mixed import MixedFleetParams, generate_mixed_fleet
from workloads.schema import validate

SMALL = MixedFleetParams(duration_time=30.0, subagents=4, task_rate=0.1, repo_tokens=4096,
                         private_rate=0.3, private_tokens=8192, chat_rate=1.0)


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
    private = df[np.array(df.attrs["population"]) == "private"]
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
    assert not dq[np.array(dq.attrs["population"]) == "private"]["session_id"].is_unique


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

