"""Calibration: the fits recover the published figures, bad CSVs are named errors, TOML round trips."""

import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.cli import main
from simulator.errors import UserError
from simulator.gpu import KernelModel
from simulator.gpu import calibration as cal
from simulator.hardware import STACKS
from simulator.units import GBps, TBps, us

SHIPPED = Path(__file__).resolve().parent.parent / "calibration"

# -- known answers: the shipped CSVs give back REFERENCE.md's figures -------------------------


def test_lamina_ibgda_pingpong_recovers_33us_and_45_7_GBps():
    fit = cal.fit_line(cal.read_csv(SHIPPED / "lamina_ibgda_roce400.csv"))
    fab = cal.fabric_coefficients(fit, line_rate=GBps(50), path_latency_time=us(2.2))
    assert 2 * fab["message_fixed_time"] == pytest.approx(us(33.0), rel=1e-3)  # Lamina §6.3 RTT
    assert fab["rate"] == pytest.approx(GBps(45.7), rel=1e-3)
    # …and the catalog's ibgda stack, derived by the same rule in hardware.py.
    assert fab["overhead_time"] == pytest.approx(STACKS["ibgda"].inter_node_overhead_time,
                                                 rel=1e-3)
    assert fab["efficiency"] == pytest.approx(STACKS["ibgda"].inter_node_efficiency, rel=1e-3)
    assert fit.max_relative_residual < 1e-3  # rows are rounded to 4 significant digits


def test_lamina_nccl_pingpong_recovers_66_6us_and_35_5_GBps():
    fit = cal.fit_line(cal.read_csv(SHIPPED / "lamina_nccl_roce400.csv"))
    fab = cal.fabric_coefficients(fit, line_rate=GBps(50), path_latency_time=us(2.2))
    assert 2 * fab["message_fixed_time"] == pytest.approx(us(66.6), rel=1e-3)
    assert fab["efficiency"] == pytest.approx(STACKS["nccl"].inter_node_efficiency, rel=1e-3)


def test_flashmla_kernel_rows_recover_3000_GBps_and_the_default_kernel_model():
    fit = cal.fit_line(cal.read_csv(SHIPPED / "flashmla_h800_decode.csv"))
    k = cal.kernel_coefficients(fit, bytes_per_token=1152, hbm_bandwidth=TBps(3.35))
    assert k["effective_bandwidth"] == pytest.approx(3000e9, rel=1e-3)  # FlashMLA README
    defaults = KernelModel()
    assert k["memory_efficiency"] == pytest.approx(defaults.memory_efficiency, rel=1e-3)
    assert k["launch_time"] == pytest.approx(defaults.launch_time, rel=1e-2)


def test_exact_rows_fit_exactly():
    m = cal.Measurements("mem", "pingpong", np.array([0.0, 1e3, 1e6]),
                         np.array([2e-6, 2e-6 + 1e3 / 1e10, 2e-6 + 1e6 / 1e10]), (), ())
    fit = cal.fit_line(m)
    assert fit.intercept == pytest.approx(2e-6, rel=1e-12)
    assert 1 / fit.slope == pytest.approx(1e10, rel=1e-12)
    assert fit.rms_residual < 1e-18


def test_calibration_dict_becomes_kernel_model_and_stack():
    data = {"kernels": {"launch_time": 5e-6, "memory_efficiency": 0.7},
            "fabric": {"overhead_time": 1e-5, "efficiency": 0.8}}
    km = cal.kernel_model(data)
    assert km.launch_time == 5e-6 and km.memory_efficiency == 0.7
    assert km.compute_efficiency == KernelModel().compute_efficiency
    s = cal.stack_spec(data, STACKS["ibgda"])
    assert s.inter_node_overhead_time == 1e-5 and s.inter_node_efficiency == 0.8
    assert s.intra_node_overhead_time == STACKS["ibgda"].intra_node_overhead_time
    assert cal.stack_spec({}, STACKS["nccl"]) == STACKS["nccl"]


