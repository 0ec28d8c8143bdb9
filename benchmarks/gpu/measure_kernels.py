"""Measure the kernel coefficients kvfabric's GPU model is calibrated from (needs a CUDA GPU).

Run on a machine with PyTorch and one NVIDIA GPU:

    python benchmarks/gpu/measure_kernels.py --out calibration/

It writes one CSV per kernel family, each row a timed configuration (median of ``--reps`` CUDA-event-timed
replays of a CUDA graph holding 10 calls, after warm-ups):

- ``<gpu>_mla_decode.csv``: absorbed-MLA decode attention (DeepSeek-V3 shapes: 128 query heads, a
  576-wide latent+RoPE key, the 512-wide latent as value, bf16) as plain PyTorch batched matmuls +
  softmax: columns ``batch, tokens, seconds``. Bytes read ≈ batch × tokens × 1,152.
- ``<gpu>_gather.csv``: gathering ``blocks`` scattered 64-token blocks of one layer's latent KV from a
  paged pool into a contiguous buffer (the fetch path's gather): ``blocks, bytes, seconds``.
- ``<gpu>_merge.csv``: the log-sum-exp merge of ``parts`` partial attention outputs for ``batch``
  queries × 128 heads × 512: ``batch, parts, seconds``.
- ``<gpu>_copy.csv``: device-to-device copies: ``bytes, seconds`` (HBM read + write).

This measures a straightforward PyTorch implementation, not FlashMLA; its efficiencies are a lower
bound on what a tuned kernel reaches. The figures feed ``kvfabric calibrate``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import torch

HEADS, D_QK, D_V, BLOCK_TOKENS = 128, 576, 512, 64


def timed(fn, reps: int, inner: int = 10, warmup: int = 3) -> float:
    """Median seconds of one ``fn()``: ``inner`` calls captured in a CUDA graph, the graph replayed
    ``reps`` times between CUDA events. The graph removes the CPU launch gaps between kernels, so
    the figure is the GPU's own time (plus one graph launch amortized over ``inner`` calls)."""
    return statistics.median(graph_times(fn, reps, inner, warmup))


def graph_times(fn, reps: int, inner: int = 10, warmup: int = 3) -> list[float]:
    """Seconds of one ``fn()`` in each of ``reps`` replays of a CUDA graph of ``inner`` calls
    (:func:`timed` without the median)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(inner):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3 / inner)
    return times


def mla_decode(batch: int, tokens: int, reps: int) -> float:
    q = torch.randn(batch, HEADS, D_QK, device="cuda", dtype=torch.bfloat16)
    kv = torch.randn(batch, tokens, D_QK, device="cuda", dtype=torch.bfloat16)
    scale = D_QK**-0.5

    def step():
        s = torch.bmm(q, kv.transpose(1, 2)) * scale  # (B, H, N)
        p = torch.softmax(s.float(), dim=-1).to(torch.bfloat16)
        return torch.bmm(p, kv[..., :D_V])  # (B, H, 512)

    return timed(step, reps)


def gather(blocks: int, pool_blocks: int, reps: int) -> float:
    pool = torch.randn(pool_blocks, BLOCK_TOKENS, D_QK, device="cuda", dtype=torch.bfloat16)
    idx = torch.randperm(pool_blocks, device="cuda")[:blocks]
    out = torch.empty(blocks, BLOCK_TOKENS, D_QK, device="cuda", dtype=torch.bfloat16)
    return timed(lambda: torch.index_select(pool, 0, idx, out=out), reps)


def merge(batch: int, parts: int, reps: int) -> float:
    o = torch.randn(parts, batch, HEADS, D_V, device="cuda", dtype=torch.float32)
    lse = torch.randn(parts, batch, HEADS, device="cuda", dtype=torch.float32)

    def step():
        m = lse.max(dim=0).values
        w = torch.exp(lse - m)
        return (o * w.unsqueeze(-1)).sum(0) / w.sum(0).unsqueeze(-1)

    return timed(step, reps)


def copy(nbytes: int, reps: int) -> float:
    a = torch.empty(nbytes, device="cuda", dtype=torch.uint8)
    b = torch.empty_like(a)
    return timed(lambda: b.copy_(a), reps)


def write(path: Path, header: list[str], rows: list[tuple]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    print(f"wrote {path} ({len(rows)} rows)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name().split()[1].lower()  # "NVIDIA H100 80GB HBM3" → "h100"
    print("device:", torch.cuda.get_device_name(), "torch", torch.__version__)

    rows = []
    for batch in (1, 4, 16, 32, 64, 128):
        for tokens in (512, 2048, 8192, 32768, 131072):
            if batch * tokens * D_QK * 2 > 24e9:
                continue
            t = mla_decode(batch, tokens, args.reps)
            rows.append((batch, tokens, t))
            gbps = batch * tokens * D_QK * 2 / t / 1e9
            print(f"mla_decode batch={batch:4d} tokens={tokens:7d} {t * 1e6:10.1f} us {gbps:8.1f} GB/s")
    write(args.out / f"{name}_mla_decode.csv", ["batch", "tokens", "seconds"], rows)

    rows = []
    for blocks in (1, 8, 32, 128, 512, 2048):
        t = gather(blocks, 65536, args.reps)
        nbytes = blocks * BLOCK_TOKENS * D_QK * 2
        rows.append((blocks, nbytes, t))
        print(f"gather blocks={blocks:5d} {t * 1e6:9.1f} us {nbytes / t / 1e9:8.1f} GB/s")
    write(args.out / f"{name}_gather.csv", ["blocks", "bytes", "seconds"], rows)

    rows = []
    for batch in (1, 16, 128):
        for parts in (2, 4, 8, 16):
            t = merge(batch, parts, args.reps)
            rows.append((batch, parts, t))
            print(f"merge batch={batch:4d} parts={parts:3d} {t * 1e6:9.1f} us")
    write(args.out / f"{name}_merge.csv", ["batch", "parts", "seconds"], rows)

    rows = []
    for nbytes in (2**16, 2**20, 2**24, 2**28, 2**31):
        t = copy(nbytes, args.reps)
        rows.append((nbytes, t))
        print(f"copy {nbytes:12d} B {t * 1e6:10.1f} us {2 * nbytes / t / 1e12:6.2f} TB/s (r+w)")
    write(args.out / f"{name}_copy.csv", ["bytes", "seconds"], rows)


if __name__ == "__main__":
    main()
