"""How well do the kernel profiles' fitted models match every measured point? A printed table.

For every operator with measurements (``calibration/h200/`` on an H200, ``calibration/vidur_h100/``
on an H100), the fitted model (:mod:`simulator.gpu.operators`) against every measured row:

- **in-sample** — fitted on all rows, relative error ``|model − measured| / measured`` per row;
- **leave-one-shape-out** — for operators measured at three or more exact-match shapes (GEMM
  ``(n, k)``, attention heads, elementwise kind and width, all-reduce ranks, merge heads × partials,
  prefill heads × mask), the model refitted without a shape predicts it; operators measured at one
  or two shapes (copies, gathers of one block size, the indexer, send/recv) hold out every
  interleaved tenth of their distinct sizes instead (10-fold);
- **cross-GPU** — the GEMM model fitted on one GPU, evaluated with the other's datasheet figures
  (what ``extrapolated`` means), against the other's rows;
- **composition** — paged decode attention as the dense model plus the page gather, against
  ``paged_gather_attn`` rows; and a Llama-2-70B TP4 decode layer on the H100 (Vidur's non-attention
  operators: input norm, QKV, rotary, O, post norm, gate/up, activation, down, one residual add —
  Vidur's block charges one ``add``) composed by :mod:`simulator.gpu.layers` from the ``h100-vidur``
  profile (tables where they exist), from its fitted models alone, and from models refitted without
  any of Llama-2-70B's shapes, against the sum of Vidur's measured operators.

Targets (issue 14): median ≤ 10% and p90 ≤ 20% in-sample, leave-one-shape-out median ≤ 15%; the
composed layer within 10% at 1, 32, 128 and 512 tokens.

    python benchmarks/validate_kernels.py           # ~1 minute on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.gpu import operators as ops  # noqa: E402
from simulator.gpu.fitting import error_summary  # noqa: E402
from simulator.gpu.profiled import ProfiledKernels  # noqa: E402
from simulator.gpu.profiles import FITS, fit_operator, load_profile, select_rows  # noqa: E402
from simulator.gpu.table_loaders import load_rows  # noqa: E402
from simulator.gpu.tables import Rows  # noqa: E402
from simulator.hardware import gpu  # noqa: E402
from simulator.models import model  # noqa: E402
from simulator.units import ms  # noqa: E402

CAL = ROOT / "calibration"
MEASURED = (("H200", CAL / "h200", "h200"), ("H100", CAL / "vidur_h100", "vidur_h100"))
TOKENS = (1, 32, 128, 512)
VIDUR_OPS = {"input_layernorm": "input_norm", "attn_pre_proj": "qkv_proj",
             "attn_rope": "rotary", "attn_post_proj": "o_proj",
             "post_attention_layernorm": "post_attention_norm", "mlp_up_proj": "gate_up_proj",
             "mlp_act": "activation", "mlp_down_proj": "down_proj", "add": "residual_add"}


def row_sets(op: str, rows: dict[str, Rows]) -> list[tuple[str, Rows, object]]:
    """(label, rows, model) for every row set the operator is judged on."""
    out = []
    if op == "indexer":
        r = rows.get("indexer")
        if r is not None:
            out.append(("indexer", r, lambda p, s, r: ops.indexer(
                p, s, r.data["batch"], r.data["context"], r.data["heads"], r.data["dim"])))
        return out
    for part in FITS[op].values():
        for sel in part.rows:
            r = select_rows(rows, sel)
            if r is not None:
                out.append((sel, r, part.model))
    return out


def held_out_groups(op: str, sets) -> tuple[str, list[np.ndarray]]:
    """What is held out — per row set, its exact-match shapes if it has three or more, else an
    interleaved tenth of its distinct sizes — and each set's group id per row."""
    units, groups = set(), []
    for label, r, _ in sets:
        keyed = r.shapes()
        if len(np.unique(keyed)) >= 3:
            units.add("shape")
            groups.append(np.array([f"{label}|{k}" for k in keyed]))
            continue
        coords = np.array(["|".join(str(float(r.data[c][i])) for c in r.coords)
                           for i in range(len(r))])
        fold = {c: i % 10 for i, c in enumerate(np.unique(coords))}
        units.add("10-fold")
        groups.append(np.array([f"{label}|fold{fold[c]}" for c in coords]))
    return "/".join(sorted(units)), groups


