"""Measurement folders read row by row, and the table lookup at its edges.

The loaders are called through ``load_rows.__wrapped__`` (uncached): each test reads its own
small folder, written here with known shapes, times and line numbers, and checks every field of
the rows it gives, in both layouts (calibration/h200/ and calibration/vidur_h100/).
"""

import math

import numpy as np
import pytest

from simulator.errors import UserError
from simulator.gpu.table_loaders import layout_of, load_rows, profile_label
from simulator.gpu.tables import Rows, Table


def _load(folder, label="t"):
    return load_rows.__wrapped__(str(folder), label)


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _check(rows: Rows, keys, coords, data: dict, time, source) -> None:
    assert (rows.keys, rows.coords) == (keys, coords)
    assert set(rows.data) == set(data)
    for k, v in data.items():
        assert list(rows.data[k]) == list(v), k
    np.testing.assert_allclose(rows.time, time, rtol=1e-15)
    assert list(rows.source) == list(source)


# -- calibration/h200/'s layout ----------------------------------------------------------------

GEMM = """model,op,dtype,m,n,k,time_s
x,qkv,bf16,1,10,20,1e-5
x,qkv,fp16,8,10,20,2e-5
x,ffn,fp8,4,30,40,3e-5
"""
ATTN = """variant,q_heads,kv_heads,head_dim,batch,context,block_size,time_s
dense,8,1,128,1,128,,1e-5
paged_gather_attn,8,1,128,2,256,64,2e-5
paged_gather_only,8,1,128,4,512,64,3e-5
other,8,1,128,4,512,64,4e-5
"""
PREFILL = """variant,q_heads,kv_heads,head_dim,q_len,kv_len,time_s
causal_full,8,1,128,512,512,1e-5
chunk,8,1,128,64,1024,2e-5
skipped,8,1,128,64,1024,3e-5
"""
MEMORY = """test,bytes,n_blocks,block_bytes,n_partials,batch,heads,dim,time_s
d2d_copy,4096,,,,,,,1e-6
kv_block_gather,147456,2,73728,,,,,2e-6
kv_block_contig_copy,147456,2,73728,,,,,9e-6
lse_merge,32896,,,2,1,16,512,3e-6
"""
INDEXER = """batch,context,part,time_s
1,4096,scores,1e-5
1,4096,topk,2e-5
2,8192,both,3e-5
"""
LAUNCH = """op,method,time_s
empty_kernel,graph,4e-6
"""


@pytest.fixture()
def h200(tmp_path):
    for name, text in (("gemm.csv", GEMM), ("attn_decode.csv", ATTN),
                       ("prefill_attn.csv", PREFILL), ("memory.csv", MEMORY),
                       ("dsa_indexer.csv", INDEXER), ("launch.csv", LAUNCH)):
        _write(tmp_path / name, text)
    return _load(tmp_path, "lab")


def test_every_h200_file_becomes_its_operators_rows_with_file_and_line(h200):
    assert set(h200) == {"gemm", "attention", "page_gather", "prefill_attention", "copy",
                         "gather", "merge", "indexer", "indexer_scores", "indexer_topk",
                         "launch"}
    _check(h200["gemm"], ("n", "k", "dtype"), ("m",),
           {"m": [1, 8, 4], "n": [10, 10, 30], "k": [20, 20, 40],
            "dtype": ["bf16", "bf16", "fp8"]},  # fp16 times as bf16
           [1e-5, 2e-5, 3e-5], [f"lab/gemm.csv line {i}" for i in (2, 3, 4)])
    attn_keys = ("q_heads", "kv_heads", "head_dim", "layout", "page_tokens")
    _check(h200["attention"], attn_keys, ("batch", "context"),
           {"q_heads": [8, 8], "kv_heads": [1, 1], "head_dim": [128, 128],
            "layout": ["contiguous", "paged"], "page_tokens": [0.0, 64.0],
            "batch": [1, 2], "context": [128, 256]},
           [1e-5, 2e-5], ["lab/attn_decode.csv line 2", "lab/attn_decode.csv line 3"])
    _check(h200["page_gather"], attn_keys, ("batch", "context"),
           {"q_heads": [8], "kv_heads": [1], "head_dim": [128], "layout": ["paged"],
            "page_tokens": [64.0], "batch": [4], "context": [512]},
           [3e-5], ["lab/attn_decode.csv line 4"])
    _check(h200["prefill_attention"], ("q_heads", "kv_heads", "head_dim", "masked"),
           ("q_len", "kv_len"),
           {"q_heads": [8, 8], "kv_heads": [1, 1], "head_dim": [128, 128], "masked": [1, 0],
            "q_len": [512, 64], "kv_len": [512, 1024]},
           [1e-5, 2e-5], ["lab/prefill_attn.csv line 2", "lab/prefill_attn.csv line 3"])


