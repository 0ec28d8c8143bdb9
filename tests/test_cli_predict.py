"""``kvfabric predict``: the table, the JSON keys of DESIGN.md, the sweep and plot, clean errors."""

import json

import pytest

import topologies
from simulator.cli import main
from simulator.cli.predict import parse_sweep, sweep_points
from simulator.costmodel import CostModel
from simulator.errors import UserError


def run(capsys, *args) -> str:
    main(["predict", *args])
    return capsys.readouterr().out


def test_json_has_the_design_keys_and_matches_the_library(capsys):
    out = json.loads(run(capsys, "--model", "deepseek-v3.2", "--topology", "dgx_h100:nodes=2",
                         "--src", "n0/gpu0", "--dst", "n1/gpu0", "--blocks", "32",
                         "--stack", "ibgda", "--json"))
    assert out["decision"] in ("route", "fetch", "local")
    cm = CostModel("deepseek-v3.2", topologies.build("dgx_h100", nodes=2), "ibgda")
    for option in ("route", "fetch", "local"):
        assert set(out[option]) == {"probe", "transfer", "compute", "return", "merge", "total"}
        assert out[option] == pytest.approx(cm.option(option, "n0/gpu0", "n1/gpu0", 32)
                                            .as_dict(), rel=1e-12)
    assert out["decision"] == cm.decide("n0/gpu0", "n1/gpu0", 32) == "route"
    assert out["per_token"]["route"] == pytest.approx(61 * out["route"]["total"])
    assert out["crossover"]["blocks"] == pytest.approx(cm.crossover("n0/gpu0", "n1/gpu0"))


def test_block_tokens_and_batch_change_the_answer(capsys):
    base = json.loads(run(capsys, "--blocks", "8", "--json"))
    bigger = json.loads(run(capsys, "--blocks", "8", "--block-tokens", "128", "--json"))
    batched = json.loads(run(capsys, "--blocks", "8", "--batch", "4", "--json"))
    assert bigger["fetch"]["transfer"] > base["fetch"]["transfer"]
    assert bigger["route"]["transfer"] == base["route"]["transfer"]
    assert batched["route"]["probe"] == base["route"]["probe"]  # one probe for the batch
    assert batched["route"]["transfer"] == pytest.approx(4 * base["route"]["transfer"])



def test_the_readmes_crossover_examples_cross_and_one_option_everywhere_gives_none(capsys):
    # README.md's tour and Python snippet: each copy read 8 times, so fetch wins below the
    # crossover and route above; with reuse 1 route wins at every block count (None, "none")
    cm = CostModel("deepseek-v3.2", topologies.build("dgx_h100", nodes=2), "ibgda")
    assert cm.crossover("n0/gpu0", "n1/gpu0", "blocks") is None
    k = cm.crossover("n0/gpu0", "n1/gpu0", "blocks", reuse=8)
    assert k == pytest.approx(158.3, abs=0.05)
    assert cm.decide("n0/gpu0", "n1/gpu0", blocks=k - 1, reuse=8) == "fetch"
    assert cm.decide("n0/gpu0", "n1/gpu0", blocks=k + 1, reuse=8) == "route"
    tour = ["--model", "glm-5", "--topology", "dgx_h100:nodes=4", "--src", "n0/gpu0",
            "--dst", "n3/gpu0", "--blocks", "64", "--sweep", "blocks=1:4096"]
    assert "route = fetch at blocks per query: none (the same side wins)" in run(capsys, *tour)
    assert "route = fetch at blocks per query: 143.7\n" in run(capsys, *tour, "--reuse", "8")


def test_table_shows_phases_decision_and_crossover(capsys):
    text = run(capsys, "--blocks", "32", "--model", "glm-5")
    for word in ("probe", "transfer", "compute", "return", "merge", "total", "all 78 layers",
                 "decision", "route = fetch at blocks per query"):
        assert word in text


def test_sweep_prints_the_crossover_and_saves_a_plot(capsys, tmp_path):
    png = tmp_path / "curve.png"
    text = run(capsys, "--sweep", "blocks=1:4096", "--plot", str(png))
    assert "Sweep" in text and "4096" in text and "route = fetch at blocks per query: " in text
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    for profile in ("roofline", "measured"):
        out = json.loads(run(capsys, "--sweep", "blocks=1:64", "--json", "--profile", profile))
        assert [row["blocks"] for row in out["sweep"]] == [1, 2, 4, 8, 16, 32, 64]
        k = out["crossover"]["blocks"]
        if profile == "roofline":  # the roofline's crossover (docs/costmodel.md: 1.87 blocks)
            assert k == pytest.approx(1.868, abs=1e-3)
        wins = {("fetch" if row["fetch"] < row["route"] else "route") for row in out["sweep"]}
        for row in out["sweep"]:  # the decision between route and fetch flips at the crossover
            cheaper = "fetch" if row["fetch"] < row["route"] else "route"
            if k is None:  # no crossover: one side wins at every block count
                assert len(wins) == 1
            else:
                assert cheaper == ("fetch" if row["blocks"] < k else "route")


def test_topology_file_is_accepted(capsys, tmp_path):
    f = tmp_path / "two.toml"
    topologies.dump(topologies.build("dgx_h100", nodes=2), f)
    out = json.loads(run(capsys, "--topology", str(f), "--blocks", "4", "--json"))
    ref = json.loads(run(capsys, "--blocks", "4", "--json"))
    assert out["route"] == ref["route"] and out["fetch"] == ref["fetch"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dst", "n7/gpu0", "--blocks", "4"], "--dst 'n7/gpu0'"),
        (["--src", "n0/nic0", "--blocks", "4"], "--src 'n0/nic0'"),
        (["--model", "gpt-9", "--blocks", "4"], "unknown model 'gpt-9'"),
        (["--stack", "carrier-pigeon", "--blocks", "4"], "unknown network stack"),
        (["--topology", "dgx_h100:nodes=zero", "--blocks", "4"], "nodes"),
        ([], "--blocks"),
        (["--sweep", "batch=1:4"], "--sweep"),
        (["--blocks", "4", "--plot", "x.png"], "--plot"),
        (["--blocks", "-1"], "--blocks -1"),
        # the home's own GPU: nothing to route or fetch (the crossover search answered 1.5e18
        # blocks there, and the table priced a fetch of blocks already in place)
        (["--src", "n0/gpu3", "--dst", "n0/gpu3", "--blocks", "4"],
         "--dst 'n0/gpu3': the home's own GPU"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["predict", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_sweep_helpers():
    assert parse_sweep("blocks=1:4096") == (1.0, 4096.0)
    assert sweep_points(3, 20) == [3, 4, 8, 16, 20]
    with pytest.raises(UserError):
        parse_sweep("blocks=8:2")