def rows_without(rows: dict[str, Rows], op: str, sets, groups, held: str) -> dict[str, Rows]:
    """``rows`` with the held-out group removed from every set ``op`` reads."""
    out = dict(rows)
    drop: dict[str, np.ndarray] = {}
    for (label, _r, _), g in zip(sets, groups, strict=True):
        name = label.split(":")[0]
        base = rows[name]
        mask = np.ones(len(base), bool)
        if label == name:
            mask &= g != held
        else:
            col = {"attention": "layout", "elementwise": "kind", "sendrecv": "fabric"}[name]
            sel = np.flatnonzero(base.data[col] == label.split(":")[1])
            mask[sel[g == held]] = False
        drop[name] = drop.get(name, np.ones(len(base), bool)) & mask
    if op == "indexer":  # the scores and top-k rows at the held-out points go too
        both = rows["indexer"]
        gone = {(float(b), float(c)) for b, c, g in zip(both.data["batch"], both.data["context"],
                                                         groups[0], strict=True) if g == held}
        for name in ("indexer_scores", "indexer_topk"):
            r = rows[name]
            drop[name] = np.array([(float(b), float(c)) not in gone for b, c in
                                   zip(r.data["batch"], r.data["context"], strict=True)])
    for name, mask in drop.items():
        out[name] = rows[name].subset(mask)
    return out


def validate(op: str, rows: dict[str, Rows], spec) -> dict | None:
    sets = row_sets(op, rows)
    if not sets:
        return None
    fit = fit_operator(op, rows, spec)
    measured = np.concatenate([r.time for _, r, _ in sets])
    modelled = np.concatenate([m(fit["params"], spec, r) for _, r, m in sets])
    unit, groups = held_out_groups(op, sets)
    pred = np.full(measured.size, np.nan)
    offsets = np.cumsum([0] + [len(r) for _, r, _ in sets])
    for held in np.unique(np.concatenate(groups)):
        refit = fit_operator(op, rows_without(rows, op, sets, groups, held), spec)
        for i, ((_, r, m), g) in enumerate(zip(sets, groups, strict=True)):
            sel = np.flatnonzero(g == held)
            if sel.size:
                pred[offsets[i] + sel] = m(refit["params"], spec, r.subset(g == held))
    ins, out = error_summary(modelled, measured), error_summary(pred, measured)
    return {"rows": ins["rows"], "median": ins["median_error"], "p90": ins["p90_error"],
            "loso_unit": unit, "loso_median": out["median_error"], "loso_p90": out["p90_error"]}


def vidur_layer(tokens: int, tp: int = 4) -> float:
    """Sum of Vidur's measured non-attention operators of one Llama-2-70B layer [s]."""
    d = pd.read_csv(CAL / "vidur_h100" / "compute" / "Llama-2-70b-hf.mlp.csv")
    d = d[(d.num_tokens == tokens) & (d.num_tensor_parallel_workers == tp)]
    return float(sum(d[f"time_stats.{op}.median"].median() for op in VIDUR_OPS)) * ms(1.0)


def composed_layer(kernels: ProfiledKernels, tokens: int, tp: int = 4) -> float:
    """The same operators composed from a profile (one residual add, as Vidur's block) [s]."""
    ops_ = kernels.decode_ops(gpu("H100"), model("llama-2-70b"), tokens, tp)
    by = {o.name: o.time for o in ops_}
    return sum(by[name] for name in VIDUR_OPS.values())


