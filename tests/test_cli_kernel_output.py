"""What ``kvfabric kernel`` and ``kvfabric calibrate`` print, value by value.

Each test pins a user-visible figure (a JSON key, a shape default, a table cell, a printed line,
an exit code) against what the library computes for the same input, or against a hand answer.
"""

from __future__ import annotations

import json
import shutil
import tomllib

import pytest
from clitools import run_args as run

from simulator import hardware
from simulator.gpu import calibration as cal
from simulator.gpu.profiles import calibration_dir, default_profile
from simulator.models import model as lookup_model
from simulator.units import LARGEST_SIZE, GBps, fmt_rate, fmt_time, us

LAMINA = calibration_dir() / "lamina_ibgda_roce400.csv"  # bytes,rtt_seconds rows
FLASHMLA = calibration_dir() / "flashmla_h800_decode.csv"  # batch,tokens,seconds rows


def kernel_json(capsys, *argv: str) -> dict:
    """``kvfabric kernel argv --json``, parsed; it must succeed and be indented by 2."""
    code, out, err = run(capsys, "kernel", *argv, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert out == json.dumps(got, indent=2) + "\n"
    return got


def rows(out: str, bar: str = "│") -> list[list[str]]:
    """The cells of a rich table's body rows (``bar="┃"``: its header)."""
    return [[c.strip() for c in line.split(bar)[1:-1]] for line in out.splitlines()
            if line.startswith(bar)]


@pytest.fixture
def wide(monkeypatch):
    """A console wide enough that no table cell wraps."""
    monkeypatch.setenv("COLUMNS", "250")


# -- kernel OP --json: the shape, its defaults, and the time of that shape ----------------------


def test_json_kind_is_the_word_before_the_sources_colon(capsys):
    got = kernel_json(capsys, "copy", "--gpu", "H200", "--bytes", "4096")
    assert got["source"] == "measured: h200/memory.csv line 2"
    assert got["kind"] == "measured"
    assert got["shape"] == {"bytes": 4096.0}


@pytest.mark.parametrize("flag, graphs", [("--eager", False), ("--cuda-graphs", True),
                                          (None, True)])
def test_launch_takes_the_cuda_graph_flag_over_the_profiles(capsys, flag, graphs):
    prof = default_profile(hardware.gpu("H200"))
    assert prof.cuda_graphs  # the shipped H200 profile launches through CUDA graphs
    got = kernel_json(capsys, "launch", "--gpu", "H200", "--kernels", "10",
                      *([flag] if flag else []))
    assert got["shape"] == {"kernels": 10.0, "cuda_graphs": graphs}
    assert got["time"] == float(prof.with_cuda_graphs(graphs).launch(10.0).time)
    # eager launches cost more than a graph's
    assert (float(prof.with_cuda_graphs(False).launch(10.0).time)
            > float(prof.with_cuda_graphs(True).launch(10.0).time))


def test_launch_of_no_kernels_is_allowed_and_defaults_to_one(capsys):
    prof = default_profile(hardware.gpu("H200"))
    got = kernel_json(capsys, "launch", "--gpu", "H200", "--kernels", "0")
    assert got["shape"]["kernels"] == 0.0
    assert got["time"] == float(prof.launch(0.0).time)
    assert kernel_json(capsys, "launch", "--gpu", "H200")["shape"]["kernels"] == 1.0


def test_sendrecv_defaults_to_two_ranks_but_a_collective_needs_them(capsys):
    prof = default_profile(hardware.gpu("H100"))
    got = kernel_json(capsys, "sendrecv", "--gpu", "H100", "--bytes", "1048576")
    assert got["shape"] == {"bytes": 1048576.0, "ranks": 2.0, "fabric": "nvlink"}
    assert got["time"] == float(prof.collective("sendrecv", 1048576.0, 2.0, "nvlink").time)
    code, out, err = run(capsys, "kernel", "allreduce", "--gpu", "H100", "--bytes", "1048576")
    assert code == 2 and out == ""
    assert err.strip().endswith("kernel allreduce: give --ranks")


def test_a_size_at_the_largest_bound_is_taken(capsys):
    assert LARGEST_SIZE == 1e15  # an integer, so the bound itself is a valid count
    got = kernel_json(capsys, "copy", "--gpu", "H200", "--bytes", "1e15")
    assert got["shape"] == {"bytes": 1e15}
    assert got["time"] == float(default_profile(hardware.gpu("H200")).copy(1e15).time)


def test_mla_attention_defaults_to_128_heads_and_says_mla(capsys):
    prof = default_profile(hardware.gpu("H100"))
    got = kernel_json(capsys, "attention", "--gpu", "H100", "--batch", "8", "--context", "4096",
                      "--mla")
    assert got["shape"] == {"batch": 8.0, "context": 4096.0, "q_heads": 128.0, "mla": True}
    assert got["time"] == float(prof.mla_attention(8.0, 4096.0, 128.0).time)


def test_mla_attention_with_topk_shows_it_and_attends_fewer_tokens(capsys):
    prof = default_profile(hardware.gpu("H100"))
    got = kernel_json(capsys, "attention", "--gpu", "H100", "--batch", "8", "--context", "4096",
                      "--mla", "--topk", "512")
    assert got["shape"] == {"batch": 8.0, "context": 4096.0, "q_heads": 128.0, "mla": True,
                            "topk": 512}
    assert got["time"] == float(prof.mla_attention(8.0, 4096.0, 128.0, topk=512).time)
    assert got["time"] < float(prof.mla_attention(8.0, 4096.0, 128.0).time)


def test_paged_sparse_attention_shows_page_size_and_topk(capsys):
    prof = default_profile(hardware.gpu("H200"))
    got = kernel_json(capsys, "attention", "--gpu", "H200", "--batch", "8", "--context", "4096",
                      "--q-heads", "64", "--kv-heads", "8", "--paged", "--topk", "1024")
    assert got["shape"] == {"batch": 8.0, "context": 4096.0, "q_heads": 64.0, "kv_heads": 8.0,
                            "head_dim": 128.0, "page_tokens": 16.0, "topk": 1024}
    want = prof.attention(8.0, 4096.0, 64.0, 8.0, 128.0, paged=True, page_tokens=16, topk=1024)
    assert got["time"] == float(want.time)


def test_contiguous_dense_attention_has_no_page_or_topk_keys(capsys):
    got = kernel_json(capsys, "attention", "--gpu", "H200", "--batch", "8", "--context", "4096",
                      "--q-heads", "64", "--kv-heads", "8")
    assert set(got["shape"]) == {"batch", "context", "q_heads", "kv_heads", "head_dim"}


def test_prefill_defaults_to_nothing_cached_and_head_dim_128(capsys):
    prof = default_profile(hardware.gpu("H200"))
    got = kernel_json(capsys, "prefill", "--gpu", "H200", "--context", "1024", "--q-heads", "32",
                      "--kv-heads", "8")
    assert got["shape"] == {"new": 1024.0, "cached": 0.0, "q_heads": 32.0, "kv_heads": 8.0,
                            "head_dim": 128.0}
    assert got["time"] == float(prof.prefill_attention(1024.0, 0.0, 32.0, 8.0, 128.0).time)
    # --cached 0 said out loud is the same shape, and a cache makes the prefill slower
    assert kernel_json(capsys, "prefill", "--gpu", "H200", "--context", "1024", "--q-heads",
                       "32", "--kv-heads", "8", "--cached", "0") == got
    cached = kernel_json(capsys, "prefill", "--gpu", "H200", "--context", "1024", "--q-heads",
                         "32", "--kv-heads", "8", "--cached", "8192")
    assert cached["shape"]["cached"] == 8192.0 and cached["time"] > got["time"]


def test_plain_prefill_prints_its_time(capsys):
    prof = default_profile(hardware.gpu("H200"))
    code, out, _ = run(capsys, "kernel", "prefill", "--gpu", "H200", "--context", "1024",
                       "--q-heads", "32", "--kv-heads", "8")
    want = prof.prefill_attention(1024.0, 0.0, 32.0, 8.0, 128.0)
    assert code == 0
    assert out.splitlines() == [
        "prefill new=1024 cached=0 q_heads=32 kv_heads=8 head_dim=128 on H200 (profile h200): "
        f"{fmt_time(float(want.time))}",
        f"  source: {want.source.ravel()[0]}"]


def test_merge_defaults_one_query_128_heads_512_wide_two_partials(capsys):
    prof = default_profile(hardware.gpu("H200"))
    got = kernel_json(capsys, "merge", "--gpu", "H200")
    assert got["shape"] == {"batch": 1.0, "heads": 128.0, "dim": 512.0, "partials": 2.0}
    assert got["time"] == float(prof.merge(1.0, 128.0, 512.0, 2.0).time)
    assert got["time"] != float(prof.launch(1.0).time)


def test_merge_needs_two_partials_at_least(capsys):
    code, out, err = run(capsys, "kernel", "merge", "--gpu", "H200", "--partials", "1")
    assert code == 2 and out == ""
    assert err.strip().endswith("--partials 1: give an integer >= 2 and <= 1e+15")


def test_indexer_defaults_to_64_heads_of_128(capsys):
    prof = default_profile(hardware.gpu("H200"))
    got = kernel_json(capsys, "indexer", "--gpu", "H200", "--batch", "4", "--context", "8192")
    assert got["shape"] == {"batch": 4.0, "context": 8192.0, "heads": 64.0, "dim": 128.0}
    assert got["time"] == float(prof.indexer(4.0, 8192.0, 64.0, 128.0).time)
    assert got["source"] == str(prof.indexer(4.0, 8192.0, 64.0, 128.0).source.ravel()[0])


# -- kernel list -----------------------------------------------------------------------------


def test_list_json_is_indented_by_two(capsys):
    code, out, _ = run(capsys, "kernel", "list", "--json")
    assert code == 0
    assert out == json.dumps(json.loads(out), indent=2) + "\n"


def test_list_table_shows_measured_and_borrowed_operators(capsys, wide):
    code, out, _ = run(capsys, "kernel", "list")
    assert code == 0
    assert rows(out, "┃") == [["profile", "GPU", "graphs", "measured here", "from elsewhere"]]
    table = {r[0]: r for r in rows(out)}
    for name in ("h200", "h100-vidur"):  # measured: the shipped file says which operators
        shipped = tomllib.loads((calibration_dir() / "profiles" / f"{name}.toml").read_text())
        entries = shipped["operators"]
        here = ", ".join(f"{op} ({e['median_error']:.0%})" for op, e in entries.items()
                         if "from" not in e)
        other = ", ".join(sorted({e["from"] for e in entries.values() if "from" in e}))
        assert table[name] == [name, shipped["profile"]["gpu"], "yes", here, other]
    assert table["h200"][3].startswith("gemm (5%), attention (4%)")
    assert table["h200"][4] == "h100-vidur"
    # the A100 has no measurements: everything comes from the H100 and, through it, the H200
    assert table["a100"] == ["a100", "A100", "yes", "—", "h100-vidur, h200"]
    assert out.splitlines()[-1] == ("(in brackets: the fit's median relative error over the "
                                    "measured rows)")


# -- calibrate DIR ---------------------------------------------------------------------------


def test_calibrate_dir_table_shows_fits_and_borrowed_operators(capsys, tmp_path, wide):
    out = tmp_path / "h200.toml"
    code, stdout, _ = run(capsys, "calibrate", str(calibration_dir() / "h200"), "-o", str(out))
    assert code == 0
    assert rows(stdout, "┃") == [["operator", "rows", "median error", "p90 error",
                                  "or taken from"]]
    shipped = tomllib.loads((calibration_dir() / "profiles" / "h200.toml").read_text())
    want = [[op, "", "", "", e["from"]] if "from" in e else
            [op, str(e["rows"]), f"{e['median_error']:.1%}", f"{e['p90_error']:.1%}", ""]
            for op, e in shipped["operators"].items()]
    assert rows(stdout) == want
    assert ["gemm", "176", "5.2%", "12.5%", ""] in want  # calibration/h200/gemm.csv's rows
    assert stdout.splitlines()[-1] == f"written: {out}"
    assert tomllib.loads(out.read_text())["profile"]["gpu"] == "H200"


def test_calibrate_dir_json_is_indented_by_two(capsys, tmp_path):
    out = tmp_path / "h200.toml"
    code, stdout, _ = run(capsys, "calibrate", str(calibration_dir() / "h200"), "-o", str(out),
                          "--json")
    assert code == 0
    assert stdout == json.dumps(json.loads(stdout), indent=2) + "\n"


def test_calibrate_dir_reads_the_gpu_from_a_word_of_the_folder_name(capsys, tmp_path):
    folder = tmp_path / "bench-h200_run2"
    shutil.copytree(calibration_dir() / "h200", folder, ignore=shutil.ignore_patterns("*.py"))
    out = tmp_path / "mine.toml"
    code, stdout, err = run(capsys, "calibrate", str(folder), "-o", str(out), "--json")
    assert code == 0, err
    assert json.loads(stdout)["profile"]["gpu"] == "H200"
    assert tomllib.loads(out.read_text())["profile"]["gpu"] == "H200"


def test_calibrate_dir_with_a_file_names_the_file(capsys, tmp_path):
    out = tmp_path / "p.toml"
    code, stdout, err = run(capsys, "calibrate", str(calibration_dir() / "h200"), str(LAMINA),
                            "-o", str(out))
    assert code == 2 and stdout == ""
    assert err.strip().endswith(f"{LAMINA}: give measurement folders only (or CSV files only)")
    assert not out.exists()


def test_calibrate_dir_checks_the_output_name_first(capsys, tmp_path):
    out = tmp_path / "p.txt"
    code, stdout, err = run(capsys, "calibrate", str(calibration_dir() / "h200"), "-o", str(out))
    assert code == 2 and stdout == ""
    assert err.strip().endswith(f"-o {out}: give a file name ending in .toml")
    assert list(tmp_path.iterdir()) == []


# -- calibrate FILE.csv ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-5"])
def test_calibrate_refuses_a_line_rate_of_zero_or_less(capsys, tmp_path, value):
    out = tmp_path / "c.toml"
    code, stdout, err = run(capsys, "calibrate", str(LAMINA), "--line-rate", value, "-o",
                            str(out))
    assert code == 2 and stdout == ""
    assert err.strip().endswith(f"--line-rate {float(value)}: give a positive rate in GB/s")
    assert not out.exists()


def test_calibrate_takes_a_path_latency_of_zero_and_refuses_a_negative_one(capsys, tmp_path):
    out = tmp_path / "c.toml"
    code, _, err = run(capsys, "calibrate", str(LAMINA), "--path-latency", "0", "-o", str(out))
    assert code == 0, err
    fabric = tomllib.loads(out.read_text())["fabric"]
    # no path latency: the whole fixed time of a message is the stack's
    assert fabric["path_latency_time"] == 0.0
    assert fabric["overhead_time"] == fabric["message_fixed_time"]
    out.unlink()
    code, stdout, err = run(capsys, "calibrate", str(LAMINA), "--path-latency", "-0.5", "-o",
                            str(out))
    assert code == 2 and stdout == ""
    assert err.strip().endswith("--path-latency -0.5: give microseconds >= 0")
    assert not out.exists()


def test_calibrate_json_has_the_coefficients_their_sources_and_residuals(capsys, tmp_path):
    out = tmp_path / "c.toml"
    code, stdout, err = run(capsys, "calibrate", str(LAMINA), str(FLASHMLA), "-o", str(out),
                            "--json")
    assert code == 0, err
    got = json.loads(stdout)
    assert stdout == json.dumps(got, indent=2) + "\n"
    assert got["output"] == str(out)
    residuals = {str(f): cal.fit_line(cal.read_csv(str(f))).residuals.tolist()
                 for f in (LAMINA, FLASHMLA)}
    assert got["residuals"] == residuals
    written = tomllib.loads(out.read_text())
    for data in (got, written):
        assert data["fabric"]["source"] == str(LAMINA)
        assert data["kernels"]["source"] == str(FLASHMLA)
        assert data["kernels"]["model"] == lookup_model("deepseek-v3").name == "deepseek-v3"
        assert data["kernels"]["gpu"] == "H100"


def test_calibrate_table_shows_round_trips_as_measured(capsys, tmp_path, wide):
    """An rtt_seconds file is fitted one way; its table doubles back to round trips."""
    out = tmp_path / "c.toml"
    code, stdout, err = run(capsys, "calibrate", str(LAMINA), str(FLASHMLA), "-o", str(out))
    assert code == 0, err
    body = rows(stdout)
    assert rows(stdout, "┃") == [["bytes", "rtt_seconds", "fitted", "residual", "relative"],
                                  ["batch", "tokens", "seconds", "fitted", "residual",
                                   "relative"]]
    m, fit = cal.read_csv(str(LAMINA)), cal.fit_line(cal.read_csv(str(LAMINA)))
    assert len(body) == len(m.inputs) + 20
    for cells, (size, rtt), f, r in zip(body, m.inputs, fit.fitted, fit.residuals, strict=False):
        assert cells == [f"{size:g}", f"{rtt:g}", f"{2 * f:.5g}", f"{2 * r:+.3g}", f"{r / f:+.2%}"]
        # the round trip shown is the row's: fitted + residual = measured
        assert float(cells[2]) == pytest.approx(rtt, rel=1e-3)
        assert float(cells[2]) + float(cells[3]) == pytest.approx(rtt, rel=1e-4)
    assert body[3][4] == "+0.01%"  # 4096 B: 2.51 ns off 33.18 µs
    k, kfit = cal.read_csv(str(FLASHMLA)), cal.fit_line(cal.read_csv(str(FLASHMLA)))
    for cells, inputs, f, r in zip(body[len(m.inputs):], k.inputs, kfit.fitted, kfit.residuals,
                                   strict=True):
        assert cells == [*(f"{v:g}" for v in inputs), f"{f:.5g}", f"{r:+.3g}", f"{r / f:+.2%}"]
        assert float(cells[3]) == pytest.approx(inputs[2], rel=1e-3)


def test_calibrate_prints_the_fabric_line_with_overhead_efficiency_and_rms(capsys, tmp_path,
                                                                             wide):
    out = tmp_path / "c.toml"
    code, stdout, err = run(capsys, "calibrate", str(LAMINA), "--line-rate", "50",
                            "--path-latency", "2.2", "-o", str(out))
    assert code == 0, err
    fit = cal.fit_line(cal.read_csv(str(LAMINA)))
    fab = cal.fabric_coefficients(fit, GBps(50), us(2.2))
    lines = stdout.splitlines()
    # Lamina: 33 µs round trip (16.5 one way), 45.7 GB/s; 16.5 - 2.2 = 14.3 µs of stack
    assert lines[-3] == (f"one-way message = {fmt_time(fab['message_fixed_time'])} + bytes / "
                         f"{fmt_rate(fab['rate'])}; stack overhead "
                         f"{fmt_time(fab['overhead_time'])}; efficiency 0.914 of the line rate")
    assert "= 16.5 µs + bytes / 45.7 GB/s; stack overhead 14.3 µs;" in lines[-3]
    assert lines[-2] == (f"rms residual {fmt_time(fit.rms_residual)}, largest relative "
                         f"{fit.max_relative_residual:.2%}")
    assert lines[-1] == f"written: {out}"


def test_calibrate_without_line_figures_prints_the_fit_alone(capsys, tmp_path, wide):
    out = tmp_path / "c.toml"
    code, stdout, err = run(capsys, "calibrate", str(LAMINA), "-o", str(out))
    assert code == 0, err
    assert stdout.splitlines()[-3] == "one-way message = 16.5 µs + bytes / 45.7 GB/s"


@pytest.mark.parametrize(("name", "which"), [
    ("h20_h200-runs", "it names H20 and H200"),
    ("bench-h2000", "which GPU measured it?"),
])
def test_calibrate_dir_asks_for_the_gpu_when_the_folder_name_is_not_one(capsys, tmp_path, name,
                                                                         which):
    folder = tmp_path / name
    shutil.copytree(calibration_dir() / "h200", folder, ignore=shutil.ignore_patterns("*.py"))
    out = tmp_path / "mine.toml"
    code, stdout, err = run(capsys, "calibrate", str(folder), "-o", str(out))
    assert (code, stdout) == (2, "") and not out.exists()
    assert err.strip().endswith(f"{folder}: {which}; give --gpu (one of H100, H20, H200, "
                                "A100, B200)")