def test_memory_indexer_and_launch_rows(h200):
    _check(h200["copy"], (), ("bytes",), {"bytes": [4096]}, [1e-6], ["lab/memory.csv line 2"])
    _check(h200["gather"], ("block_bytes",), ("blocks",),
           {"block_bytes": [73728], "blocks": [2]}, [2e-6], ["lab/memory.csv line 3"])
    _check(h200["merge"], ("heads", "dim", "partials"), ("batch",),
           {"heads": [16], "dim": [512], "partials": [2], "batch": [1]}, [3e-6],
           ["lab/memory.csv line 5"])
    # the measured indexer is DeepSeek-V3.2's: 64 heads × 128
    for op, line, time, (batch, context) in (("indexer_scores", 2, 1e-5, (1, 4096)),
                                             ("indexer_topk", 3, 2e-5, (1, 4096)),
                                             ("indexer", 4, 3e-5, (2, 8192))):
        _check(h200[op], ("heads", "dim"), ("batch", "context"),
               {"heads": [64], "dim": [128], "batch": [batch], "context": [context]}, [time],
               [f"lab/dsa_indexer.csv line {line}"])
    _check(h200["launch"], ("op", "method"), (), {"op": ["empty_kernel"], "method": ["graph"]},
           [4e-6], ["lab/launch.csv line 2"])


def test_a_file_without_an_operators_rows_leaves_the_operator_out(tmp_path):
    _write(tmp_path / "attn_decode.csv", ATTN.replace("paged_gather_only", "other"))
    _write(tmp_path / "memory.csv", MEMORY.splitlines()[0] + "\n"
           + "kv_block_contig_copy,147456,2,73728,,,,,9e-6\n")
    rows = _load(tmp_path)
    assert set(rows) == {"attention"}  # no page gathers, copies, gathers or merges measured
    assert len(rows["attention"]) == 2


def test_a_launch_table_has_no_coordinates_and_answers_at_its_key(h200):
    # (only lookup_one takes no coordinates; profiles read launch rows directly)
    table = Table(h200["launch"])
    assert table.lookup_one(("empty_kernel", "graph"), ()) == (pytest.approx(4e-6, rel=1e-13),
                                                               "measured: lab/launch.csv line 2")


# -- calibration/vidur_h100/'s layout ----------------------------------------------------------

VIDUR_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj",
             "input_layernorm", "post_attention_layernorm", "attn_rope", "mlp_act", "add")


def _mlp_csv(drop: str | None = None) -> str:
    cols = [f"time_stats.{op}.median" for op in VIDUR_OPS if op != drop]
    head = "n_head,n_kv_head,n_embd,n_expanded_embd,num_tokens,num_tensor_parallel_workers,"
    # 32 heads of 128 over 8 KV heads, d = 4096, I = 14336, TP 2; times 0.01, 0.02 … ms
    row = "32,8,4096,14336,16,2," + ",".join(f"{0.01 * (i + 1):.2f}" for i in range(len(cols)))
    return head + ",".join(cols) + "\n" + row + "\n"


