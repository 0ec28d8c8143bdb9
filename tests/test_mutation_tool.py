"""``benchmarks/mutation.py``'s data stays true to the code it names: each planted bug's text is
in its module once (else ``planted`` reports it stale instead of planting it: two did so for a
stop after their lines moved), and each equivalent mutant's line is found (``--equivalents``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchtools import benchmark

ROOT = Path(__file__).resolve().parents[1]
mutation = benchmark("mutation")


@pytest.mark.parametrize("bug", mutation.PLANTED, ids=lambda b: b.name)
def test_each_planted_bug_replaces_text_found_once_in_its_module(bug):
    text = (ROOT / bug.path).read_text()
    assert text.count(bug.old) == 1, f"{bug.name}: move its text with the code it names"
    assert bug.new != bug.old and bug.tests


def test_every_equivalent_mutant_names_a_line_that_is_there_once():
    assert mutation.ambiguous_equivalents() == []
