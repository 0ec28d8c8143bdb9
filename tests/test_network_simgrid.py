"""Cross-check of the Fabric against SimGrid (CI installs it: docs/simgrid.md).

SimGrid's CM02 network model with cross-traffic off is the same fluid model: a flow waits its
route's latency, then shares bandwidth max-min fairly over its links. CM02 weighs each flow's
share by its route latency (TCP's RTT unfairness), so the platforms here give every route the same
latency (a star: two hops of equal latency), where weighted and plain max-min coincide; its TCP
window bound (``TCP-gamma / 2·latency``) is lifted by a huge gamma. See docs/simgrid.md to install.

SimGrid allows one engine per process, so each case runs in a fresh Python process: this
interpreter when it imports ``simgrid`` (a source build in the venv), else the interpreter named by
``KVFABRIC_SIMGRID_PYTHON``, else the system's ``/usr/bin/python3`` with Debian's
``python3-simgrid`` (what ``.ci/run`` installs). Without any, the module is skipped — except under
CI (``CI`` set), where a missing SimGrid fails: the one external oracle must not skip silently.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import simpy


def _simgrid_python() -> tuple[str, dict[str, str]] | None:
    """An interpreter that imports ``simgrid`` and the environment to run it with, or None."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("simgrid")
    if spec is not None and spec.origin:  # a source build beside its libsimgrid.so
        env["LD_LIBRARY_PATH"] = f"{Path(spec.origin).parent}:{env.get('LD_LIBRARY_PATH', '')}"
        return sys.executable, env
    for exe in (os.environ.get("KVFABRIC_SIMGRID_PYTHON"), "/usr/bin/python3"):
        if exe and shutil.which(exe) and subprocess.run(
                [exe, "-c", "import simgrid"], capture_output=True, timeout=60).returncode == 0:
            return exe, env
    return None


SIMGRID = _simgrid_python()
if SIMGRID is None:
    if os.environ.get("CI"):
        pytest.fail("SimGrid is not installed: .ci/run installs python3-simgrid (docs/simgrid.md)",
                    pytrace=False)
    pytest.skip("SimGrid is not installed (docs/simgrid.md)", allow_module_level=True)

from simulator.network import Fabric  # noqa: E402
from simulator.testing.fabric import FlowSpec, duplex, run_flows  # noqa: E402
from simulator.units import GBps, us  # noqa: E402

SIMGRID_CONFIG = [
    "--cfg=network/model:CM02",
    "--cfg=network/crosstraffic:0",
    "--cfg=network/TCP-gamma:1e30",  # no TCP window bound
    "--cfg=network/weight-S:0",
    "--cfg=network/latency-factor:1",
    "--cfg=network/bandwidth-factor:1",
    "--cfg=maxmin/precision:1e-13",
    "--cfg=surf/precision:1e-13",
    "--log=root.thresh:critical",
]

RUNNER = textwrap.dedent("""
    import json, sys
    from simgrid import Actor, Engine, Host, Mailbox, this_actor

    spec = json.load(open(sys.argv[1]))
    e = Engine(["kvfabric-check", *spec["config"]])
    e.load_platform(sys.argv[2])
    finished = [None] * len(spec["flows"])

    def now():
        c = getattr(Engine, "clock", None)
        return c if isinstance(c, float) else Engine.get_clock()

    def sender(i, at, size):
        this_actor.sleep_until(at)
        Mailbox.by_name(f"m{i}").put(i, size)

    def receiver(i):
        Mailbox.by_name(f"m{i}").get()
        finished[i] = now()

    for i, (at, src, dst, size) in enumerate(spec["flows"]):
        Actor.create(f"r{i}", Host.by_name(dst), receiver, i)
        Actor.create(f"s{i}", Host.by_name(src), sender, i, at, size)
    e.run()
    print(json.dumps(finished))
""")


def _platform_xml(g: nx.DiGraph, fabric: Fabric, flows) -> str:
    hosts = sorted({f.src for f in flows} | {f.dst for f in flows})
    edges = sorted(g.edges)
    ids = {e: f"L{i}" for i, e in enumerate(edges)}
    lines = ["<?xml version='1.0'?>",
             '<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">',
             '<platform version="4.1">', '  <zone id="world" routing="Full">']
    lines += [f'    <host id="{h}" speed="1Gf"/>' for h in hosts]
    for e in edges:
        d = g.edges[e]
        lines.append(f'    <link id="{ids[e]}" bandwidth="{d["bandwidth"]!r}Bps" '
                     f'latency="{d["latency"]!r}s"/>')
    for src, dst in sorted({(f.src, f.dst) for f in flows}):
        ctn = "".join(f'<link_ctn id="{ids[e]}"/>' for e in fabric.path(src, dst).edges)
        lines.append(f'    <route src="{src}" dst="{dst}" symmetrical="NO">{ctn}</route>')
    lines += ["  </zone>", "</platform>"]
    return "\n".join(lines)


def _simgrid_finish_times(g, flows, tmp_path: Path) -> list[float]:
    fabric = Fabric(simpy.Environment(), g)
    (tmp_path / "platform.xml").write_text(_platform_xml(g, fabric, flows))
    (tmp_path / "spec.json").write_text(json.dumps({
        "config": SIMGRID_CONFIG,
        "flows": [(f.issued_at, f.src, f.dst, int(f.nbytes)) for f in flows],
    }))
    (tmp_path / "runner.py").write_text(RUNNER)
    exe, env = SIMGRID
    out = subprocess.run([exe, str(tmp_path / "runner.py"), str(tmp_path / "spec.json"),
                          str(tmp_path / "platform.xml")], capture_output=True, text=True,
                         env=env, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _star(bandwidths):
    g = nx.DiGraph()
    for i, bw in enumerate(bandwidths):
        duplex(g, f"h{i}", "sw", bw, us(1))  # equal latency everywhere: see the docstring
    return g


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simgrid_cm02_gives_the_same_finish_times(seed, tmp_path):
    rng = np.random.default_rng(seed)
    bws = [GBps(x) for x in rng.choice([12.5, 25, 50, 100], size=6)]
    g = _star(bws)
    n = 40
    src = rng.integers(0, 6, n)
    dst = (src + rng.integers(1, 6, n)) % 6
    at = np.round(np.cumsum(rng.exponential(2e-4, n)), 9)
    size = np.round(rng.exponential(5e6, n))
    flows = [FlowSpec(float(t), f"h{a}", f"h{b}", float(s))
             for t, a, b, s in zip(at, src, dst, size, strict=True)]
    ours = [r.finished_at for r in run_flows(Fabric(simpy.Environment(), g), flows)]
    theirs = _simgrid_finish_times(g, flows, tmp_path)
    assert any(r > 0 for r in np.subtract(ours, [f.issued_at + us(2) + f.nbytes / GBps(100)
                                                  for f in flows]))  # some flows were slowed
    worst = np.max(np.abs(np.subtract(ours, theirs)) / np.array(theirs))
    assert worst <= 1e-9, worst
