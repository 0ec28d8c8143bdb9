"""User text is printed as written: rich reads ``[...]`` as markup, so a path, scenario, sweep or
file name with brackets in it was mangled (``res[x]`` printed as ``res``) or, with ``[/x]``,
stopped the command with a MarkupError traceback after its work was done."""

from __future__ import annotations

import json

import pytest
from clitools import run_main, small_scenario

#: A name rich would read as a tag that is closed without being opened (a MarkupError), and
#: one it would read as a style to apply (and drop from the text). A scenario's or sweep's name
#: cannot hold a '/' (it names a folder), so only the second kind.
BAD = ("run[/x]", "res[bold]")
NAMES = ("res[bold]", "run[red]x")

def flat(text: str) -> str:
    """``text`` without whitespace: rich wraps long titles and lines at the terminal width."""
    return "".join(text.split())


def scenario(folder, name: str):
    return small_scenario(folder, name=name, policies=["route", "fetch"])


@pytest.mark.parametrize(("name", "text"), list(zip(NAMES, BAD, strict=True)))
def test_run_prints_the_scenario_name_and_output_folder_as_given(name, text, tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / text
    code, stdout, stderr = run_main(["run", str(scenario(tmp_path, name)), "--out", str(out)],
                                    capsys)
    assert code == 0, stderr
    assert f"{name} (seed 1," in stdout  # the table's title
    assert f"files to {out}/" in stderr
    assert (out / "summary.json").is_file()


def test_topology_show_prints_the_file_and_figure_names_as_given(tmp_path, capsys):
    figure = tmp_path / "fig[/x].png"  # the file x].png in the folder fig[
    figure.parent.mkdir()
    code, out, err = run_main(["topology", "show", "single_node:gpus=2", "-o", str(figure)],
                              capsys)
    assert code == 0, err
    assert flat(f"wrote {figure}") in flat(out)
    assert figure.is_file()


def test_predict_prints_the_plot_name_as_given(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    plot = tmp_path / "sweep[/x].png"
    plot.parent.mkdir()
    code, out, err = run_main(["predict", "--model", "deepseek-v3.2", "--topology",
                               "single_node:gpus=2", "--src", "n0/gpu0", "--dst", "n0/gpu1",
                               "--sweep", "blocks=1:64", "--plot", str(plot)], capsys)
    assert code == 0, err
    assert flat(f"plot written to {plot}") in flat(out)
    assert plot.is_file()


def test_calibrate_prints_the_csv_and_output_names_as_given(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    csv = tmp_path / "ping[/x].csv"
    csv.parent.mkdir()
    csv.write_text("bytes,rtt_seconds\n" + "".join(
        f"{b},{2 * (5e-6 + b / 40e9):.9g}\n" for b in (1e3, 1e5, 1e6, 1e7)))
    output = tmp_path / "fabric[bold].toml"
    code, out, err = run_main(["calibrate", str(csv), "-o", str(output)], capsys)
    assert code == 0, err
    assert flat(f"{csv}: pingpong rows") in flat(out)
    assert flat(f"written: {output}") in flat(out)
    assert output.is_file()


def test_sweep_prints_its_name_and_results_path_as_given(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('[sweep]\nname = "grid[bold]"\nkind = "predict"\nseed = 1\n'
                     '[grid]\nblocks = [8, 64]\n'
                     '[base]\nmodel = "deepseek-v3.2"\ntopology = "dgx_h100:nodes=2"\n')
    code, out, err = run_main(["sweep", str(sweep), "--out", str(tmp_path / "s[bold]"),
                               "--workers", "1"], capsys)
    assert code == 0, err
    assert err.startswith("sweep grid[bold] (local, 1 worker)")  # the progress bar
    assert out.startswith("grid[bold]: 2 points")
    assert flat(str(tmp_path / "s[bold]" / "results.parquet")) in flat(out)


def test_json_output_is_untouched_by_markup(tmp_path, capsys):
    out = tmp_path / BAD[0]
    code, stdout, _ = run_main(["run", str(scenario(tmp_path, NAMES[1])), "--out", str(out),
                                "--json"], capsys)
    assert code == 0
    data = json.loads(stdout)
    assert data["scenario"] == NAMES[1] and data["out"] == str(out)