# -- bad files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "no rows"),
        ("size,time\n1,2\n", "line 1: header"),
        ("bytes,seconds\n1,2e-6\n2,abc\n", "line 3, column 'seconds': 'abc' is not a number"),
        ("bytes,seconds\n1,2e-6\n2\n", "line 3: 1 columns, expected 2"),
        ("# comment\nbatch,tokens,seconds\n1,10,1e-6\n1,0,1e-6\n", "line 4, column 'tokens'"),
        ("bytes,seconds\n1,2e-6\n", "at least 2"),
        ("bytes,seconds\n5,2e-6\n5,3e-6\n", "same size"),
        ("bytes,seconds\n-5,2e-6\n5,3e-6\n", "line 2, column 'bytes'"),
    ],
)
def test_bad_csv_names_file_line_and_column(tmp_path, text, expected):
    f = tmp_path / "m.csv"
    f.write_text(text)
    with pytest.raises(UserError) as exc:
        cal.read_csv(f)
    assert str(f) in str(exc.value) and expected in str(exc.value)


def test_cli_writes_toml_a_scenario_can_include(tmp_path, capsys):
    out = tmp_path / "cal.toml"
    main(["calibrate", str(SHIPPED / "lamina_ibgda_roce400.csv"),
          str(SHIPPED / "flashmla_h800_decode.csv"), "--line-rate", "50", "--path-latency", "2.2",
          "-o", str(out)])
    printed = capsys.readouterr().out
    assert "residual" in printed and "45.7 GB/s" in printed
    data = tomllib.loads(out.read_text())
    assert data["fabric"]["efficiency"] == pytest.approx(45.7 / 50, rel=1e-3)
    assert cal.kernel_model(data).memory_efficiency == pytest.approx(3000 / 3350, rel=1e-3)
    from simulator.scenario import Scenario  # the scenario loader reads it verbatim

    sc = tmp_path / "s.toml"
    sc.write_text('include = "cal.toml"\n[topology]\npreset = "dgx_h100"\n'
                  '[model]\nname = "deepseek-v3.2"\n[workload]\nkind = "agentic"\n')
    assert Scenario.load(sc).calibration_dict()["fabric"]["rate"] == pytest.approx(45.7e9,
                                                                                   rel=1e-3)


def test_cli_bad_csv_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("bytes,seconds\n1,2e-6\n2,x\n")
    out = tmp_path / "cal.toml"
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(bad), "-o", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


# -- property: the fit recovers any line from noise-free rows ---------------------------------


@given(st.floats(1e-7, 1e-3), st.floats(1e8, 1e13),
       st.lists(st.floats(0, 1e9), min_size=2, max_size=20, unique=True))
def test_fit_recovers_latency_and_bandwidth(t0, rate, sizes):
    x = np.array(sizes)
    if np.ptp(x) < 1e3:
        x = np.append(x, x.max() + 1e6)
    m = cal.Measurements("gen", "pingpong", x, t0 + x / rate, (), ())
    fit = cal.fit_line(m)
    assert fit.intercept == pytest.approx(t0, rel=1e-6, abs=1e-12)
    assert (1 / fit.slope) == pytest.approx(rate, rel=1e-6)


def test_a_run_takes_kernel_fields_from_the_top_level_or_the_kernels_table():
    km = cal.run_kernels({"launch_time": 5e-6, "memory_efficiency": 0.5, "fabric": {},
                          "kernels": {"memory_efficiency": 0.8}, "note": "ignored"})
    assert (km.launch_time, km.memory_efficiency) == (5e-6, 0.8)
    # roofline coefficients select the roofline; nothing at all selects the measured profiles
    assert not isinstance(cal.run_kernels({}), KernelModel)


def _fit(intercept: float, slope: float, fitted=(10.0, 4.0), residuals=(3e-6, -4e-6)):
    return cal.Fit("pingpong", intercept, slope, np.array(fitted), np.array(residuals))


def test_a_fits_residual_figures_by_hand():
    fit = _fit(1e-6, 1e-10, fitted=(10.0, 4.0), residuals=(3.0, -2.0))
    assert fit.rms_residual == pytest.approx(np.sqrt((9 + 4) / 2), rel=1e-12)
    assert fit.max_relative_residual == pytest.approx(0.5, rel=1e-12)  # 2 of 4, not 3 of 10


