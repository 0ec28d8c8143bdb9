"""``kvfabric kernel``, ``kernel list`` and ``calibrate DIR`` through the real entry point."""

from __future__ import annotations

import json
import tomllib

import pytest

from simulator import hardware
from simulator.cli import main
from simulator.gpu.operators import FITS
from simulator.gpu.profiles import calibration_dir, select_rows
from simulator.gpu.table_loaders import load_rows, profile_label


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``kvfabric argv``; return (exit code, stdout, stderr)."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_gemm_json_gives_the_measured_time_and_its_row(capsys):
    code, out, _ = run(capsys, "kernel", "gemm", "--gpu", "H200", "--m", "1", "--n", "2560",
                       "--k", "8192", "--json")
    assert code == 0
    got = json.loads(out)
    assert got["time"] == pytest.approx(1.76731e-05, rel=1e-12)
    assert got["source"] == "measured: h200/gemm.csv line 46"
    assert got["profile"] == "h200" and got["gpu"] == "H200"


@pytest.mark.parametrize("argv, kind", [
    (["attention", "--gpu", "H200", "--batch", "8", "--context", "4096", "--q-heads", "64",
      "--kv-heads", "8"], "interpolated"),
    (["attention", "--gpu", "H100", "--batch", "8", "--context", "4096", "--q-heads", "128",
      "--mla", "--topk", "2048"], "fitted"),
    (["attention", "--gpu", "H200", "--batch", "8", "--context", "2048", "--q-heads", "8",
      "--kv-heads", "1", "--paged", "--page-tokens", "16"], "measured"),
    (["copy", "--gpu", "H200", "--bytes", "4096"], "measured"),
    (["gather", "--gpu", "H20", "--blocks", "64", "--block-bytes", "73728"], "extrapolated"),
    (["merge", "--gpu", "H200", "--batch", "8", "--q-heads", "128", "--partials", "4"],
     "measured"),
    (["allreduce", "--gpu", "H100", "--bytes", "1048576", "--ranks", "4"], "measured"),
    (["allgather", "--gpu", "H100", "--bytes", "1048576", "--ranks", "4", "--fabric", "rdma"],
     "fitted"),
    (["alltoall", "--gpu", "A100", "--bytes", "1e6", "--ranks", "8"], "extrapolated"),
    (["launch", "--gpu", "H200", "--kernels", "10", "--eager"], "measured"),
])
def test_every_operator_answers_with_a_time_and_its_kind_of_source(capsys, argv, kind):
    code, out, _ = run(capsys, "kernel", *argv, "--json")
    assert code == 0
    got = json.loads(out)
    assert got["time"] > 0
    assert got["source"].startswith(kind + ":")


def test_a_grouped_gemm_is_the_models_over_all_its_groups(capsys):
    # MLA's absorbed W_UK on an H200: 128 heads of 512 × 128, one token each (128 rows in
    # all) — the model (no table holds grouped GEMMs), the weights at the share of all 128
    code, out, _ = run(capsys, "kernel", "gemm", "--gpu", "H200", "--m", "128", "--n", "512",
                       "--k", "128", "--groups", "128", "--json")
    assert code == 0
    got = json.loads(out)
    assert got["shape"]["groups"] == 128 and got["source"] == "fitted: h200 gemm model"
    assert 5e-6 < got["time"] < 10e-6  # 39.9 µs before stop 80 (each head at its own share)
    code, out, _ = run(capsys, "kernel", "gemm", "--gpu", "H200", "--m", "1", "--n", "2560",
                       "--k", "8192", "--groups", "1", "--json")
    assert json.loads(out)["source"] == "measured: h200/gemm.csv line 46"  # one matrix: a row
    assert "groups" not in json.loads(out)["shape"]


def test_plain_output_shows_the_time_and_the_source(capsys):
    code, out, _ = run(capsys, "kernel", "copy", "--gpu", "H200", "--bytes", "4096")
    assert code == 0
    assert "4.784 µs" in out and "measured: h200/memory.csv line 2" in out


def test_profile_option_picks_another_profile(capsys):
    code, out, _ = run(capsys, "kernel", "gemm", "--gpu", "H100", "--m", "1", "--n", "2560",
                       "--k", "8192", "--profile", "h200", "--json")
    assert code == 0
    assert json.loads(out)["source"].startswith("extrapolated: h200 gemm model")