NET_AR = """,time_stats.all_reduce.median,num_workers,size
0,0.037,8,2048
"""
NET_SR = """,time_stats.send_recv.median,devices_per_node,size
0,0.017,1,2048
1,0.011,2,2048
2,0.012,8,4096
"""


@pytest.fixture()
def vidur(tmp_path):
    _write(tmp_path / "compute" / "m.mlp.csv", _mlp_csv())
    _write(tmp_path / "network" / "h100_dgx" / "all_reduce.csv", NET_AR)
    _write(tmp_path / "network" / "h100_dgx" / "send_recv.csv", NET_SR)
    return _load(tmp_path, "v")


def test_vidur_gemms_have_the_shapes_its_columns_spell_and_times_in_seconds(vidur):
    g = vidur["gemm"]
    d, inter, t, hd = 4096.0, 14336.0, 2.0, 128.0
    want = {"attn_pre_proj": ((32 + 2 * 8) * hd / t, d), "attn_post_proj": (d, 32 * hd / t),
            "mlp_up_proj": (2 * inter / t, d), "mlp_down_proj": (d, inter / t)}
    assert list(g.data["op"]) == list(want)
    assert [(n, k) for n, k in zip(g.data["n"], g.data["k"], strict=True)] == list(want.values())
    assert list(g.data["m"]) == [16] * 4 and list(g.data["dtype"]) == ["bf16"] * 4
    np.testing.assert_allclose(g.time, [1e-5, 2e-5, 3e-5, 4e-5], rtol=1e-12)  # ms → s
    assert list(g.source) == ["v/compute/m.mlp.csv line 2"] * 4
    e = vidur["elementwise"]
    assert list(e.data["kind"]) == ["rmsnorm", "rmsnorm", "rotary", "activation", "add"]
    assert list(e.data["width"]) == [d, d, (32 + 8) * hd / t, inter / t, d]
    assert list(e.data["tokens"]) == [16] * 5
    np.testing.assert_allclose(e.time, [5e-5, 6e-5, 7e-5, 8e-5, 9e-5], rtol=1e-12)


def test_vidur_collectives_in_seconds_and_send_recv_fabric_by_gpus_per_node(vidur):
    _check(vidur["allreduce"], ("ranks", "fabric"), ("bytes",),
           {"ranks": [8], "fabric": ["nvlink"], "bytes": [2048]}, [0.037e-3],
           ["v/network/h100_dgx/all_reduce.csv line 2"])
    # one GPU per node talks over RDMA, two or more over NVLink
    _check(vidur["sendrecv"], ("fabric",), ("bytes",),
           {"fabric": ["rdma", "nvlink", "nvlink"], "bytes": [2048, 2048, 4096]},
           [0.017e-3, 0.011e-3, 0.012e-3],
           [f"v/network/h100_dgx/send_recv.csv line {i}" for i in (2, 3, 4)])


@pytest.mark.parametrize("drop", ["attn_post_proj", "attn_rope"])
def test_a_vidur_file_missing_a_median_names_it(tmp_path, drop):
    _write(tmp_path / "compute" / "m.mlp.csv", _mlp_csv(drop))
    with pytest.raises(UserError, match=rf"m.mlp.csv: missing column\(s\) time_stats.{drop}"):
        _load(tmp_path)


def test_vidur_layouts_with_only_one_half(tmp_path):
    _write(tmp_path / "net" / "network" / "h100_dgx" / "send_recv.csv", NET_SR)
    assert layout_of(tmp_path / "net") == "vidur"
    assert set(_load(tmp_path / "net")) == {"sendrecv"}
    _write(tmp_path / "cmp" / "compute" / "m.mlp.csv", _mlp_csv())
    assert layout_of(tmp_path / "cmp") == "vidur"
    assert set(_load(tmp_path / "cmp")) == {"gemm", "elementwise"}
    (tmp_path / "empty" / "compute").mkdir(parents=True)
    with pytest.raises(UserError, match="no compute/"):
        _load(tmp_path / "empty")


