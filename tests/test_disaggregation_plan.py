"""A Lamina iteration's plan (simulator/disaggregation/lamina_plan.py) worked out by hand from the
kernel model: which attention GPU attends which decodes, the DSA indexer, the prefill chunks'
attention and LM-head rows, the bytes each attention GPU receives (a finished chunk ships its KV to
the GPU that holds the request), a tensor-parallel slice's all-reduce bytes, and which slice the
answers go back to."""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from simulator.disaggregation import spec_of
from simulator.disaggregation.lamina import _Lamina
from simulator.disaggregation.shards import head_shard
from simulator.disaggregation.staggered import layer_bytes
from simulator.models import model
from simulator.scenario import Scenario
from simulator.sweep.spec import set_dotted
from workloads import make_trace

ROOT = Path(__file__).resolve().parents[1]


def shipped(name: str, **dotted) -> tuple[Scenario, pd.DataFrame]:
    """A shipped Lamina scenario with dotted fields changed, and six requests of 800-5,800
    prompt tokens arriving at once."""
    data = tomllib.loads((ROOT / "scenarios" / f"{name}.toml").read_text())
    for key, value in dotted.items():
        set_dotted(data, key.replace("__", "."), value)
    sc = Scenario.from_dict(data, source=name, base=ROOT / "scenarios")
    inp = np.array([800, 1800, 2800, 3800, 4800, 5800])
    tr = make_trace(arrival_at=np.zeros(6), input_tokens=inp, output_tokens=[50] * 6,
                    block_ids=[np.arange(-(-int(x) // 512)) + 10_000 * i
                               for i, x in enumerate(inp)])
    return sc, tr


def lamina(name: str, arch=None, **dotted) -> _Lamina:
    """:func:`shipped`'s Lamina run (serving ``arch`` if given), built and not started."""
    sc, tr = shipped(name, **dotted)
    return _Lamina(sc, spec_of(sc), sc.seed, tr, None, None, arch)


def step(decode, chunks, prompt_done):
    return SimpleNamespace(decode=decode, chunks=chunks, prompt_done=prompt_done,
                           prefill_tokens=sum(c for _, c in chunks))


def test_split_by_requests_each_gpu_attends_its_own_decodes_and_receives_its_prompts_kv():
    # DeepSeek-V3.2 (MLA + DSA) over 2 H20s by requests; decodes 0, 1, 2 (on GPUs 0, 1, 1)
    # with 10, 300 and 2,000 tokens generated; request 3's last 500-token chunk (after 3,300
    # computed) lands on GPU 0; request 4's first chunk of 1,000 on GPU 1
    run = lamina("lamina_deepseek_v32", disaggregation__attention_gpus=2,
                 disaggregation__prefill="local")
    arch, km, L = run.arch, run.kernels, run.arch.layers
    run.req.gen[:3] = [10, 300, 2000]
    run.att_of[:5] = [0, 1, 1, 0, 1]
    sched = SimpleNamespace(prefill_left={4: 3800})
    p = run.planner.plan(sched, step([0, 1, 2], [(3, 500), (4, 1000)], [3]))
    s = run.spec.slice_gpus
    pre_att = (km.prefill_attention_time(run.mspec, arch, 500, 3300, gpus=s)
               + km.prefill_attention_time(run.mspec, arch, 1000, 0, gpus=s))
    # 3 decodes (the rows of MLA's absorbed products), 1 prompt done
    na = km.non_attention_time(run.mspec, arch, 1503, gpus=s, logits=4, decode_rows=3)
    assert p.model_layer == pytest.approx((na + pre_att) / L, rel=1e-12)
    assert p.prefill_time == pytest.approx(
        pre_att + na - km.non_attention_time(run.mspec, arch, 3, gpus=s), rel=1e-12)
    context = np.array([810, 2100, 4800])  # prompt + generated
    attended = np.minimum(context, arch.topk_tokens)  # top-2048
    att = [km.attention_time(run.aspec, arch, 1, attended[0])
           + km.indexer_time(run.aspec, arch, 1, context[0]),
           km.attention_time(run.aspec, arch, 2, attended[1:].mean())
           + km.indexer_time(run.aspec, arch, 2, context[1:].mean())]
    np.testing.assert_allclose(p.t_att, att, rtol=1e-12)
    assert p.batch.tolist() == [1, 2]
    q, kv, ret = layer_bytes(arch)
    np.testing.assert_allclose(p.q, [q, 2 * q], rtol=1e-12)
    np.testing.assert_allclose(p.kv, [kv + 500 * arch.kv_bytes_per_token,
                                      2 * kv + 1000 * arch.kv_bytes_per_token], rtol=1e-12)
    np.testing.assert_allclose(p.ret, [ret, 2 * ret], rtol=1e-12)
    assert p.allreduce_bytes == 0.0  # MLA's slices are expert-parallel: no all-reduce


def test_split_by_heads_every_gpu_attends_every_decode_with_its_heads():
    # Llama-3-70B over 4 H20s by KV heads (2 each), one model slice of 2 H100s (tensor
    # parallel), prompts computed whole (no chunked prefill): request 2's prompt of 2,800
    # tokens with decodes 0 and 1, and request 3's prompt prefilled elsewhere (its first token
    # comes with this step)
    run = lamina("lamina_llama3_70b", disaggregation__prefill="local",
                 serving__chunked_prefill=False)
    arch, km, L = run.arch, run.kernels, run.arch.layers
    run.req.gen[:2] = [5, 7]
    p = run.planner.plan(SimpleNamespace(prefill_left={}), step([0, 1], [(2, 2800)], [2, 3]))
    s = run.spec.slice_gpus
    assert s == 2 and run.split == "heads"
    pre = km.prefill_time(run.mspec, arch, 2800, 1.0, gpus=s)
    # the LM head's rows: the decodes' and request 3's; request 2's is in its prefill
    na = km.non_attention_time(run.mspec, arch, 2, gpus=s, logits=3)
    assert p.model_layer == pytest.approx((na + pre) / L, rel=1e-12)
    assert p.prefill_time == pytest.approx(pre, rel=1e-12)
    shard = head_shard(arch, 2)
    np.testing.assert_allclose(p.t_att, [km.attention_time(run.aspec, shard, 2, 1306)] * 4,
                               rtol=1e-12)
    q, kv, ret = layer_bytes(arch)
    np.testing.assert_allclose(p.q, [2 * q / 4] * 4, rtol=1e-12)
    np.testing.assert_allclose(p.kv, [(2 * kv + 2800 * arch.kv_bytes_per_token) / 4] * 4,
                               rtol=1e-12)
    np.testing.assert_allclose(p.ret, [2 * ret / 4] * 4, rtol=1e-12)
    # the slice's all-reduces carry the step's hidden states: the prompt's and the decodes'
    assert p.allreduce_bytes == 2802 * arch.bytes_per_element * arch.hidden_size


def test_answers_go_back_to_the_slice_of_the_next_slot():
    # Llama-3.1-8B, DOP (3, 2), n = 4: three slices of one H100 and three layer slots; slot s
    # runs on slice s mod 3 and its answers go to the slice of slot s + 1 (slot 0's after the
    # last slot)
    run = lamina("lamina_llama3_70b", model("llama-3.1-8b"), disaggregation__model_gpus=3,
                 disaggregation__attention_gpus=2, disaggregation__micro_batches=4,
                 engine__layer_groups=4)
    assert run.K == 3 and len(run.m) == 3
    slices = [x[0] for x in run.slices]
    assert len(set(slices)) == 3
    for s, nxt in enumerate((1, 2, 0)):
        out, back = run.planner.pairs(s)
        assert {a for a, _, _ in out} == {slices[s]}
        assert {c for _, c, _ in back} == {slices[nxt]}
        assert run.planner.pairs(s) is run.planner.pairs(s)  # cached per slot
