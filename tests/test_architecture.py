"""The package map: imports follow the layers of docs/architecture.md, no circles, a fresh picture.

The checker reads source with ``ast`` only; these tests also plant the mistakes it must catch (an
upward import, a circle, an unlisted unit) in a scratch copy of a tiny tree.
"""

from __future__ import annotations

from pathlib import Path

from simulator.testing import architecture as arch

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_follows_the_layers_and_nothing_imports_in_a_circle():
    problems = arch.check(ROOT)
    assert problems == [], "\n".join(problems)


def test_the_picture_in_the_docs_was_drawn_from_the_code_as_it_is():
    ug = arch.unit_graph(arch.module_graph(ROOT))
    drawn = arch.picture_edges(ROOT / "docs" / "images" / "architecture.png")
    assert drawn == arch.edge_list(ug), (
        "docs/images/architecture.png is stale; redraw it: "
        "python -m simulator.testing.architecture --draw docs/images/architecture.png")


def test_the_picture_can_be_redrawn(tmp_path):
    ug = arch.unit_graph(arch.module_graph(ROOT))
    out = arch.draw(ug, arch.read_layers(ROOT / "docs" / "architecture.md"), tmp_path / "a.png")
    assert arch.picture_edges(out) == arch.edge_list(ug)


def test_the_engines_and_the_pool_loops_sit_below_the_one_entry():
    layers = arch.read_layers(ROOT / "docs" / "architecture.md")
    ug = arch.unit_graph(arch.module_graph(ROOT))
    assert layers["runner"] > layers["engine"] and layers["runner"] > layers["disaggregation"]
    assert {"engine", "disaggregation"} <= set(ug.successors("runner"))
    assert "disaggregation" not in set(ug.successors("engine"))
    assert "scenario" not in set(ug.successors("engine"))


def _tree(tmp_path: Path, files: dict[str, str], layers: str) -> Path:
    for rel, text in files.items():
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    for pkg in arch.PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "architecture.md").write_text(
        f"```layers\n{layers}99: topologies workloads\n```\n")
    return tmp_path


def test_an_upward_import_is_reported_with_the_modules_that_make_it(tmp_path):
    root = _tree(tmp_path, {
        "simulator/units.py": "",
        "simulator/network/__init__.py": "",
        "simulator/network/fabric.py": "from simulator import units\n",
        # a leaf reaching up into a package (inside a function: still an import)
        "simulator/errors.py": "def f():\n    from simulator.network.fabric import x\n",
    }, "0: units errors\n1: network\n")
    problems = arch.check(root)
    assert any("errors (layer 0) imports network (layer 1)" in p
               and "simulator.errors → simulator.network.fabric" in p for p in problems)


def test_a_circle_and_an_unlisted_unit_are_reported(tmp_path):
    root = _tree(tmp_path, {
        "simulator/a.py": "import simulator.b\n",
        "simulator/b.py": "from simulator import a\n",
        "simulator/c.py": "",
    }, "0: a b\n")
    problems = arch.check(root)
    assert "import circle among units: a ↔ b" in problems
    assert any(p.startswith("c: not in any layer") for p in problems)
    # same layer imports are against the direction too (only lower layers may be imported)
    assert any("a (layer 0) imports b (layer 0)" in p for p in problems)


def test_relative_imports_and_from_package_import_module_resolve(tmp_path):
    root = _tree(tmp_path, {
        "simulator/gpu/__init__.py": "from .kernels import K\n",
        "simulator/gpu/kernels.py": "from ..units import us\n",
        "simulator/units.py": "",
        "simulator/engine/__init__.py": "",
        "simulator/engine/exact.py": ("from simulator.gpu import kernels\n"
                                      "from simulator import gpu\n"),
    }, "0: units\n1: gpu\n2: engine\n")
    mg = arch.module_graph(root)
    assert mg.has_edge("simulator.gpu", "simulator.gpu.kernels")
    assert mg.has_edge("simulator.gpu.kernels", "simulator.units")
    assert mg.has_edge("simulator.engine.exact", "simulator.gpu.kernels")
    assert mg.has_edge("simulator.engine.exact", "simulator.gpu")
    assert arch.check(root) == []
