"""Bad options, and the files of the commands without a scenario: ``run``'s options and output
folder, ``predict``, ``kernel`` (and a kernel profile file), ``topology`` (presets, topology
files) and ``calibrate`` (measurement files and folders). Each case exit 2, one line naming the
option or file, nothing written (:mod:`badinput`); then the check that the tables of all the
``test_bad_*.py`` files together cover every command, and a write-protected output folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from badinput import (
    H200,
    PING,
    TINY,
    TRACE,
    TWO_GPUS,
    Case,
    deploy,
    one_line_exit_2_nothing_written,
    tiny,
    tree,
)

from simulator.cli import main

CSV = "batch,tokens,seconds\n1,1024,1.0e-5\n2,1024,1.5e-5\n4,1024,2.4e-5\n"
# an H200 GEMM table (calibration/h200/gemm.csv's columns), its second row's dtype and time open
GEMM = ("model,op,dtype,m,n,k,time_s\n"
        "l,qkv,bf16,1,10240,8192,4.5e-05\n"
        "l,qkv,%s,8,10240,8192,%s\n"
        "l,qkv,bf16,64,10240,8192,5.1e-05\n")
GEMM_T0 = "t0 = 3.5970174567595737e-06\n"


def profile(old: str, new: str) -> dict[str, str]:
    """The H200 profile with one edit, as ``p.toml``."""
    assert old in H200
    return {"p.toml": H200.replace(old, new, 1)}


CASES: list[Case] = [
    # -- run: options ----------------------------------------------------------------------------
    Case("run-unknown-policy", ["run", "tiny.toml", "--policy", "teleport"],
         ("--policy", "teleport"), tiny()),
    Case("run-duplicate-policy-option", ["run", "tiny.toml", "--policy", "route,route"],
         ("--policy", "twice"), tiny()),
    Case("run-negative-seed", ["run", "tiny.toml", "--seed", "-3"], ("--seed",), tiny()),
    Case("run-unknown-option", ["run", "tiny.toml", "--bogus"], ("--bogus", "kvfabric run"),
         tiny()),
    Case("run-option-without-its-value", ["run", "tiny.toml", "--seed"],
         ("'--seed'", "'kvfabric run --help'"), tiny()),
    Case("trace-stats-option-without-its-value", ["trace", "stats", "t.jsonl", "--block-tokens"],
         ("'--block-tokens'", "'kvfabric trace stats --help'"), tiny()),
    Case("run-no-write-with-out", ["run", "tiny.toml", "--no-write", "--out", "o"],
         ("--no-write", "--out", "drop one"), tiny()),
    Case("run-no-write-with-overwrite", ["run", "tiny.toml", "--no-write", "--overwrite"],
         ("--no-write", "--overwrite"), tiny()),
    Case("run-out-under-a-file", ["run", "tiny.toml", "--out", "f/out"], ("--out", "f/out"),
         {**tiny(), "f": "a file"}),
    Case("run-out-name-too-long", ["run", "tiny.toml", "--out", "x" * 300], ("--out", "too long"),
         tiny()),
    Case("run-out-holds-a-result", ["run", "tiny.toml", "--out", "o"],
         ("--out o", "previous result", "--overwrite"),
         {**tiny(), "o/manifest.json": json.dumps({"scenario": {"name": "x"}, "policies": [],
                                                   "created_at": "then"})}),
    Case("run-out-holds-other-files", ["run", "tiny.toml", "--out", "o", "--overwrite"],
         ("--out o", "not a kvfabric result"), {**tiny(), "o/notes.txt": "mine"}),
    # -- predict ---------------------------------------------------------------------------------
    Case("predict-unknown-model", ["predict", "--model", "gpt-9", "--blocks", "8"],
         ("--model", "gpt-9")),
    Case("predict-unknown-stack", ["predict", "--stack", "tcp", "--blocks", "8"],
         ("--stack", "tcp")),
    Case("predict-src-not-a-gpu", ["predict", "--src", "n0/nic0", "--blocks", "8"],
         ("--src", "n0/nic0")),
    Case("predict-zero-blocks", ["predict", "--blocks", "0"], ("--blocks",)),
    Case("predict-bad-sweep", ["predict", "--sweep", "blocks=8:2"], ("--sweep",)),
    Case("predict-plot-missing-folder", ["predict", "--sweep", "blocks=1:8", "--plot", "d/c.png"],
         ("--plot", "d/c.png")),
    Case("predict-unknown-topology", ["predict", "--topology", "torus:nodes=2", "--blocks", "8"],
         ("torus",)),
    Case("predict-not-a-number", ["predict", "--blocks", "many"], ("--blocks", "many")),
    Case("predict-more-heads-than-the-model", ["predict", "--blocks", "8", "--heads", "1000"],
         ("--heads 1000", "128 query heads")),
    Case("predict-blocks-past-the-bound", ["predict", "--blocks", "1e300"],
         ("--blocks", "1e+15")),
    Case("predict-sweep-past-the-bound", ["predict", "--sweep", "blocks=1:1e300", "--json"],
         ("--sweep", "1e+15")),
    Case("kernel-fractional-count", ["kernel", "gemm", "--gpu", "H100", "--m", "1.5", "--n", "8",
                                     "--k", "8"], ("--m 1.5", "integer")),
    *(Case(f"kernel-{name}", ["kernel", *argv], (f"kernel {what}:", flag, "does not apply"))
      for name, argv, what, flag in (
          ("size-of-another-operator", ["gemm", "--gpu", "H100", "--m", "8", "--n", "8", "--k",
                                        "8", "--batch", "4"], "gemm", "--batch"),
          ("page-tokens-without-paged", ["attention", "--gpu", "H100", "--batch", "1",
                                         "--context", "64", "--q-heads", "8", "--kv-heads", "8",
                                         "--page-tokens", "32"], "attention", "--page-tokens"),
          ("kv-heads-with-mla", ["attention", "--gpu", "H100", "--batch", "1", "--context", "64",
                                 "--mla", "--kv-heads", "8"], "attention --mla", "--kv-heads"),
          ("fabric-of-a-copy", ["copy", "--gpu", "H100", "--bytes", "64", "--fabric", "rdma"],
           "copy", "--fabric"),
          ("list-with-a-gpu", ["list", "--gpu", "H100"], "list", "--gpu"))),
    Case("kernel-size-past-the-bound", ["kernel", "gemm", "--gpu", "H100", "--m", "1e300", "--n",
                                        "8", "--k", "8", "--json"], ("--m 1e300", "1e+15")),
    *(Case(f"kernel-profile-{name}", ["kernel", "gemm", "--gpu", "H200", "--profile", "p.toml",
                                      "--m", "8", "--n", "8", "--k", "8"], ("p.toml", *words),
           profile(old, new))
      for name, old, new, words in (
          ("parameter-not-a-number", GEMM_T0, "t0 = nan\n", ("gemm t0 = nan", "> 0")),
          ("parameter-negative", GEMM_T0, "t0 = -1.0\n", ("gemm t0 = -1.0", "> 0")),
          ("parameter-missing", GEMM_T0, "", ("gemm params lack t0",)),
          ("cuda-graphs-a-string", "cuda_graphs = true", 'cuda_graphs = "false"',
           ("profile.cuda_graphs", "true or false")),
          ("unknown-gpu", 'gpu = "H200"', 'gpu = "H999"', ("profile.gpu", "H999")))),
    Case("run-profile-file-malformed", ["run", "tiny.toml"],
         ("tiny.toml", "'calibration.profile'", "p.toml", "gemm t0 = nan"),
         {**tiny("seed = 1", 'seed = 1\n[calibration]\nprofile = "p.toml"'),
          **profile(GEMM_T0, "t0 = nan\n")}),
    # -- topology --------------------------------------------------------------------------------
    Case("topology-unknown-preset", ["topology", "show", "dgx_z100"], ("dgx_z100",)),
    Case("topology-too-many-gpus", ["topology", "show", "dgx_h100:nodes=1e6"],
         ("dgx_h100", "nodes=1000000", "65,536")),
    *(Case(f"topology-oversubscription-{name}",
           ["topology", "show", f"dgx_h100:oversubscription={v}"],
           ("dgx_h100", f"oversubscription={float(v)!r}", "<= 1000"))
      for name, v in (("infinite", "inf"), ("past-the-bound", "1e300"))),
    Case("topology-parameter-twice", ["topology", "show", "dgx_h100:nodes=1,nodes=2"],
         ("dgx_h100:nodes=1,nodes=2", "nodes is given twice")),
    Case("topology-zero-bandwidth", ["topology", "show", "two.toml"], ("two.toml", "bandwidth"),
         {"two.toml": TWO_GPUS + "bandwidth = 0.0\n"}),
    Case("topology-link-twice", ["topology", "show", "two.toml"],
         ("two.toml", "links[1]", "n0/gpu0 -> n0/gpu1", "already linked", "keep one"),
         {"two.toml": TWO_GPUS + "bandwidth = 1e9\n[[links]]"
          + TWO_GPUS.split("[[links]]")[1] + "bandwidth = 2e9\n"}),
    # a file's key written after a [[nodes]] table lands in that node (TOML): was read as a
    # node attribute, and the user was told the GPUs cannot reach each other
    Case("topology-file-key-inside-a-node", ["topology", "show", "two.toml"],
         ("two.toml", "nodes[1] (n0/gpu1)", "'links' is the file's", "above the first [[nodes]]"),
         {"two.toml": TWO_GPUS.split("[[links]]")[0] + "links = 5\n"}),
    Case("topology-disconnected", ["topology", "show", "two.toml"], ("two.toml",),
         {"two.toml": TWO_GPUS.split("[[links]]")[0]}),
    Case("topology-bad-figure-suffix", ["topology", "show", "dgx_h100", "-o", "g.txt"],
         ("-o", "g.txt")),
    Case("topology-unknown-path-node", ["topology", "show", "dgx_h100", "--path", "n0/gpu0",
                                        "n9/gpu0"], ("n9/gpu0",)),
    Case("topology-deployment-missing", ["topology", "show", "dgx_h100", "--deployment",
                                         "tiny.toml"], ("tiny.toml", "'deployment'"), tiny()),
    Case("topology-deployment-too-large", ["topology", "show", "dgx_h100:nodes=1",
                                           "--deployment", "tiny.toml"],
         ("tiny.toml", "'deployment.instances'"), deploy("attention_dp = 16")),
    # -- calibrate -------------------------------------------------------------------------------
    Case("calibrate-missing-file", ["calibrate", "m.csv"], ("m.csv",)),
    Case("calibrate-not-utf8", ["calibrate", "m.csv"], ("m.csv", "text"),
         {"m.csv": b"batch,tokens,seconds\n\xff\xfe\n"}),
    Case("calibrate-bad-header", ["calibrate", "m.csv"], ("m.csv", "header"),
         {"m.csv": "a,b\n1,2\n"}),
    Case("calibrate-unknown-model", ["calibrate", "m.csv", "--model", "gpt-9"],
         ("--model", "gpt-9"), {"m.csv": CSV}),
    Case("calibrate-unknown-gpu", ["calibrate", "m.csv", "--gpu", "Z9"], ("--gpu", "Z9"),
         {"m.csv": CSV}),
    Case("calibrate-output-missing-folder", ["calibrate", "m.csv", "-o", "d/c.toml"],
         ("-o", "d/c.toml"), {"m.csv": CSV}),
    Case("calibrate-output-not-toml", ["calibrate", "m.csv", "-o", "c.txt"],
         ("-o", "c.txt", ".toml"), {"m.csv": CSV}),
    Case("calibrate-line-rate-below-the-rows", ["calibrate", "p.csv", "--line-rate", "1e-7"],
         ("p.csv", "--line-rate 1e-07 GB/s", "faster than the wire"), {"p.csv": PING}),
    Case("calibrate-path-latency-above-the-rows", ["calibrate", "p.csv", "--path-latency", "1e9"],
         ("p.csv", "--path-latency", "fixed time"), {"p.csv": PING}),
    Case("calibrate-path-latency-not-a-number", ["calibrate", "p.csv", "--path-latency", "nan"],
         ("--path-latency nan", "finite"), {"p.csv": PING}),
    Case("calibrate-line-rate-infinite", ["calibrate", "p.csv", "--line-rate", "inf"],
         ("--line-rate inf", "finite"), {"p.csv": PING}),
    Case("calibrate-time-falls-with-size", ["calibrate", "p.csv"], ("p.csv", "does not grow"),
         {"p.csv": "bytes,seconds\n1024,3e-5\n65536,2e-5\n1048576,1e-5\n"}),
    # a folder of measurements (like calibration/h200/): the row at fault, by its line
    Case("calibrate-folder-time-not-a-number", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv line 3", "time_s", "'abc'"), {"h/gemm.csv": GEMM % ("bf16", "abc")}),
    Case("calibrate-folder-negative-time", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv line 3", "time_s", "-4.5e-05"), {"h/gemm.csv": GEMM % ("bf16", "-4.5e-05")}),
    Case("calibrate-folder-zero-time", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv line 3", "time_s", "0.0"), {"h/gemm.csv": GEMM % ("bf16", "0.0")}),
    Case("calibrate-folder-time-nan", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv line 3", "time_s", "nan"), {"h/gemm.csv": GEMM % ("bf16", "nan")}),
    Case("calibrate-folder-header-only", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv", "no measurement rows"), {"h/gemm.csv": GEMM.split("\n")[0] + "\n"}),
    Case("calibrate-folder-unknown-dtype", ["calibrate", "h", "--gpu", "H200"],
         ("h/gemm.csv:3", "'fp4'"), {"h/gemm.csv": GEMM % ("fp4", "4.6e-05")}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, monkeypatch, capsys):
    one_line_exit_2_nothing_written(case, tmp_path, monkeypatch, capsys)


def test_the_table_is_large_and_covers_every_command():
    # the four files' tables are one table: ids unique across them, every command in one
    from test_bad_scenario import CASES as SCENARIO_CASES
    from test_bad_sweep import CASES as SWEEP_CASES
    from test_bad_traces import CASES as TRACE_CASES

    cases = [*SCENARIO_CASES, *TRACE_CASES, *SWEEP_CASES, *CASES]
    assert len(cases) >= 40
    assert len({c.id for c in cases}) == len(cases)
    commands = {c.argv[0] for c in cases}
    assert {"run", "sweep", "predict", "trace", "topology", "calibrate"} <= commands


def test_a_write_protected_out_folder_is_named_not_a_temporary_file(tmp_path, monkeypatch,
                                                                   capsys):
    # root ignores permission bits, so the refusal a read-only folder gives is simulated
    import tempfile

    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "t.jsonl").write_text(TRACE)
    (tmp_path / "ro").mkdir()

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(Path(dir) / ".x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "tiny.toml", "--out", "ro/result"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "--out ro/result: ro cannot be written (Permission denied)" in err
    assert ".tmp" not in err
    assert tree(tmp_path) == before
