"""The shipped scenarios: where they lie, and a scenario (or sweep) file found by name."""

from __future__ import annotations

from pathlib import Path

from simulator.errors import UserError


def shipped_dir() -> Path:
    """The shipped ``scenarios/`` folder: the source checkout's, or the copy a regular install
    puts under ``<prefix>/share/kvfabric/scenarios``."""
    import sys

    checkout = Path(__file__).resolve().parents[2] / "scenarios"
    if (checkout / "agentic_repo.toml").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "kvfabric" / "scenarios"


def find(arg: str | Path, what: str = "scenario") -> Path:
    """The file ``arg`` names: an existing path; else, for a name without ``.toml``, that name
    with ``.toml`` where it points (``myscen`` → ``./myscen.toml``); else a shipped scenario
    (or sweep) by name, with or without ``.toml`` (``"lamina_llama3_70b"``) — from any folder.
    A file of the user's own comes first, as ``lamina_llama3_70b.toml`` in this folder does."""
    path = Path(arg)
    if path.is_file():
        return path
    if path.is_dir():
        raise UserError(f"{arg}: a folder, not a {what} file; pass a {what} .toml file or a "
                        "shipped name")
    own = path.with_name(f"{path.name}.toml") if path.name else path
    if not path.name.endswith(".toml") and own.is_file():
        return own
    name = path.name[:-5] if path.name.endswith(".toml") else path.name
    shipped = shipped_dir() / f"{name}.toml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in shipped_dir().glob("*.toml")
                   if p.stem.endswith("_sweep") == (what == "sweep"))
    raise UserError(f"{arg}: {what} file not found; pass a {what} .toml file or a shipped "
                    f"name ({', '.join(names)})")
