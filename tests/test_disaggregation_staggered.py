"""The staggered schedule's pure parts by hand: which model GPU talks to which attention GPU, with
what share of its bytes, and the busiest NIC those flows load (``disaggregation/staggered.py``)."""

import numpy as np
import pytest

from simulator.disaggregation.lamina import simulate_disaggregated
from simulator.disaggregation.spec import DisaggregationSpec
from simulator.disaggregation.staggered import busiest_nic, round_robin_flows
from tests.test_disaggregation import scenario, small, trace


def test_round_robin_pairs_every_attention_gpu_and_shares_its_bytes_among_its_flows():
    # fewer model GPUs than attention GPUs: each model GPU talks to two, each attention GPU
    # hears from one, with all of its bytes
    assert round_robin_flows(["m0", "m1"], 4, out=True) == [
        ("m0", 0, 1.0), ("m1", 1, 1.0), ("m0", 2, 1.0), ("m1", 3, 1.0)]
    # more model GPUs than attention GPUs: each attention GPU hears from two, half its bytes
    # from each; back, the same pairs the other way round
    assert round_robin_flows(["m0", "m1", "m2", "m3"], 2, out=False) == [
        (0, "m0", 0.5), (1, "m1", 0.5), (0, "m2", 0.5), (1, "m3", 0.5)]
    # three model GPUs, two attention GPUs: attention GPU 0 has two flows, 1 has one
    assert round_robin_flows(["m0", "m1", "m2"], 2, out=True) == [
        ("m0", 0, 0.5), ("m1", 1, 1.0), ("m2", 0, 0.5)]


def test_the_busiest_nic_is_a_model_gpu_talking_to_several_attention_gpus():
    x = np.array([1.0, 2.0, 3.0, 4.0])  # bytes per layer per attention GPU
    # one model GPU sends to all four: its NIC carries the sum, per layer, over m = 2 layers
    out = round_robin_flows(["m0"], 4, out=True)
    assert busiest_nic(x, out, 2.0, True) == pytest.approx(2.0 * 10.0)
    # two model GPUs: m0 sends to 0 and 2 (4 B), m1 to 1 and 3 (6 B)
    out = round_robin_flows(["m0", "m1"], 4, out=True)
    assert busiest_nic(x, out, 1.0, True) == pytest.approx(6.0)
    # back to the next slice: the same sums, read at the receiving model GPU
    back = round_robin_flows(["m0", "m1"], 4, out=False)
    assert busiest_nic(x, back, 3.0, False) == pytest.approx(18.0)


def test_the_busiest_nic_is_an_attention_gpu_heard_by_several_model_gpus():
    # four model GPUs, two attention GPUs: each model GPU carries half an attention GPU's
    # bytes, the attention GPU all of them — its NIC is the busiest
    x = np.array([8.0, 2.0])
    out = round_robin_flows(["m0", "m1", "m2", "m3"], 2, out=True)
    assert busiest_nic(x, out, 1.0, True) == pytest.approx(8.0)
    assert busiest_nic(np.zeros(2), out, 1.0, True) == 0.0


@pytest.mark.parametrize("groups", [0, 2])
@pytest.mark.parametrize("prefill", ["external", "local"])
@pytest.mark.parametrize("early_q", [True, False])
@pytest.mark.parametrize(("model_gpus", "micro_batches"), [(2, 3), (1, 2)])
def test_a_lone_request_on_a_real_network_takes_the_closed_forms_time(model_gpus, micro_batches,
                                                                      early_q, prefill, groups):
    # one request, one attention GPU, one model GPU per slice: every message is alone on its
    # links, so the staggered schedule's closed form — the sends' latency and bytes at the
    # stack's efficiency, Q before K/V or with them, a prefill iteration that ships the prompt's
    # KV and returns nothing — is the simulated iteration to rounding, on the ideal network's
    # test (test_disaggregation.py) and here on NCCL over InfiniBand alike; with the 4 layers
    # folded into 2 slots of 2, each slot's chain pays one round-trip latency more per layer
    spec = DisaggregationSpec(model_gpus=model_gpus, attention_gpus=1,
                              micro_batches=micro_batches, early_q=early_q, prefill=prefill)
    res = simulate_disaggregated(scenario(stack="nccl", serving={"step_overhead_time": 0.0},
                                          layer_groups=groups),
                                 trace=trace([4000], [8]), spec=spec,
                                 arch=small("llama-3-70b", 4))
    it = res.iterations
    took = (it["finished_at"] - it["started_at"]).to_numpy()
    assert (took > 0).sum() >= 7
    # (an external prefill's first iteration sends nothing and takes no time: 0 both ways)
    np.testing.assert_allclose(it["cf_time"].to_numpy(), took, rtol=1e-9, atol=0.0)
    # the summary's error leaves out what the formula prices at 0 (not 0 / 0)
    assert res.summary["closed_form_error_p99"] < 1e-9
    if prefill == "local":  # the first iteration prefills: 50 ms, not a decode step's 3.6
        assert took[0] > 10 * took[-1]
