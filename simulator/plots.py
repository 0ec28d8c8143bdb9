"""Matplotlib figures of runs, side by side by policy (Agg backend; PNGs written atomically).

- :func:`latency_cdfs` — CDFs of time to first token and time between tokens per policy;
- :func:`phase_breakdown` — mean simulated probe / transfer / compute / return / merge time per
  round (all layers of one token, weighted by the layers a round stands for), per policy, next
  to the closed form's;
- :func:`link_utilization` — utilization over time of the busiest link of each kind (per time
  bin), and the mean over that kind's links (dashed);
- :func:`closed_form_scatter` — closed-form vs simulated round time, one point per round.

Each takes ``{policy: Result}`` and returns a ``Figure``; :func:`write_all` saves all four.
Times are converted to ms / µs only here, at the edge.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # scripts and the CLI draw off-screen; notebooks inline
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simulator.engine.records import tbt_samples  # noqa: E402
from simulator.fileio import atomic_path  # noqa: E402

PHASES = ("probe", "transfer", "compute", "return", "merge")


def _cdf(ax, values, weights=None, label=""):
    values = np.asarray(values, float)
    if len(values) == 0:
        return
    order = np.argsort(values, kind="stable")
    v = values[order]
    w = np.ones_like(v) if weights is None else np.asarray(weights, float)[order]
    c = np.cumsum(w)
    if c[-1] <= 0:
        return
    ax.step(v * 1e3, c / c[-1], where="post", label=label)


def latency_cdfs(results: dict):
    """TTFT and TBT CDFs by policy."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for policy, res in results.items():
        r = res.requests[res.requests["completed"]]
        _cdf(a, (r["first_token_at"] - r["arrival_at"]).to_numpy(), label=policy)
        dur, w = tbt_samples(res.iterations)
        _cdf(b, dur, w, label=policy)
    a.set(xlabel="time to first token [ms]", ylabel="fraction of requests", xscale="log",
          title="TTFT")
    b.set(xlabel="time between tokens [ms]", ylabel="fraction of tokens", xscale="log",
          title="TBT")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def phase_breakdown(results: dict):
    """Mean phase times per decoded token across all layers, simulated vs closed form."""
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(results) + 2), 4))
    labels, bottoms = [], None
    rows = []
    for policy, res in results.items():
        rd = res.rounds
        tokens = max(float(res.summary.get("decode_tokens", 0.0)), 1.0)
        for kind in ("sim", "cf"):
            vals = []
            for ph in PHASES:
                col = f"{ph}_time" if kind == "sim" else f"cf_{ph}_time"
                vals.append(float((rd[col] * rd["layers"]).sum()) / tokens if len(rd) else 0.0)
            rows.append(vals)
            labels.append(f"{policy}\n{'simulated' if kind == 'sim' else 'closed form'}")
    data = np.array(rows) * 1e6 if rows else np.zeros((0, len(PHASES)))
    x = np.arange(len(labels))
    bottoms = np.zeros(len(labels))
    for j, ph in enumerate(PHASES):
        ax.bar(x, data[:, j], bottom=bottoms, label=ph)
        bottoms += data[:, j]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("round time per generated token [µs]\n(summed over a token's rounds)")
    ax.set_title("Phase breakdown")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def link_utilization(results: dict):
    """Utilization per link kind over time (busiest link solid, mean dashed), one panel per
    policy."""
    n = max(len(results), 1)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.4 * n), sharex=True, squeeze=False)
    for ax, (policy, res) in zip(axes[:, 0], results.items(), strict=False):
        tl = res.link_timeline
        if len(tl):
            for kind, part in sorted(tl.groupby("kind"), key=lambda kv: str(kv[0])):
                by_bin = part.groupby("start_at")["utilization"]
                top, mean = by_bin.max(), by_bin.mean()
                (line,) = ax.plot(top.index.to_numpy(), top.to_numpy() * 100,
                                  label=f"{kind} (busiest)")
                ax.plot(mean.index.to_numpy(), mean.to_numpy() * 100, ls="--", lw=0.8,
                        color=line.get_color())
            ax.legend(fontsize=8, loc="upper right")
        ax.set_ylabel("util. [%]")
        ax.set_title(policy, fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("simulated time [s]")
    fig.tight_layout()
    return fig


def closed_form_scatter(results: dict, max_points: int = 20_000):
    """Closed-form vs simulated time per round (deterministic subsample), with y = x."""
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = np.inf, 0.0
    for policy, res in results.items():
        rd = res.rounds
        if not len(rd):
            continue
        step = max(1, len(rd) // max_points)
        cf = rd["cf_time"].to_numpy()[::step] * 1e6
        sim = rd["sim_time"].to_numpy()[::step] * 1e6
        ax.scatter(cf, sim, s=3, alpha=0.4, label=policy)
        lo, hi = min(lo, cf.min(), sim.min()), max(hi, cf.max(), sim.max())
    if hi > 0:
        lo = max(lo, 1e-3)
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, label="y = x")
        ax.set(xscale="log", yscale="log")
    ax.set(xlabel="closed form [µs]", ylabel="simulated [µs]", title="Round time")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


FIGURES = {
    "latency_cdf.png": latency_cdfs,
    "phase_breakdown.png": phase_breakdown,
    "link_utilization.png": link_utilization,
    "closed_form_scatter.png": closed_form_scatter,
}


def write_all(results: dict, out_dir: str | Path) -> list[Path]:
    """Save every figure of :data:`FIGURES` into ``out_dir`` (which must exist)."""
    out = []
    engines = sorted({getattr(r, "summary", {}).get("engine", "exact") for r in results.values()})
    for name, make in FIGURES.items():
        fig = make(results)
        fig.text(0.995, 0.005, f"{' + '.join(engines)} engine", ha="right", va="bottom",
                 fontsize=7, color="0.4")  # which engine made the records
        target = Path(out_dir) / name
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        out.append(target)
    return out


# -- closed-form figures (notebooks, `kvfabric predict`) -------------------------------------

DECISION_COLORS = {"route": "#4C72B0", "fetch": "#DD8452", "local": "#55A868"}


def decision_map(ax, grid, curve=None, over: str = "bandwidth", title: str = ""):
    """Colour each (blocks, value) cell of :func:`simulator.costmodel.maps.decision_map` by the
    cheapest option; draw the closed-form crossover curve on top if given."""
    from matplotlib.colors import ListedColormap

    options = list(DECISION_COLORS)
    blocks = np.sort(grid["blocks"].unique())
    values = np.sort(grid["value"].unique())
    codes = (grid.assign(code=grid["decision"].map(options.index))
             .pivot(index="value", columns="blocks", values="code")
             .reindex(index=values, columns=blocks).to_numpy())
    scale = 1e-9 if over == "bandwidth" else 1e6
    ax.pcolormesh(blocks, values * scale, codes, shading="nearest", vmin=-0.5, vmax=2.5,
                  cmap=ListedColormap([DECISION_COLORS[o] for o in options]))
    if curve is not None and curve["crossover_blocks"].notna().any():
        ax.plot(curve["crossover_blocks"], curve["value"] * scale, "k-", lw=2,
                label="route = fetch (closed form)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(blocks[0], blocks[-1])
    ax.set_xlabel("selected blocks per query (64 tokens each)")
    ax.set_ylabel("path line rate [GB/s]" if over == "bandwidth"
                  else "per-message overhead + latency [µs]")
    handles = [plt.Rectangle((0, 0), 1, 1, color=DECISION_COLORS[o]) for o in options]
    labels = [f"{o} cheapest" for o in options]
    if curve is not None:
        handles += ax.get_legend_handles_labels()[0]
        labels += ax.get_legend_handles_labels()[1]
    ax.legend(handles, labels, loc="upper right", fontsize=8, framealpha=0.9)
    if title:
        ax.set_title(title)
    return ax