def test_coefficient_tables_hold_their_inputs_and_clamp_efficiencies_at_one():
    # 1e-10 s per byte is 10 GB/s; a line of 9.6 GB/s is exceeded within a fit's scatter (5 %):
    # efficiency 1, not 1.04
    fab = cal.fabric_coefficients(_fit(5e-6, 1e-10), line_rate=9.6e9, path_latency_time=2e-6)
    assert fab == {"message_fixed_time": 5e-6, "rate": pytest.approx(1e10, rel=1e-12),
                   "rms_residual_time": pytest.approx(np.sqrt(12.5) * 1e-6),
                   "path_latency_time": 2e-6, "overhead_time": pytest.approx(3e-6),
                   "line_rate": 9.6e9, "efficiency": 1.0}
    # a path latency within 5 % above the fixed time: no overhead, not a negative one
    assert cal.fabric_coefficients(_fit(5e-6, 1e-10),
                                   path_latency_time=5.2e-6)["overhead_time"] == 0.0
    # exactly at the scatter's edge: still taken (efficiency 1, no overhead)
    rate = 1.0 / 1e-10
    edge = cal.fabric_coefficients(_fit(5e-6, 1e-10), line_rate=rate / 1.05,
                                   path_latency_time=5e-6 * (1 + cal.FIT_SLACK))
    assert edge["rate"] == (rate / 1.05) * (1 + cal.FIT_SLACK)  # the edge, to the bit
    assert (edge["efficiency"], edge["overhead_time"]) == (1.0, 0.0)
    # past the scatter the two figures contradict each other: refused, not clamped
    with pytest.raises(UserError, match="--line-rate 9.5 GB/s: the rows move 10 GB/s"):
        cal.fabric_coefficients(_fit(5e-6, 1e-10), line_rate=9.5e9)
    with pytest.raises(UserError, match="--path-latency 5.3 µs: more than the measured fixed "
                                        "time of a message \\(5 µs\\)"):
        cal.fabric_coefficients(_fit(5e-6, 1e-10), path_latency_time=5.3e-6)
    # 2e-9 s per token is 500 M tokens/s; × 1,000 B per token = 500 GB/s > a 400 GB/s HBM
    k = cal.kernel_coefficients(_fit(3e-6, 2e-9), bytes_per_token=1000.0, hbm_bandwidth=4e11)
    assert k == {"launch_time": 3e-6, "token_rate": pytest.approx(5e8, rel=1e-12),
                 "rms_residual_time": pytest.approx(np.sqrt(12.5) * 1e-6),
                 "bytes_per_token": 1000.0, "effective_bandwidth": pytest.approx(5e11, rel=1e-12),
                 "hbm_bandwidth": 4e11, "memory_efficiency": 1.0}


def test_a_flat_fit_is_refused_not_divided_by_zero():
    with pytest.raises(UserError, match="ping-pong fit: time does not grow"):
        cal.fabric_coefficients(_fit(1e-6, 0.0))
    with pytest.raises(UserError, match="kernel fit: time does not grow"):
        cal.kernel_coefficients(_fit(1e-6, 0.0))


