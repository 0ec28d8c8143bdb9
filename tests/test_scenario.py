"""Scenario TOML: a good file loads into frozen specs; every bad field names itself and the fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from simulator.errors import UserError
from simulator.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
name = "tiny"
seed = 3
stack = "nccl"
policies = ["route", "fetch"]

[topology]
preset = "dgx_h100"
nodes = 2

[model]
name = "deepseek-v3.2"
selection = "dsa"

[workload]
kind = "trace"
trace = "mooncake_conversation"
time_scale = 0.5

[placement]
scheme = "replicate:2"
home = "repo_affinity"
reserve_fraction = 0.2

[engine]
max_batch = 8
layer_groups = 4
max_requests = 10
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_good_scenario_loads_into_frozen_specs(tmp_path):
    s = Scenario.load(write(tmp_path, GOOD))
    assert (s.name, s.seed, s.stack, s.policies) == ("tiny", 3, "nccl", ("route", "fetch"))
    assert (s.topology.preset, s.topology.nodes) == ("dgx_h100", 2)
    assert (s.model.name, s.model.selection) == ("deepseek-v3.2", "dsa")
    assert (s.workload.kind, s.workload.trace, s.workload.time_scale) == (
        "trace", "mooncake_conversation", 0.5)
    assert (s.placement.scheme, s.placement.replicas, s.placement.home) == (
        "replicate", 2, "repo_affinity")
    assert s.placement.reserve_fraction == 0.2
    assert (s.engine.max_batch, s.engine.layer_groups, s.engine.max_requests) == (8, 4, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 4  # type: ignore[misc]
    assert s.with_changes(seed=5).seed == 5


def test_defaults_fill_optional_sections():
    s = Scenario.from_dict({
        "topology": {"preset": "dgx_h100"},
        "model": {"name": "deepseek-v3.2"},
        "workload": {"kind": "agentic", "agentic": {"repo_tokens": 1024}},
    })
    assert s.policies == ("route", "fetch", "adaptive")
    assert s.placement.scheme == "first_writer" and s.engine.layer_groups == 0
    assert s.workload.agentic_params() == {"repo_tokens": 1024}


@pytest.mark.parametrize(
    ("patch", "field", "hint"),
    [
        ('seed = -1', "seed", ">= 0"),
        ('stack = "tcp"', "stack", "ideal"),
        ('policies = ["route", "teleport"]', "policies", "teleport"),
        ('colour = "red"', "colour", "known fields"),
    ],
)
def test_bad_top_level_fields_name_themselves(tmp_path, patch, field, hint):
    text = patch + "\n" + "\n".join(
        line for line in GOOD.splitlines() if not line.startswith(patch.split(" ")[0] + " ")
    )
    with pytest.raises(UserError) as exc:
        Scenario.load(write(tmp_path, text))
    msg = str(exc.value)
    assert str(tmp_path / "s.toml") in msg and f"'{field}'" in msg and hint in msg


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("nodes = 2", "nodes = 0", "topology.nodes"),
        ('selection = "dsa"', 'selection = "magic"', "model.selection"),
        ('kind = "trace"', 'kind = "poisson"', "workload.kind"),
        ("time_scale = 0.5", "time_scale = -1", "workload.time_scale"),
        ('scheme = "replicate:2"', 'scheme = "replicate:x"', "placement.scheme"),
        ('scheme = "replicate:2"', 'scheme = "striped"', "placement.scheme"),
        ("reserve_fraction = 0.2", "reserve_fraction = 1.5", "placement.reserve_fraction"),
        ("max_batch = 8", "max_batch = 0", "engine.max_batch"),
        ("max_batch = 8", 'max_batch = "eight"', "engine.max_batch"),
        ("layer_groups = 4", "layer_groups = true", "engine.layer_groups"),
        ("max_requests = 10", "max_requests = 10\nspeed = 2", "engine.speed"),
    ],
)
def test_bad_section_fields_name_the_dotted_field(tmp_path, old, new, field):
    assert old in GOOD
    with pytest.raises(UserError) as exc:
        Scenario.load(write(tmp_path, GOOD.replace(old, new)))
    assert f"'{field}'" in str(exc.value)


def test_missing_sections_and_syntax_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="'model'.*missing"):
        Scenario.from_dict({"topology": {"preset": "dgx_h100"}, "workload": {"trace": "x"}})
    with pytest.raises(UserError, match="not valid TOML"):
        Scenario.load(write(tmp_path, "name = \n"))
    with pytest.raises(UserError, match="not found"):
        Scenario.load(tmp_path / "nope.toml")
    with pytest.raises(UserError, match="exactly one"):
        Scenario.from_dict({"topology": {"preset": "dgx_h100", "file": "x.toml"},
                            "model": {"name": "m"}, "workload": {"trace": "t"}})


def test_include_merges_a_calibration_file_relative_to_the_scenario(tmp_path):
    write(tmp_path, "launch_time = 4e-6\n[kernels]\nmemory_efficiency = 0.8\n", "cal.toml")
    s = Scenario.load(write(tmp_path, 'include = "cal.toml"\n' + GOOD))
    assert s.calibration_dict() == {"launch_time": 4e-6, "kernels": {"memory_efficiency": 0.8}}
    with pytest.raises(UserError, match="'include'.*calibrate"):
        Scenario.load(write(tmp_path, 'include = "missing.toml"\n' + GOOD))


def shipped(kind: str) -> list[Path]:
    import tomllib

    return [p for p in sorted((ROOT / "scenarios").glob("*.toml"))
            if ("sweep" in tomllib.loads(p.read_text())) == (kind == "sweep")]


def test_the_shipped_scenarios_and_sweeps_are_there():
    names = {p.stem for p in shipped("scenario")}
    assert {"agentic_repo", "mooncake_conversation", "rag_spans", "nested_generation",
            "copilot_agents", "lamina_llama3_70b"} <= names and len(names) >= 6
    assert [p.stem for p in shipped("sweep")] == ["example_sweep"]


@pytest.mark.parametrize("path", [p for p in shipped("scenario") if p.stem != "cluster_1024"],
                         ids=lambda p: p.stem)
def test_every_shipped_scenario_passes_the_checks_a_run_makes_first(path):
    # `kvfabric run NAME` checks a scenario before any work (runner.check: the workload's
    # fields, its size against memory, the topology, KV room); until stop 29 the size check
    # built a preset's agentic parameters as plain AgenticParams and copilot_agents crashed
    # with a TypeError. (cluster_1024's graph takes seconds to build: test_a_moe_scenarios_…
    # checks its topology.)
    from simulator.runner import check

    sc = Scenario.load(path)
    check(sc, tuple(sc.policies))


@pytest.mark.parametrize("agentic", [{"preset": "copilot_2026", "sessions": 4, "bogus": 1},
                                     {"subagents": 4, "bogus": 1},
                                     {"preset": "no_such_preset"}])
def test_a_bad_agentic_field_is_named_before_any_work(agentic):
    from simulator.runner import check

    base = Scenario.load(ROOT / "scenarios" / "copilot_agents.toml")
    sc = dataclasses.replace(base, workload=dataclasses.replace(
        base.workload, agentic=tuple(sorted(agentic.items()))))
    with pytest.raises(UserError, match="field 'workload.agentic'"):
        check(sc, ("fetch",))


def _section_value(section: str, key: str, s: Scenario):
    """What the loaded scenario holds for ``[section] key`` (the TOML's spelling)."""
    if section == "workload" and key == "agentic":
        return s.workload.agentic_params()
    if section == "workload" and key == "spans":
        return s.workload.spans_params()
    if section == "workload" and key == "mixed":
        return s.workload.mixed_params()
    if section == "disaggregation":
        return getattr(s.disaggregation, key)
    return getattr(getattr(s, section), key)


@pytest.mark.parametrize("path", shipped("scenario"), ids=lambda p: p.stem)
def test_a_shipped_scenario_holds_the_values_its_file_gives(path):
    """Every field the file sets is loaded as written (read here with tomllib); every field of
    a section it leaves out keeps its documented default."""
    import tomllib

    raw = tomllib.loads(path.read_text())
    s = Scenario.load(path)
    assert (s.name, s.seed, s.stack, s.policies) == (
        raw["name"], raw["seed"], raw["stack"], tuple(raw["policies"]))
    for section in ("topology", "model", "workload", "placement", "engine", "disaggregation"):
        given = dict(raw.get(section, {}))
        if section == "placement" and ":" in given.get("scheme", ""):  # "replicate:K"
            scheme, k = given.pop("scheme").split(":")
            assert (s.placement.scheme, s.placement.replicas) == (scheme, int(k))
        for key, value in given.items():
            assert _section_value(section, key, s) == value, (section, key)
        spec = s.disaggregation if section == "disaggregation" else getattr(s, section)
        if spec is None:
            assert section == "disaggregation" and "disaggregation" not in raw
            continue
        defaults = type(spec)()
        for f in dataclasses.fields(spec):
            if f.name not in given and not (section == "placement" and f.name == "replicas"):
                if section == "topology" and "spec" in given and f.name == "preset":
                    assert s.topology.preset is None  # a spec string replaces the preset
                    continue
                assert getattr(spec, f.name) == getattr(defaults, f.name), (section, f.name)
    assert s.calibration_dict() == raw.get("calibration", {})


def test_the_example_sweep_has_every_grid_combination_over_its_base():
    import itertools
    import tomllib

    from simulator.sweep import Sweep

    path = ROOT / "scenarios" / "example_sweep.toml"
    raw = tomllib.loads(path.read_text())
    base = tomllib.loads((path.parent / raw["sweep"]["base"]).read_text())
    sw = Sweep.load(path)
    points = sw.points()
    grid = raw["grid"]
    expected = {tuple(sorted(zip(grid, combo, strict=True)))
                for combo in itertools.product(*grid.values())}
    assert len(points) == 2 * 2 * 2 and {tuple(sorted(p.params)) for p in points} == expected
    assert len({p.point_id for p in points}) == len(points)
    for p in points:
        params = dict(p.params)
        sc = Scenario.from_dict(sw.scenario_data(params), base=path.parent)
        agentic = sc.workload.agentic_params()
        assert sc.stack == params["stack"]
        assert agentic["subagents"] == params["workload.agentic.subagents"]
        # the sweep's [base] table overrides the base file; the rest is the file's
        for key, value in raw["base"]["workload"]["agentic"].items():
            assert agentic[key] == value
        assert agentic["repo_tokens"] == base["workload"]["agentic"]["repo_tokens"]
        assert (sc.model.name, sc.topology.nodes) == (base["model"]["name"],
                                                      base["topology"]["nodes"])


def test_span_workloads_and_the_reuse_rules_validate():
    base = {"topology": {"spec": "single_node:gpus=1"}, "model": {"name": "llama-3.1-8b"}}
    sc = Scenario.from_dict({**base, "workload": {"kind": "spans", "spans": {
        "shape": "nested", "candidates": 4}}, "placement": {"reuse": "none"}})
    assert sc.workload.spans_params() == {"shape": "nested", "candidates": 4}
    assert sc.placement.reuse == "none"
    with pytest.raises(UserError, match="placement.reuse.*prefix, span, none"):
        Scenario.from_dict({**base, "workload": {"kind": "spans"},
                            "placement": {"reuse": "lru"}})
    with pytest.raises(UserError, match="workload.trace.*not used with kind = 'spans'"):
        Scenario.from_dict({**base, "workload": {"kind": "spans", "trace": "x"}})
    with pytest.raises(UserError, match="workload.spans.*table"):
        Scenario.from_dict({**base, "workload": {"kind": "spans", "spans": 3}})


def test_span_workload_fields_are_checked_at_load_and_when_the_trace_is_made():
    from simulator.engine.trace import load_trace

    base = {"topology": {"spec": "single_node:gpus=1"}, "model": {"name": "llama-3.1-8b"}}
    good = Scenario.from_dict({**base, "workload": {"kind": "spans"}})
    for spans, message in (({"shape": "tree"}, "workload.spans.shape.*rag, nested"),
                           ({"shape": "rag", "docs": 3}, "workload.spans.*docs"),
                           ({"shape": "nested", "candidates": 0}, "candidates must be > 0")):
        with pytest.raises(UserError, match=message):
            Scenario.from_dict({**base, "workload": {"kind": "spans", "spans": spans}})
        # a workload changed in Python after the load: the trace's maker checks it too
        sc = good.with_changes(workload=dataclasses.replace(
            good.workload, spans=tuple(sorted(spans.items()))))
        with pytest.raises(UserError, match=message):
            load_trace(sc, 0)


@pytest.mark.parametrize(("path", "gpus", "ep", "redundant"), [
    ("scenarios/mixed_fleet.toml", 16, 16, 0),
    ("scenarios/mooncake_conversation.toml", 16, 16, 0),
    ("scenarios/copilot_agents.toml", 16, 16, 0),
    ("scenarios/agentic_cluster.toml", 64, 64, 0),
    ("scenarios/cluster_128.toml", 128, 128, 0),  # EP128: 2 routed experts a GPU, as EP144's
    ("scenarios/cluster_1024.toml", 1024, 144, 32),  # as DeepSeek deploys decode (EP144)
])
def test_a_moe_scenarios_gpus_hold_a_deployments_weights(path, gpus, ep, redundant):
    """Every GPU of these runs decodes its own batch: its ``weights_per_gpu`` is what the
    deployment model gives a rank of data-parallel attention (every non-expert weight) with its
    share of the routed experts, not the model spread evenly over the cluster."""
    from simulator.deployment.spec import PoolSpec
    from simulator.deployment.weights import weights_per_gpu
    from simulator.models import model
    from simulator.runner import check

    sc = Scenario.load(path)
    if gpus <= 64:  # the 1,024-GPU graph takes seconds to build
        import topologies

        assert len(list(topologies.gpus(check(sc, ("fetch",))))) == gpus
    arch = model(sc.model.name)
    want = weights_per_gpu(arch, PoolSpec(attention_dp=ep, redundant_experts=redundant))
    assert sc.placement.weights_per_gpu == pytest.approx(want, rel=2e-3)
    assert sc.placement.weights_per_gpu > 1.3 * arch.weight_bytes / gpus
