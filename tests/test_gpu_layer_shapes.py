"""A layer's kernels, shape by shape: decode_ops asked of a profile that records every call.

The recording profile answers each GEMM and elementwise kernel with a time of 1 s and remembers
the shape asked, so each test compares the whole list of (kernel, shape) against the family's
layer written out from the module docstring and the models' HF dimensions.
"""

import dataclasses
import math

import pytest

from simulator.gpu.layers import (
    decode_ops,
    family,
    head_dim,
    layer_counts,
    moe_shares,
    weight_dtype,
)
from simulator.models import Architecture, model


class Recorder:
    """A stand-in profile: every kernel takes 1 s; ``calls`` lists the shapes asked."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def gemm_seconds(self, m, n, k, dtype, groups):
        self.calls.append(("gemm", float(m), float(n), float(k), dtype, float(groups)))
        return 1.0, "rec"

    def elementwise_seconds(self, kind, m, w):
        self.calls.append((kind, float(m), float(w)))
        return 1.0, "rec"


def _ops(arch, tokens, gpus=1, logits=None):
    rec = Recorder()
    ops = decode_ops(rec, arch, tokens, gpus, logits)
    return [(o.name, o.per, o.count) for o in ops], rec.calls


def test_mla_without_a_query_latent_projects_the_query_from_the_hidden_state():
    # DeepSeek-V3.2's dimensions with q_lora_rank = 0 (as DeepSeek-V2-Lite): one q_proj
    # (m, H·(nope + rope), d) instead of q_a, its norm and q_b
    v32 = model("deepseek-v3.2")
    arch = dataclasses.replace(v32, q_lora_rank=0)
    names, calls = _ops(arch, 8, gpus=2)
    h, d = float(v32.query_heads), float(v32.hidden_size)
    nope, rope = float(v32.qk_nope_head_dim), float(v32.qk_rope_head_dim)
    assert [n for n, _, _ in names][:3] == ["input_norm", "q_proj", "kv_a_proj"]
    assert calls[1] == ("gemm", 4.0, h * (nope + rope), d, "fp8", 1.0)
    # the indexer's query then comes from the hidden state too
    iq = names.index(("indexer_q_proj", "layer", 1.0))
    assert calls[iq] == ("gemm", 4.0, float(v32.indexer_heads * v32.indexer_head_dim), d,
                         "fp8", 1.0)


def test_a_dense_mla_layer_has_no_router_and_its_ffn_counts_per_layer():
    # an MLA model without experts (dimensions made up): its FFN is per layer, not per
    # dense layer, and no MoE kernel runs
    v32 = model("deepseek-v3.2")
    arch = dataclasses.replace(v32, experts=0, experts_per_token=0, dense_layers=0,
                               shared_experts=0, intermediate_size=1000, topk_tokens=None,
                               indexer_heads=0)
    names, calls = _ops(arch, 3)
    got = [n for n, _, _ in names]
    assert "router" not in got and "indexer_q_proj" not in got
    i = got.index("dense_gate_up_proj")
    assert names[i] == ("dense_gate_up_proj", "layer", 1.0)
    assert calls[i] == ("gemm", 3.0, 2000.0, float(v32.hidden_size), "fp8", 1.0)
    assert calls[i + 1] == ("activation", 3.0, 1000.0)
    assert family(arch) == "mla"


def test_a_generic_layer_is_one_gemm_over_its_active_weights():
    # no layer dimensions: 1 GB of bf16 weights over 4 layers and 2 GPUs = 62.5 M elements per
    # GPU and layer; without a hidden size the GEMM is square (√elems × √elems)
    arch = Architecture.custom("toy", 4, 500.0, 100.0, weight_bytes=1e9)
    assert family(arch) == "generic" and weight_dtype(arch) == "bf16"
    names, calls = _ops(arch, 5, gpus=2)
    elems = 1e9 / 4 / 2 / 2
    assert names == [("layer_weights", "layer", 1.0)]
    assert calls == [("gemm", 5.0, pytest.approx(math.sqrt(elems)),
                      pytest.approx(math.sqrt(elems)), "bf16", 1.0)]
    # with a hidden size it is (tokens, elems / d, d); fp8 weights halve the bytes per element
    fp8 = dataclasses.replace(arch, hidden_size=1000, weight_bytes_per_param=1.0)
    assert family(fp8) == "generic" and weight_dtype(fp8) == "fp8"
    # (custom() counts weight_bytes / 2 parameters as active: at 1 B per parameter that is half
    # of the 1e9 parameters, 0.5 GB of active weights)
    assert fp8.active_weight_bytes == 5e8
    assert _ops(fp8, 5, gpus=2)[1] == [("gemm", 5.0, 5e8 / 4 / 2 / 1 / 1000, 1000.0, "fp8",
                                        1.0)]
    # no weights, no kernel; no tokens, no kernel
    assert _ops(Architecture.custom("toy", 4, 500.0, 100.0), 5)[0] == []
    assert _ops(arch, 0)[0] == []


def test_which_family_a_model_has():
    v32 = model("deepseek-v3.2")
    assert family(v32) == "mla"
    assert family(dataclasses.replace(v32, kv_lora_rank=0)) == "generic"
    assert family(dataclasses.replace(v32, hidden_size=0)) == "generic"
    # an MLA model with neither an FFN width nor experts has no layer to compose
    assert family(dataclasses.replace(v32, intermediate_size=0, experts=0)) == "generic"
    assert family(dataclasses.replace(v32, intermediate_size=0)) == "mla"  # experts only
    llama = model("llama-3-70b")
    assert family(llama) == "gqa"
    # a GQA model with MLA's latent but GQA attention is still GQA
    assert family(dataclasses.replace(llama, kv_lora_rank=512)) == "gqa"
    assert family(dataclasses.replace(llama, attention="mla")) == "generic"


def test_head_width_falls_back_to_the_query_row():
    llama = model("llama-3-70b")
    assert head_dim(llama) == float(llama.head_dim)
    # no catalog width: the query row per head over bytes per element (256 B of bf16 → 128)
    bare = dataclasses.replace(llama, head_dim=0, query_bytes_per_head=256.0)
    assert head_dim(bare) == 128.0


def test_gqa_with_fewer_kv_heads_than_gpus_keeps_one_per_gpu():
    # Llama-3-70B (64 query heads, 8 KV heads of 128) at TP 16: 4 query heads and one KV head
    # per GPU (a KV head is replicated, not split)
    llama = model("llama-3-70b")
    names, calls = _ops(llama, 2, gpus=16)
    i = [n for n, _, _ in names].index("qkv_proj")
    assert calls[i] == ("gemm", 2.0, (4 + 2 * 1) * 128.0, float(llama.hidden_size), "bf16",
                        1.0)


def test_moe_shares_and_layer_counts():
    v32 = model("deepseek-v3.2")
    rows, active = moe_shares(v32, 16, 8)
    e, k = float(v32.experts), float(v32.experts_per_token)
    assert rows == 16 * k / 8
    assert active == pytest.approx(e / 8 * (1 - (1 - 1 / e) ** (16 * k)), rel=1e-12)
    assert layer_counts(v32) == {"layer": 61.0, "dense_layer": 3.0, "moe_layer": 58.0,
                                 "step": 1.0}
    llama = model("llama-3-70b")
    assert layer_counts(llama) == {"layer": 80.0, "dense_layer": 0.0, "moe_layer": 0.0,
                                   "step": 1.0}


def test_no_token_no_kernel_and_a_fraction_of_a_token_still_runs_them():
    v32, llama = model("deepseek-v3.2"), model("llama-3-70b")
    assert _ops(v32, 0)[0] == [] and _ops(llama, 0)[0] == []
    # one token over two GPUs: half a token's rows on this one, every kernel still issued
    names, calls = _ops(v32, 1, gpus=2)
    assert len(names) == len(_ops(v32, 2, gpus=2)[0])
    assert calls[0] == ("rmsnorm", 0.5, float(v32.hidden_size))
    assert calls[1] == ("gemm", 0.5, float(v32.q_lora_rank), float(v32.hidden_size), "fp8", 1.0)
    # a generic layer of a single weight element per GPU and layer is one 1 × 1 GEMM
    one = Architecture.custom("toy", 4, 500.0, 100.0, weight_bytes=8.0)
    assert _ops(one, 5)[1] == [("gemm", 5.0, 1.0, 1.0, "bf16", 1.0)]


def test_a_sparse_model_without_indexer_heads_runs_no_indexer_kernel():
    v32 = model("deepseek-v3.2")
    names = [n for n, _, _ in _ops(dataclasses.replace(v32, indexer_heads=0), 4)[0]]
    assert not [n for n in names if n.startswith("indexer")]
    # and a dense one that has indexer heads does not either
    names = [n for n, _, _ in _ops(dataclasses.replace(v32, topk_tokens=None), 4)[0]]
    assert not [n for n in names if n.startswith("indexer")]