def test_layout_and_label_of_a_folder(tmp_path):
    _write(tmp_path / "my h200" / "memory.csv", MEMORY)
    assert layout_of(tmp_path / "my h200") == "h200"
    assert profile_label(tmp_path / "my h200") == "my_h200"


# -- the lookup at its edges ------------------------------------------------------------------


def _rows(keys, xs, ys, times) -> Rows:
    n = len(times)
    return Rows(("k",), ("x", "y"), {"k": np.array(keys), "x": np.array(xs, float),
                                     "y": np.array(ys, float)},
                np.array(times, float), np.array([f"f line {i + 2}" for i in range(n)]))


def test_a_cell_left_unmeasured_spoils_only_the_answers_that_read_it():
    # (x, y) measured at (1, 1), (1, 4), (4, 1) but not at (4, 4): at x = 1 (a measured row)
    # and y = 2 the answer is read from the x = 1 edge alone
    table = Table(_rows([1, 1, 1], [1, 1, 4], [1, 4, 1], [1.0, 4.0, 2.0]))
    want = math.exp(0.5 * math.log(1.0) + 0.5 * math.log(4.0))
    got = table.lookup_one((1,), (1.0, 2.0))
    assert got is not None and got[0] == pytest.approx(want, rel=1e-12)
    assert got[1] == "interpolated: f"
    t, src = table.lookup((1,), [1.0], [2.0])
    assert t[0] == pytest.approx(want, rel=1e-12) and src[0] == "interpolated: f"
    # where the missing corner has weight, there is no answer
    assert table.lookup_one((1,), (2.0, 2.0)) is None
    assert np.isnan(table.lookup((1,), [2.0], [2.0])[0][0])


def test_a_one_row_shape_answers_at_its_row_only():
    table = Table(_rows([7], [2], [3], [5.0]))
    assert table.lookup_one((7,), (2.0, 3.0)) == (pytest.approx(5.0, rel=1e-13),
                                                  "measured: f line 2")
    assert table.lookup_one((7,), (2.0, 3.5)) is None


def test_a_coordinate_within_1e9_in_log_of_a_row_is_that_row():
    # rows at x = 2 and 8 (not 1: log 1 = 0 would hide a sign error in the distance)
    table = Table(_rows([1, 1, 1], [2, 8, 32], [1, 1, 1], [1.0, 4.0, 9.0]))
    for x in (2.0 * math.exp(5e-10), 8.0 * math.exp(-5e-10), 8.0 * math.exp(5e-10),
              32.0 * math.exp(5e-10)):
        t, src = table.lookup((1,), [x], [1.0])
        one = table.lookup_one((1,), (x, 1.0))
        assert src[0].startswith("measured: f line") and one[1] == src[0]
    # 1.5e-9 away is between rows (inside) or outside (beyond the last)
    inside = 2.0 * math.exp(1.5e-9)
    assert table.lookup((1,), [inside], [1.0])[1][0] == "interpolated: f"
    assert table.lookup_one((1,), (inside, 1.0))[1] == "interpolated: f"
    beyond = 32.0 * math.exp(1.5e-9)
    assert table.lookup_one((1,), (beyond, 1.0)) is None
    assert np.isnan(table.lookup((1,), [beyond], [1.0])[0][0])


def test_keys_match_to_six_decimals_and_coordinates_must_be_one_per_axis():
    # a key computed in floating point (Vidur's shapes are products and quotients) still matches
    table = Table(_rows([2560.0000001], [1, 4], [1, 1], [1.0, 4.0]))
    assert table.lookup_one((2560,), (1.0, 1.0))[0] == pytest.approx(1.0)
    assert table.lookup((2560,), [1.0], [1.0])[0][0] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        table.lookup_one((2560,), (1.0,))
    with pytest.raises(ValueError):
        table.lookup((2560,), [1.0])
