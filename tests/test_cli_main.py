"""The ``kvfabric`` entry point: every way a command can end becomes the right exit status and,
for errors, one line on stderr. Commands are registered here for the test through
:data:`simulator.cli.main.COMMANDS`, the one place the real ones are."""

from __future__ import annotations

import importlib

import click
import pytest
from clitools import run_main

from simulator.errors import UserError

#: the module, not the function simulator.cli.main that shadows it on the package
main_module = importlib.import_module("simulator.cli.main")


@click.command("ends")
@click.argument("how")
def ends(how: str) -> None:
    """End the way HOW names."""
    ctx = click.get_current_context()
    if how == "exit3":
        ctx.exit(3)
    if how == "exit0":
        ctx.exit(0)
    if how == "abort":
        raise click.Abort()
    if how == "user":
        raise UserError("scenario.toml: field 'seed': give an integer")
    if how == "missing":
        open("/nonexistent/kvfabric/file.toml")  # noqa: SIM115 - raises with a filename
    if how == "missing-no-name":
        raise FileNotFoundError("trace.parquet")
    if how == "too-long":
        open("x" * 300 + ".toml")  # noqa: SIM115 - raises OSError (ENAMETOOLONG), not a subclass
    if how == "memory":
        raise MemoryError()
    if how == "click":
        raise click.ClickException("a click error")
    click.echo("done")


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setitem(main_module.COMMANDS, "ends", (__name__, "ends", "Ends as asked."))


@pytest.mark.parametrize(("how", "code"), [("exit3", 3), ("exit0", 0), ("plain", 0)])
def test_the_exit_status_a_command_asks_for_is_the_process_status(how, code, capsys):
    status, out, err = run_main(["ends", how], capsys)
    assert status == code and err == ""
    assert out == ("done\n" if how == "plain" else "")


@pytest.mark.parametrize(("how", "code", "line"), [
    ("abort", 130, "aborted"),
    ("user", 2, "error: scenario.toml: field 'seed': give an integer"),
    ("missing", 2, "error: /nonexistent/kvfabric/file.toml: No such file or directory"),
    ("missing-no-name", 2, "error: trace.parquet: FileNotFoundError"),
    ("click", 1, "Error: a click error"),
    ("too-long", 2, "error: " + "x" * 300 + ".toml: File name too long"),
    ("memory", 2, "error: out of memory: the command asked for more than this machine has; "
     "give smaller sizes (requests, rates, nodes, durations)"),
])
def test_errors_end_with_one_line_and_their_status(how, code, line, capsys):
    status, out, err = run_main(["ends", how], capsys)
    assert (status, out, err) == (code, "", line + "\n")


def test_a_usage_error_names_the_help_to_read(capsys):
    status, out, err = run_main(["ends"], capsys)
    assert status == 2 and out == ""
    assert err.startswith("error: Missing argument 'HOW'.")
    assert err.endswith("(see 'kvfabric ends --help')\n") and err.count("\n") == 1
    status, _, err = run_main(["no-such-command"], capsys)
    assert status == 2 and err.endswith("(see 'kvfabric --help')\n")


def test_a_group_without_its_command_prints_its_help_as_help_does(capsys):
    status, out, err = run_main(["trace"], capsys)
    assert (status, err) == (0, "")
    assert out.startswith("Usage: kvfabric trace [OPTIONS] COMMAND [ARGS]...")
    assert "stats" in out and "convert" in out
    assert out == run_main(["trace", "--help"], capsys)[1]


def test_help_and_version_exit_zero(capsys):
    status, out, _ = run_main(["--help"], capsys)
    assert status == 0 and "ends" in out and "Ends as asked." in out
    status, out, _ = run_main(["--version"], capsys)
    assert status == 0 and out.startswith("kvfabric, version ")


def test_a_command_that_ends_well_returns_from_main(capsys):
    assert main_module.main(["ends", "plain"]) is None
    assert main_module.main(["ends", "exit0"]) is None  # ctx.exit(0): no SystemExit either
    assert capsys.readouterr().out == "done\n"


@click.command("run")
def run_stand_in() -> None:
    """Stand in for kvfabric run."""
    click.echo("the run stand-in")


@click.command("demo")
def demo_stand_in() -> None:
    """Stand in for kvfabric demo."""
    click.echo("the demo stand-in")


def test_kvfabric_alone_runs_the_default_run_or_else_the_demo(monkeypatch, capsys):
    monkeypatch.setitem(main_module.COMMANDS, "run", (__name__, "run_stand_in", "Stand-in."))
    monkeypatch.setitem(main_module.COMMANDS, "demo", (__name__, "demo_stand_in", "Stand-in."))
    assert run_main([], capsys) == (0, "the run stand-in\n", "")
    monkeypatch.delitem(main_module.COMMANDS, "run")
    assert run_main([], capsys) == (0, "the demo stand-in\n", "")


def _commands(group: click.Group, ctx: click.Context, prefix: str = ""):
    """Every leaf command under ``group``: (full name, command)."""
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, ctx, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def test_the_readme_names_exactly_the_commands_that_take_json():
    import re
    from pathlib import Path

    group = main_module.cli
    with click.Context(group) as ctx:
        taking = {name for name, cmd in _commands(group, ctx)
                  if any("--json" in p.opts for p in cmd.params)}
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    sentence = re.search(r"Those that print results — (.*?) — take `--json`", readme, re.S)
    assert sentence, "README.md: the sentence listing the commands that take --json moved"
    assert set(re.findall(r"`([a-z ]+)`", sentence.group(1))) == taking
    # the rest (trace convert, trace gen …) write a file instead, as README.md says
    assert not any(n.startswith(("trace convert", "trace gen")) for n in taking)
