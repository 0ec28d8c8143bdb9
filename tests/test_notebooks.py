"""The notebooks are part of the product: each runs top to bottom, and the numbers its text claims
(a crossover, a ratio, an ordering) are asserted in the notebook itself, in a cell right after the
computation — so a notebook whose text stops being true fails here, naming the cell."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_its_claims_hold(path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as e:  # an assert cell failed: its claim no longer holds
        pytest.fail(f"{path.name}: {e}", pytrace=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_asserts_its_claims(path):
    asserting = [c for c in code_cells(path) if re.search(r"^\s*assert\b", c.source, re.M)]
    assert len(asserting) >= 2, f"{path.name}: assert the numbers the text claims"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_without_outputs(path):
    """Outputs are made by running the notebook (the test above): committed ones go stale."""
    stale = [i for i, c in enumerate(code_cells(path)) if c.outputs or c.execution_count]
    assert not stale, f"{path.name}: clear the outputs of code cells {stale}"