def test_sizes_of_zero_and_below_one_byte_are_read_and_the_messages_say_what_is_needed(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("bytes,seconds\n0,2e-6\n0.5,3e-6\n")
    assert cal.read_csv(f).x.tolist() == [0.0, 0.5]
    f.write_text("bytes,seconds\n-1,2e-6\n5,3e-6\n")
    with pytest.raises(UserError, match=r"-1 must be a finite number >= 0$"):
        cal.read_csv(f)
    f.write_text("bytes,seconds\n1,0\n5,3e-6\n")
    with pytest.raises(UserError, match=r"0 must be a finite number > 0$"):
        cal.read_csv(f)
    f.write_text("size,time\n1,2\n")
    with pytest.raises(UserError, match="use 'bytes,seconds' or 'bytes,rtt_seconds' or "
                                        "'batch,tokens,seconds'"):
        cal.read_csv(f)


# -- an included [fabric] table prices the run's messages -------------------------------------


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_an_included_fabric_table_prices_every_round_of_the_run(tmp_path, engine):
    # `kvfabric calibrate --line-rate --path-latency` writes [fabric] overhead_time and
    # efficiency; a scenario including it runs on its stack with those on the paths `path`
    # names (here within the node: the small scenario's two GPUs share one). Until stop 72 the
    # table was read and then ignored: every round was priced on the catalogue's stack
    import dataclasses

    from clitools import small_scenario

    from simulator.costmodel import CostModel
    from simulator.models import model
    from simulator.runner import run
    from simulator.scenario import Scenario
    from simulator.testing.invariants import scenario_costs

    toml = small_scenario(tmp_path, requests=3, output_tokens=4, policies=["fetch"])
    plain = Scenario.load(toml)
    (tmp_path / "cal.toml").write_text(
        '[fabric]\noverhead_time = 1e-3\nefficiency = 0.01\npath = "intra_node"\n')
    toml.write_text(toml.read_text().replace("seed = 1", 'seed = 1\ninclude = "cal.toml"'))
    sc = Scenario.load(toml)
    base = run(plain, "fetch", engine=engine)
    res = run(sc, "fetch", engine=engine)
    # by hand: the catalogue's stack with the two fields replaced within the node
    stack = dataclasses.replace(STACKS[sc.stack], intra_node_overhead_time=1e-3,
                                intra_node_efficiency=0.01)
    kernels = scenario_costs(plain)[0]
    graph = sc.topology.build()
    cm = CostModel(model(sc.model.name), graph, stack, kernels=kernels,
                   block_tokens=sc.placement.block_tokens, instance_gpus=2)
    rd = res.rounds
    assert len(rd) > 0 and set(rd["option"].astype(str)) == {"fetch"}
    for r in rd.itertuples():
        want = cm.option("fetch", str(r.src), str(r.owner), r.blocks / r.batch, r.batch).total
        assert r.cf_time == pytest.approx(want, rel=1e-9)
    # and the run is slower for it: 1 ms a message where the catalogue says microseconds
    assert res.rounds["cf_time"].min() > 1e-3
    assert res.summary["tbt_p50"] > base.summary["tbt_p50"] + 1e-3
    assert base.rounds["cf_time"].max() < 1e-3


@pytest.mark.parametrize(("table", "field"), [
    ("fabric = 3", "'fabric'"),
    ("[fabric]\noverhead_time = -1e-6", "'fabric.overhead_time'"),
    ("[fabric]\noverhead_time = nan", "'fabric.overhead_time'"),
    ("[fabric]\nefficiency = 0.0", "'fabric.efficiency'"),
    ("[fabric]\nefficiency = 1.5", "'fabric.efficiency'"),
    ("[fabric]\nefficiency = true", "'fabric.efficiency'"),
    ('[fabric]\npath = "spine"', "'fabric.path'"),
])
def test_a_bad_included_fabric_table_is_named_at_load(tmp_path, table, field):
    from clitools import small_scenario

    from simulator.scenario import Scenario

    toml = small_scenario(tmp_path)
    (tmp_path / "cal.toml").write_text(table + "\n")
    toml.write_text(toml.read_text().replace("seed = 1", 'seed = 1\ninclude = "cal.toml"'))
    with pytest.raises(UserError, match=field) as err:
        Scenario.load(toml)
    assert "cal.toml" in str(err.value) and "\n" not in str(err.value)


def test_run_stack_is_the_scenarios_stack_without_a_fabric_table():
    assert cal.run_stack("nccl", {}) is STACKS["nccl"]
    assert cal.run_stack("nccl", {"fabric": {"rate": 4e10}}) is STACKS["nccl"]  # a fit alone
    s = cal.run_stack("nccl", {"fabric": {"efficiency": 0.5}})
    assert s.inter_node_efficiency == 0.5 and s.name == "nccl+calibrated"
    assert s.intra_node_efficiency == STACKS["nccl"].intra_node_efficiency
