"""Architectures: the catalog reproduces REFERENCE.md, lookups fail clearly, two coefficients suffice."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.errors import UserError
from simulator.models import MODELS, Architecture, UnknownModelError, _dense, _mla, model
from tests.strategies import architectures

# -- known answers (REFERENCE.md "Attention architectures") ----------------------------------


@pytest.mark.parametrize(
    "name, layers, kv, query, ret",
    [
        # model, layers, KV B/token/layer bf16, query B/token/layer, return B (+ 4 B LSE per head)
        ("deepseek-v3.2", 61, 1152, 147_456, 131_072 + 4 * 128),
        ("deepseek-v3", 61, 1152, 147_456, 131_072 + 4 * 128),
        ("glm-5", 78, 1152, 73_728, 65_536 + 4 * 64),
        ("kimi-k2", 61, 1152, 73_728, 65_536 + 4 * 64),
        ("llama-3-70b", 80, 4096, 16_384, 16_384 + 4 * 64),
        ("llama-65b", 80, 32_768, 16_384, 16_384 + 4 * 64),
        ("llama-33b", 60, 26_624, 13_312, 13_312 + 4 * 52),
    ],
)
def test_catalog_matches_reference_table(name, layers, kv, query, ret):
    arch = model(name)
    assert arch.layers == layers
    assert arch.kv_bytes_per_token == kv
    assert arch.query_bytes() == query
    assert arch.return_bytes() == ret
    assert arch.routed_payload_bytes() == query + ret
    assert arch.moved_bytes_per_token == kv


def test_mla_per_head_rows_and_fp8_layout():
    ds = model("deepseek-v3.2")
    assert ds.query_bytes_per_head == 1152  # (512 + 64) × 2 B
    assert ds.return_bytes_per_head == 1028  # 512 × 2 B + 4 B LSE
    assert ds.query_bytes(heads=16) == 16 * 1152  # a user may route a subset of heads
    assert ds.with_kv_dtype("fp8").kv_bytes_per_token == 656  # FlashMLA fp8 layout
    assert ds.sparse and ds.topk_tokens == 2048 and ds.indexer_heads == 64
    assert model("glm-5").indexer_heads == 32
    assert not model("deepseek-v3").sparse and not model("kimi-k2").sparse
    assert ds.kv_heads == 1 and ds.group_size == 128


def test_lamina_traffic_formula():
    # (2 + 2/G)·e·d out and e·d back per token per layer (REFERENCE.md, Lamina).
    l70 = model("llama-3-70b")
    assert l70.group_size == 8
    assert l70.lamina_send_bytes_per_token() == (2 + 2 / 8) * 2 * 8192
    assert l70.lamina_return_bytes_per_token() == 2 * 8192
    assert model("llama-65b").lamina_send_bytes_per_token() == 4 * 2 * 8192


def test_weights_and_non_attention_flops():
    l33 = model("llama-33b")
    assert l33.weight_bytes == 64.7e9  # Lamina Table 2
    assert l33.non_attention_flops_per_token == pytest.approx(2 * 64.7e9 / 2)
    ds = model("deepseek-v3")
    assert ds.total_params == pytest.approx(671e9)
    assert ds.active_weight_bytes == pytest.approx(37e9)  # fp8: 1 B per active parameter
    assert ds.non_attention_flops_per_token == pytest.approx(2 * 37e9)


def test_lookup_is_case_insensitive_and_unknown_names_list_the_known_ones():
    assert model("DeepSeek-V3.2") is MODELS["deepseek-v3.2"]
    with pytest.raises(UnknownModelError) as exc:
        model("gpt-7")
    msg = str(exc.value)
    assert "gpt-7" in msg and all(name in msg for name in MODELS)
    assert isinstance(exc.value, UserError)


def test_custom_architecture_from_two_coefficients():
    arch = Architecture.custom("mine", layers=40, routed_payload_bytes=2000.0,
                               moved_bytes_per_token=600.0, return_bytes=800.0)
    assert arch.layers == 40
    assert arch.routed_payload_bytes() == 2000.0
    assert arch.query_bytes() == 1200.0 and arch.return_bytes() == 800.0
    assert arch.moved_bytes_per_token == 600.0
    assert arch.attention_flops_per_token == 0.0  # memory-bound unless told otherwise
    with pytest.raises(UserError, match="routed_payload_bytes"):
        Architecture.custom("bad", 10, 0.0, 600.0)


def test_bad_heads_and_dtypes_are_user_errors():
    with pytest.raises(UserError, match="heads=129"):
        model("deepseek-v3").query_bytes(heads=129)
    with pytest.raises(UserError, match="kv dtype"):
        model("deepseek-v3").with_kv_dtype("int4")


# -- properties ------------------------------------------------------------------------------


@given(architectures(), st.data())
def test_payload_is_linear_in_heads(arch, data):
    h = data.draw(st.integers(1, arch.query_heads))
    assert arch.routed_payload_bytes(h) == pytest.approx(
        h * arch.routed_payload_bytes() / arch.query_heads)
    assert arch.routed_payload_bytes() > 0 and arch.moved_bytes_per_token > 0


@given(st.integers(1, 200), st.floats(1.0, 1e7), st.floats(1.0, 1e6))
def test_custom_round_trips_its_coefficients(layers, payload, moved):
    arch = Architecture.custom("c", layers, payload, moved)
    assert arch.routed_payload_bytes() == pytest.approx(payload)
    assert arch.moved_bytes_per_token == moved
    assert arch.layers == layers


# -- the builders, called here (the catalog is built at import, out of a mutant's reach) --------


def test_the_mla_builder_by_its_published_figures():
    arch = _mla("m", 61, 128, 7168, 671e9, 37e9, 2048, 64, q_lora_rank=1536)
    # latent 512 + RoPE 64 in bf16: 1,152 B; FlashMLA's fp8 layout 512 + 16 + 128 = 656 B
    assert (arch.kv_bytes_per_token_bf16, arch.kv_bytes_per_token_fp8) == (1152.0, 656.0)
    # query row 576 × 2 B per head; returned 512 × 2 B + a 4 B LSE
    assert (arch.query_bytes_per_head, arch.return_bytes_per_head) == (1152.0, 1028.0)
    assert arch.attention_flops_per_token == 2.0 * (576 + 512) * 128
    # fp8 checkpoint: 1 B per parameter; 2 FLOPs per active parameter per token
    assert (arch.weight_bytes, arch.weight_bytes_per_param) == (671e9, 1.0)
    assert arch.non_attention_flops_per_token == 2.0 * 37e9
    assert (arch.attention, arch.kv_heads, arch.bytes_per_element) == ("mla_dsa", 1, 2.0)
    assert (arch.topk_tokens, arch.indexer_heads, arch.indexer_head_dim) == (2048, 64, 128)
    assert (arch.kv_lora_rank, arch.qk_rope_head_dim, arch.q_lora_rank) == (512, 64, 1536)
    dense = _mla("d", 61, 64, 7168, 1e12, 32e9, None, 0)
    assert (dense.attention, dense.indexer_head_dim, dense.topk_tokens) == ("mla", 0, None)


def test_the_dense_builder_by_its_published_figures():
    # Llama-3-70B: 64 query heads of 128 over 8 KV heads, hidden 8192, 141 GB of bf16 weights
    arch = _dense("l", 80, 64, 8, 8192, 141e9, "gqa", intermediate_size=28672)
    assert arch.head_dim == 128
    assert (arch.kv_bytes_per_token_bf16, arch.kv_bytes_per_token_fp8) == (4096.0, 2048.0)
    assert (arch.query_bytes_per_head, arch.return_bytes_per_head) == (256.0, 260.0)
    assert arch.attention_flops_per_token == 2.0 * 256 * 64
    assert arch.active_params == 70.5e9 and arch.non_attention_flops_per_token == 141e9
    assert (arch.weight_bytes, arch.bytes_per_element, arch.intermediate_size) == (
        141e9, 2.0, 28672)
    # LLaMA-33B's 52 heads of 128 in 6,656
    assert _dense("s", 60, 52, 52, 6656, 65e9, "mha").head_dim == 128


def test_bounds_an_architecture_checks():
    base = model("llama-3-70b")
    for field in ("kv_bytes_per_token_bf16", "kv_bytes_per_token_fp8"):
        with pytest.raises(ValueError, match=field):
            replace(base, **{field: 0.0})
    for field in ("topk_tokens", "max_context_tokens"):
        assert getattr(replace(base, **{field: 1}), field) == 1
        with pytest.raises(ValueError, match=field):
            replace(base, **{field: 0})


def test_weights_and_parameters_at_their_edges():
    base = model("llama-3-70b")
    # no bytes per parameter: no parameter count, and the active weights are all the weights
    none = replace(base, weight_bytes_per_param=0.0)
    assert none.total_params == 0.0 and none.active_weight_bytes == none.weight_bytes
    # half a parameter in all (1 B at 2 B each), a quarter active: half the bytes are active
    tiny = replace(base, weight_bytes=1.0, active_params=0.25)
    assert tiny.total_params == 0.5 and tiny.active_weight_bytes == 0.5
    assert model(base) is base


def test_a_custom_architectures_fixed_fields_and_edges():
    arch = Architecture.custom("c", 3, 1000.0, 100.0, weight_bytes=8e9)
    assert arch.return_bytes() == 500.0  # half the payload by default
    assert (arch.query_heads, arch.kv_heads, arch.hidden_size, arch.bytes_per_element) == (
        1, 1, 0, 2.0)
    assert arch.active_params == 4e9 and arch.active_weight_bytes == 8e9
    for ret in (0.0, 1000.0):  # the payload may be all query or all return
        assert Architecture.custom("c", 3, 1000.0, 100.0, return_bytes=ret).return_bytes() == ret
    with pytest.raises(UserError, match="moved_bytes_per_token must be > 0"):
        Architecture.custom("c", 3, 1000.0, 0.0)
    with pytest.raises(UserError, match="return_bytes must be in"):
        Architecture.custom("c", 3, 1000.0, 100.0, return_bytes=1000.5)
