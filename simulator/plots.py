"""Matplotlib figures of runs, side by side by policy (Agg backend; PNGs written atomically).

- :func:`latency_cdfs` — CDFs of time to first token and time between tokens per policy;
- :func:`phase_breakdown` — mean simulated probe / transfer / compute / return / merge time per
  round (all layers of one token, weighted by the layers a round stands for), per policy, next
  to the closed form's;
- :func:`link_utilization` — utilization over time of the busiest link of each kind (per time
  bin), and the mean over that kind's links (dashed); beside it, when the run recorded traffic
  classes, the fabric's bytes per second by class (route, fetch, MoE dispatch and combine, PD
  transfer, …) stacked over time;
- :func:`closed_form_scatter` — closed-form vs simulated round time, one point per round.

Each takes ``{policy: Result}`` and returns a ``Figure``; :func:`write_all` saves those that have
something to show and says why it skipped the others (an empty or degenerate run: no requests,
no rounds, no traffic) — never an empty or all-zero picture.

What makes them readable: axes are set by the bulk of the data (the :data:`BULK` quantiles,
what lies outside counted on the plot: requests, rounds, or — on the TBT CDF, which is of
tokens — tokens), every line is in its legend, and series that lie on top of each other stay
visible (line styles and widths differ, and a series identical to an earlier one says so in its
label: ``adaptive (= route)``). Times are converted to ms / µs only here, at the edge.
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
#: Quantiles of the pooled data that set a plot's axes (the rest are counted, not drawn).
BULK = (0.005, 0.995)
#: Line styles cycled over policies, widest first, so a later line on top of an earlier one
#: leaves the earlier one visible around it.
STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "x")


def _style(i: int) -> dict:
    return {"ls": STYLES[i % len(STYLES)], "lw": max(3.0 - 0.6 * i, 1.0)}


def _bulk(arrays, log: bool, weights=None) -> tuple[float, float, int]:
    """Axis limits (lo, hi) covering the :data:`BULK` quantiles of all values (positive ones
    on a log axis), padded; and how many values fall outside — or, given ``weights`` (one array
    per array of values: the tokens of each TBT sample), how much weight."""
    v = np.concatenate([np.asarray(a, float).ravel() for a in arrays]) if arrays else np.zeros(0)
    w = (np.ones_like(v) if not weights else
         np.concatenate([np.asarray(a, float).ravel() for a in weights]))
    keep = np.isfinite(v) & (v > 0) if log else np.isfinite(v)
    v, w = v[keep], w[keep]
    if len(v) == 0:
        return (1.0, 10.0, 0) if log else (0.0, 1.0, 0)
    lo, hi = np.quantile(v, BULK[0]), np.quantile(v, BULK[1])
    if log:
        pad = (hi / lo) ** 0.05 if hi > lo else 2.0
        lo, hi = lo / pad, hi * pad
    else:
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(lo), 1.0) * 0.05
        lo, hi = lo - pad, hi + pad
    return lo, hi, int(round(w[(v < lo) | (v > hi)].sum()))


def _log_ticks(axis) -> None:
    """Readable ticks on a log axis of any span: 1-2-5 steps as plain numbers, no minor labels
    (matplotlib's default writes overlapping ``2×10^0`` labels over less than a decade)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _outside_note(ax, outside: int, total: int, what: str) -> None:
    if outside:
        ax.text(0.99, 0.02, f"{outside:,} of {total:,} {what} outside the axes",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.35")


def _same_as(series: dict, key, values) -> str:
    """`` (= other)`` when ``values`` equals an earlier series, else ``""``."""
    for other, v in series.items():
        if other != key and len(v) == len(values) and np.array_equal(v, values):
            return f" (= {other})"
    series[key] = values
    return ""


def _cdf(ax, values, weights=None, label="", style=None):
    values = np.asarray(values, float)
    if len(values) == 0:
        return
    order = np.argsort(values, kind="stable")
    v = values[order]
    w = np.ones_like(v) if weights is None else np.asarray(weights, float)[order]
    c = np.cumsum(w)
    if c[-1] <= 0:
        return
    ax.step(v * 1e3, c / c[-1], where="post", label=label, **(style or {}))


def _ttft(res) -> np.ndarray:
    r = res.requests
    if not len(r):
        return np.zeros(0)
    r = r[r["completed"]]
    return (r["first_token_at"] - r["arrival_at"]).to_numpy(float)


def latency_cdfs(results: dict):
    """TTFT and TBT CDFs by policy (a policy without samples is named in the legend): the
    fraction of requests, and of tokens (each iteration's time weighted by its tokens)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    data = {p: (_ttft(res), *tbt_samples(res.iterations)) for p, res in results.items()}
    # the TBT CDF is of tokens (each iteration weighted by the tokens it made), and so is its
    # count of what lies outside the axes
    for ax, pick, what in ((a, lambda d: (d[0], None), "requests"),
                           (b, lambda d: (d[1], d[2]), "tokens")):
        seen: dict = {}
        pooled, weights = [], []
        for i, (policy, d) in enumerate(data.items()):
            v, w = pick(d)
            keep = v > 0 if w is None else (v > 0) & (w > 0)
            v, w = v[keep], (None if w is None else w[keep])
            if not len(v):
                ax.plot([], [], label=f"{policy} (no samples)", **_style(i))
                continue
            pooled.append(v * 1e3)
            weights.append(np.ones_like(v) if w is None else w)
            label = policy + _same_as(seen, policy, np.sort(v))
            _cdf(ax, v, w, label=label, style=_style(i))
        lo, hi, outside = _bulk(pooled, log=True, weights=weights)
        ax.set_xlim(lo, hi)
        total = int(round(sum(x.sum() for x in weights)))
        _outside_note(ax, outside, total, f"{what} (all runs)")
    a.set(xlabel="time to first token [ms]", ylabel="fraction of requests", xscale="log",
          title="TTFT")
    b.set(xlabel="time between tokens [ms]", ylabel="fraction of tokens", xscale="log",
          title="TBT")
    for ax in (a, b):
        _log_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def phase_breakdown(results: dict):
    """Mean phase times per decoded token across all layers, simulated vs closed form (policies
    without rounds are named under the bars, not drawn as zeros)."""
    drawn = {p: r for p, r in results.items() if len(r.rounds)}
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(drawn) + 2), 4))
    labels, rows = [], []
    for policy, res in drawn.items():
        rd = res.rounds
        tokens = max(float(res.summary.get("decode_tokens", 0.0)), 1.0)
        for kind in ("sim", "cf"):
            vals = []
            for ph in PHASES:
                col = f"{ph}_time" if kind == "sim" else f"cf_{ph}_time"
                vals.append(float((rd[col] * rd["layers"]).sum()) / tokens)
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
    missing = [p for p in results if p not in drawn]
    ax.set_title("Phase breakdown" + (f" (no rounds: {', '.join(missing)})" if missing else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _class_timeline(res):
    tl = res.extras.get("class_timeline") if isinstance(res.extras, dict) else None
    return tl if tl is not None and len(tl) and float(tl["bytes"].max()) > 0 else None


def link_utilization(results: dict):
    """Utilization per link kind over time (busiest link solid, mean dashed), one panel per
    policy; beside it, when recorded, the bytes per second of each traffic class (stacked)."""
    n = max(len(results), 1)
    classes = any(_class_timeline(r) is not None for r in results.values())
    fig, axes = plt.subplots(n, 2 if classes else 1, figsize=(14 if classes else 8, 2.4 * n),
                             sharex=True, squeeze=False)
    for ax, (policy, res) in zip(axes[:, 1] if classes else [], results.items(), strict=False):
        _traffic_classes(ax, policy, res)
    for ax, (policy, res) in zip(axes[:, 0], results.items(), strict=False):
        tl = res.link_timeline
        if len(tl) and float(tl["utilization"].max()) > 0:
            for kind, part in sorted(tl.groupby("kind"), key=lambda kv: str(kv[0])):
                by_bin = part.groupby("start_at")["utilization"]
                top, mean = by_bin.max(), by_bin.mean()
                (line,) = ax.plot(top.index.to_numpy(), top.to_numpy() * 100,
                                  label=f"{kind} (busiest)")
                ax.plot(mean.index.to_numpy(), mean.to_numpy() * 100, ls="--", lw=0.8,
                        color=line.get_color(), label=f"{kind} (mean)")
            ax.legend(fontsize=8, loc="upper right")
        else:
            ax.text(0.5, 0.5, "no link carried traffic", transform=ax.transAxes, ha="center",
                    va="center", color="0.4")
        ax.set_ylabel("util. [%]" + _folded(res))
        ax.set_title(policy, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-1, :]:
        ax.set_xlabel("simulated time [s]")
    fig.tight_layout()
    return fig


def _folded(res) -> str:
    """An axis label's note for a run that folds layers (``layers_per_slot`` in its summary):
    its link records carry one simulated layer per slot, about 1/that of every layer's
    traffic (docs/records.md, *Layer folding*); empty otherwise."""
    per = res.summary.get("layers_per_slot") if isinstance(res.summary, dict) else None
    return f"\n1 layer per slot (×{per:.1f} for all)" if per else ""


def _traffic_classes(ax, policy: str, res) -> None:
    """Bytes per second of each traffic class over time, summed over every link (a message
    counts on each link it crosses), stacked."""
    tl = _class_timeline(res)
    if tl is None:
        ax.text(0.5, 0.5, "no traffic classes recorded", transform=ax.transAxes, ha="center",
                va="center", color="0.4")
        ax.set_title(f"{policy}: traffic by class", fontsize=9)
        return
    by = tl.groupby(["traffic_class", "start_at"])["bytes"].sum().unstack(0).fillna(0.0)
    length = tl.groupby("start_at")["end_at"].first() - by.index.to_numpy()
    rate = by.div(np.maximum(length.to_numpy(), 1e-30), axis=0) / 1e9
    ax.stackplot(rate.index.to_numpy(), *(rate[c].to_numpy() for c in rate.columns),
                 labels=[str(c) for c in rate.columns], step="post", alpha=0.85)
    ax.set_ylabel("GB/s on links" + _folded(res))
    ax.set_title(f"{policy}: traffic by class", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)


def closed_form_scatter(results: dict, max_points: int = 20_000):
    """Closed-form vs simulated time per round (deterministic subsample), with y = x; the axes
    cover the bulk of the rounds and say how many lie outside."""
    fig, ax = plt.subplots(figsize=(5, 5))
    points, seen = [], {}
    for i, (policy, res) in enumerate(results.items()):
        rd = res.rounds
        if not len(rd):
            continue
        step = max(1, len(rd) // max_points)
        cf = rd["cf_time"].to_numpy()[::step] * 1e6
        sim = rd["sim_time"].to_numpy()[::step] * 1e6
        same = _same_as(seen, policy, np.concatenate([cf, sim]))
        marker = MARKERS[i % len(MARKERS)]
        if same:  # hollow, larger markers: the identical series underneath stays visible
            ax.scatter(cf, sim, s=18, marker=marker, facecolors="none", linewidths=0.6,
                       edgecolors=f"C{i}", alpha=0.6, label=policy + same)
        else:
            ax.scatter(cf, sim, s=6, alpha=0.4, marker=marker, color=f"C{i}", label=policy,
                       linewidths=0.5)
        points.append((cf, sim))
    lo, hi, _ = _bulk([np.concatenate(p) for p in points], log=True)
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, label="y = x")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi))
    _log_ticks(ax.xaxis)
    _log_ticks(ax.yaxis)
    outside = sum(int(((cf < lo) | (cf > hi) | (sim < lo) | (sim > hi)).sum())
                  for cf, sim in points)
    _outside_note(ax, outside, sum(len(cf) for cf, _ in points), "rounds")
    ax.set(xlabel="closed form [µs]", ylabel="simulated [µs]", title="Round time")
    ax.legend(fontsize=8, markerscale=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _no_latency(results: dict) -> str | None:
    if any(len(_ttft(r)) or len(r.iterations) for r in results.values()):
        return None
    return "no request completed in any run"


def _no_rounds(results: dict) -> str | None:
    if any(len(r.rounds) for r in results.values()):
        return None
    return "no rounds recorded (" + ", ".join(results) + " exchanged no per-round KV)"


def _no_traffic(results: dict) -> str | None:
    for r in results.values():
        tl = r.link_timeline
        if len(tl) and float(tl["utilization"].max()) > 0:
            return None
    return "no link carried traffic"


#: file → (figure maker, reason to skip it or None).
FIGURES = {
    "latency_cdf.png": (latency_cdfs, _no_latency),
    "phase_breakdown.png": (phase_breakdown, _no_rounds),
    "link_utilization.png": (link_utilization, _no_traffic),
    "closed_form_scatter.png": (closed_form_scatter, _no_rounds),
}


def write_all(results: dict, out_dir: str | Path) -> tuple[list[Path], dict[str, str]]:
    """Save every figure of :data:`FIGURES` that has something to show into ``out_dir`` (which
    must exist), each labelled with the engine that made the records; returns the files written
    and ``{file: why it was skipped}``."""
    out, skipped = [], {}
    engines = sorted({getattr(r, "summary", {}).get("engine", "exact") for r in results.values()})
    for name, (make, why_not) in FIGURES.items():
        reason = why_not(results)
        if reason is not None:
            skipped[name] = reason
            continue
        fig = make(results)
        fig.text(0.995, 0.005, f"{' + '.join(engines)} engine", ha="right", va="bottom",
                 fontsize=7, color="0.4")  # which engine made the records
        target = Path(out_dir) / name
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        out.append(target)
    return out, skipped


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