def without_llama70b_shapes(rows: dict[str, Rows]) -> dict[str, Rows]:
    """Vidur's rows less every GEMM and elementwise shape Llama-2-70B has (any model's)."""
    g, e = rows["gemm"], rows["elementwise"]
    mine = np.array(["Llama-2-70b" in s for s in g.source])
    shapes = {(float(n), float(k)) for n, k in zip(g.data["n"][mine], g.data["k"][mine],
                                                     strict=True)}
    keep = np.array([(float(n), float(k)) not in shapes for n, k in
                     zip(g.data["n"], g.data["k"], strict=True)])
    mine_e = np.array(["Llama-2-70b" in s for s in e.source])
    widths = {(k, float(w)) for k, w in zip(e.data["kind"][mine_e], e.data["width"][mine_e],
                                            strict=True)}
    keep_e = np.array([(k, float(w)) not in widths for k, w in
                       zip(e.data["kind"], e.data["width"], strict=True)])
    return {**rows, "gemm": g.subset(keep), "elementwise": e.subset(keep_e)}


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    t0 = time.perf_counter()
    lines = ["| operator | GPU | rows | median | p90 | held out | LOSO median | LOSO p90 | "
             "targets |", "|---|---|---|---|---|---|---|---|---|"]
    for gpu_name, folder, label in MEASURED:
        rows = load_rows(str(folder), label)
        spec = gpu(gpu_name)
        for op in FITS:
            v = validate(op, rows, spec)
            if v is None:
                continue
            ok = v["median"] <= 0.10 and v["p90"] <= 0.20 and v["loso_median"] <= 0.15
            lines.append(f"| {op} | {gpu_name} | {v['rows']} | {v['median']:.1%} | "
                         f"{v['p90']:.1%} | {v['loso_unit']} | {v['loso_median']:.1%} | "
                         f"{v['loso_p90']:.1%} | {'met' if ok else 'NOT met'} |")
    print("\n".join(lines))

    print("\n| check | rows | median | p90 |\n|---|---|---|---|")
    h200, h100 = load_rows(str(CAL / "h200"), "h200"), load_rows(str(CAL / "vidur_h100"),
                                                                  "vidur_h100")
    for src_name, src_rows, dst_name, dst_rows in (("H200", h200, "H100", h100),
                                                   ("H100", h100, "H200", h200)):
        fit = fit_operator("gemm", src_rows, gpu(src_name))
        r = dst_rows["gemm"]
        s = error_summary(ops.FITS["gemm"]["gemm"].model(fit["params"], gpu(dst_name), r), r.time)
        print(f"| gemm fitted on {src_name}, extrapolated to {dst_name}'s rows | {s['rows']} | "
              f"{s['median_error']:.1%} | {s['p90_error']:.1%} |")
    p200 = load_profile("h200").fitted_only()
    paged = h200["attention"].subset(h200["attention"].data["layout"] == "paged")
    t = p200.attention(paged.data["batch"], paged.data["context"], paged.data["q_heads"],
                       paged.data["kv_heads"], paged.data["head_dim"], paged=True,
                       page_tokens=16).time
    s = error_summary(t, paged.time)
    print(f"| paged attention = dense model + page gather model (H200) | {s['rows']} | "
          f"{s['median_error']:.1%} | {s['p90_error']:.1%} |")

    vidur = load_profile("h100-vidur")
    refit = without_llama70b_shapes(h100)
    fits = dict(vidur.fits)
    for op in ("gemm", "elementwise"):
        fits[op] = replace(fits[op], params=fit_operator(op, refit, gpu("H100"))["params"],
                           folders=())
    unseen = vidur.fitted_only()
    unseen.fits = fits
    kinds = {"profile (tables, then fits)": ProfiledKernels({"H100": vidur}),
             "fitted models only": ProfiledKernels({"H100": vidur.fitted_only()}),
             "refitted without Llama-2-70B's shapes": ProfiledKernels({"H100": unseen})}
    print("\nLlama-2-70B TP4 decode layer on H100, non-attention operators as Vidur profiles "
          "them (µs; error against Vidur's measured sum):\n")
    print("| tokens | Vidur measured sum | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    for n in TOKENS:
        want = vidur_layer(n)
        cells = []
        for k in kinds.values():
            got = composed_layer(k, n)
            cells.append(f"{got * 1e6:.1f} ({(got - want) / want:+.1%})")
        print(f"| {n} | {want * 1e6:.1f} | " + " | ".join(cells) + " |")
    print(f"\n(wall time {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
