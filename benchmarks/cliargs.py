"""Comma-separated command-line lists for the benchmark scripts, checked before any run.

Each function here is an ``argparse`` ``type=``: a bad list is an ``ArgumentTypeError``, which
argparse prints as one ``error: argument --x: …`` line naming the value and the fix, with exit
status 2 — never a traceback from deep inside a run that has already started.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable


def ints(text: str, *, least: int | None = None) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]`` (empty items skipped); each at least ``least`` if given."""
    try:
        got = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give comma-separated integers, e.g. 0,1,2") from None
    if not got:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one integer")
    if least is not None and min(got) < least:
        raise argparse.ArgumentTypeError(f"{text!r}: each must be at least {least}")
    return got


def positive_ints(text: str) -> list[int]:
    """:func:`ints`, each ≥ 1 (counts such as trace prefixes)."""
    return ints(text, least=1)


def names(known: Iterable[str], what: str) -> Callable[[str], list[str]]:
    """A ``type=`` for comma-separated names, each one of ``known`` (``what`` names them in
    the message, e.g. ``"policy"``)."""
    choices = tuple(known)

    def parse(text: str) -> list[str]:
        got = [x.strip() for x in text.split(",") if x.strip()]
        if not got:
            raise argparse.ArgumentTypeError(f"{text!r}: give at least one {what}")
        bad = [x for x in got if x not in choices]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {bad[0]!r}; known: {', '.join(choices)}")
        return got

    return parse


def policy_names(text: str) -> list[str]:
    """A ``type=`` for comma-separated policies, each a registered one
    (:data:`simulator.policies.POLICIES`)."""
    from simulator.policies import POLICIES

    return names(POLICIES, "policy")(text)