@pytest.mark.parametrize("argv, message", [
    (["gemm", "--gpu", "H200", "--m", "0", "--n", "1", "--k", "1"], "--m 0"),
    (["gemm", "--gpu", "H200", "--m", "x", "--n", "1", "--k", "1"], "--m 'x': not a number"),
    (["gemm", "--gpu", "H200", "--n", "1", "--k", "1"], "give --m"),
    (["gemm", "--gpu", "H200", "--m", "1", "--n", "1", "--k", "1", "--dtype", "int4"],
     "--dtype 'int4'"),
    (["gemm", "--m", "1", "--n", "1", "--k", "1"], "give --gpu"),
    (["gemm", "--gpu", "H9", "--m", "1", "--n", "1", "--k", "1"], "--gpu: unknown GPU 'H9'"),
    (["gemm", "--gpu", "H200", "--m", "1", "--n", "1", "--k", "1", "--profile", "zz"],
     "unknown kernel profile 'zz'"),
    (["attention", "--gpu", "H200", "--batch", "1", "--context", "1", "--q-heads", "6",
      "--kv-heads", "4"], "--q-heads 6 is not a multiple of --kv-heads 4"),
    (["allreduce", "--gpu", "H100", "--bytes", "1", "--ranks", "2", "--fabric", "ib"],
     "--fabric 'ib'"),
    (["copy", "--gpu", "H100", "--bytes", "inf"], "--bytes inf"),
    (["gemm", "--gpu", "H200", "--m", "1", "--n", "1", "--k", "1", "--groups", "0"],
     "--groups 0"),
    (["copy", "--gpu", "H100", "--bytes", "4096", "--groups", "2"],
     "--groups does not apply to copy"),
    (["softmax", "--gpu", "H100"], "kernel 'softmax'"),
])
def test_bad_input_exits_2_with_one_line_naming_the_option(capsys, argv, message):
    code, out, err = run(capsys, "kernel", *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and out == ""


def test_list_names_every_shipped_profile(capsys):
    code, out, _ = run(capsys, "kernel", "list", "--json")
    assert code == 0
    profiles = {p["name"]: p for p in json.loads(out)["profiles"]}
    assert set(profiles) >= {"h200", "h100-vidur", "h20", "a100", "b200"}
    assert profiles["h200"]["operators"]["gemm"]["measured_on"] == "H200"
    assert profiles["h20"]["operators"]["gemm"]["profile"] == "h200"
    code, out, _ = run(capsys, "kernel", "list")
    assert code == 0 and "h100-vidur" in out


@pytest.mark.parametrize("folder, name, gpu", [("h200", "h200", None),
                                               ("vidur_h100", "h100-vidur", "H100")])
def test_calibrate_dir_rebuilds_the_shipped_profile(capsys, tmp_path, folder, name, gpu):
    out = tmp_path / "profiles" / f"{name}.toml"
    out.parent.mkdir()
    argv = ["calibrate", str(calibration_dir() / folder), "-o", str(out), "--json"]
    code, stdout, _ = run(capsys, *argv, *(["--gpu", gpu] if gpu else []))
    assert code == 0
    built = tomllib.loads(out.read_text())
    shipped = tomllib.loads((calibration_dir() / "profiles" / f"{name}.toml").read_text())
    folder_rows = load_rows(str((calibration_dir() / folder).resolve()),
                            profile_label(calibration_dir() / folder))
    spec = hardware.gpu(shipped["profile"]["gpu"])
    for op, entry in shipped["operators"].items():
        got = built["operators"][op]
        if "params" not in entry:
            assert got == entry
            continue
        # a fit's parameters are not identified along flat directions of its loss (numpy and
        # BLAS versions move them there), so the rebuilt fit is held by what it predicts: the
        # same time on every measured row, and the same in-sample error
        assert set(got["params"]) == set(entry["params"])
        for part in FITS[op].values():
            for selector in part.rows:
                rows = select_rows(folder_rows, selector)
                if rows is None:
                    continue
                shipped_time = part.model(entry["params"], spec, rows)
                assert part.model(got["params"], spec, rows) == pytest.approx(shipped_time,
                                                                              rel=1e-3)
        assert got["rows"] == entry["rows"]
        assert got["median_error"] == pytest.approx(entry["median_error"], abs=1e-4)
        assert got["p90_error"] == pytest.approx(entry["p90_error"], abs=1e-4)
    # the launch costs (measured on the H200, borrowed by the H100's), the head
    assert built["launch"] == shipped["launch"]
    for key in ("name", "gpu", "cuda_graphs"):
        assert built["profile"][key] == shipped["profile"][key]
    folder_path = calibration_dir() / folder
    assert built["profile"]["description"] == (f"{shipped['profile']['gpu']}: fitted on "
                                               f"{folder_path}")
    assert json.loads(stdout)["output"] == str(out)


def test_calibrate_dir_bad_inputs_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "calibrate", str(tmp_path), "-o", str(tmp_path / "p.toml"),
                       "--gpu", "H100")
    assert code == 2 and "no measurements found" in err
    code, _, err = run(capsys, "calibrate", str(tmp_path), "-o", str(tmp_path / "p.toml"))
    assert code == 2 and "give --gpu" in err
    assert not (tmp_path / "p.toml").exists()
