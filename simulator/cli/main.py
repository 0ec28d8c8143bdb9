"""The ``kvfabric`` command line.

One click group; each sub-command lives in its own module and is imported only when it runs
(so ``kvfabric --help`` is fast and one broken sub-command cannot break the others). To add a
command, add one line to :data:`COMMANDS`.

User errors (:class:`simulator.errors.UserError`, missing files, a bad option) print one line
naming the file, field, option or line at fault and exit with status 2 — never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from simulator.errors import UserError

#: command name → (module, attribute, one-line help). The only place a command is registered.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "topology": ("simulator.cli.topology", "topology", "Inspect and draw cluster topologies."),
    "demo": ("simulator.cli.demo", "demo",
             "Fabric demo: six transfers sharing links, against the closed form."),
    "run": ("simulator.cli.run", "run", "Run a scenario for one or more policies."),
    "predict": ("simulator.cli.predict", "predict", "Closed-form route/fetch/local cost of one round."),
    "calibrate": ("simulator.cli.calibrate", "calibrate", "Fit fabric and kernel coefficients from measurements."),
    "kernel": ("simulator.cli.kernel", "kernel", "One operator's modelled time and its source; `kernel list`."),
    "sweep": ("simulator.cli.sweep", "sweep", "Run a parameter sweep locally or on Dask."),
    "trace": ("simulator.cli.trace", "trace", "Inspect, convert and generate request traces."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attr, _ = entry
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, invoke_without_command=True)
@click.version_option(package_name="kvfabric")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """kvfabric: route the query, fetch the cache, or disaggregate attention?

    Without a command, runs the default scenario (`kvfabric run`)."""
    if ctx.invoked_subcommand is None:
        default = "run" if "run" in COMMANDS else "demo"
        ctx.invoke(cli.get_command(ctx, default))


def _command_path(argv: list[str]) -> str:
    """The deepest command ``argv`` names (``kvfabric trace stats``): where to look for help
    on a usage error click raised without its context (an option given without its value)."""
    names, cmd = ["kvfabric"], cli
    ctx = click.Context(cli)
    for arg in argv:
        sub = cmd.get_command(ctx, arg) if isinstance(cmd, click.Group) else None
        if sub is None:
            break
        names.append(arg)
        cmd = sub
    return " ".join(names)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, turning user errors into one clean line."""
    try:
        # Outside standalone mode click returns ctx.exit(code)'s code instead of raising it;
        # every command returns None, so an int here is an exit status to pass on.
        code = cli.main(args=argv, prog_name="kvfabric", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:  # `kvfabric trace`: its help, as --help
        click.echo(exc.format_message())
        return
    except click.UsageError as exc:  # one line, like every user error, with where to look
        where = (exc.ctx.command_path if exc.ctx is not None
                 else _command_path(sys.argv[1:] if argv is None else argv))
        click.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a path too long, a disk full, a file not there or not readable
        if exc.filename is not None:
            reason = exc.strerror or type(exc).__name__
            click.echo(f"error: {exc.filename}: {reason}", err=True)
        else:  # FileNotFoundError("path") and the like: the message is the file
            click.echo(f"error: {exc}: {type(exc).__name__}", err=True)
        sys.exit(2)
    except MemoryError:  # sizes the checks let through (a huge rate, a cluster of 1e9 nodes)
        click.echo("error: out of memory: the command asked for more than this machine has; "
                   "give smaller sizes (requests, rates, nodes, durations)", err=True)
        sys.exit(2)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
