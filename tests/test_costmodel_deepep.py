"""DeepEP's kernels: the calibrated model reproduces DeepEP's published rows."""

import pytest

from simulator import hardware
from simulator.costmodel import deepep


def test_deepep_low_latency_rows_are_reproduced_by_the_calibrated_model():
    d, c = deepep.low_latency_overheads()
    assert 0 < d < 30e-6 and 0 < c < 40e-6
    for ep, disp, comb in deepep.DEEPEP_LOW_LATENCY:
        mine_d = deepep.deepep_model_time(ep, deepep.dispatch_bytes_per_token(7168), overhead=d)
        mine_c = deepep.deepep_model_time(ep, deepep.combine_bytes_per_token(7168), overhead=c)
        tol = 0.25 if ep == 8 else 0.08  # EP 8 (NVLink only) is the model's worst row
        assert mine_d == pytest.approx(disp, rel=tol)
        assert mine_c == pytest.approx(comb, rel=tol)
    # normal kernels: the ibgda RDMA rate lies within the table's bottleneck bandwidths
    rate = hardware.stack("ibgda").efficiency(True) * hardware.LINKS["ib_ndr"].bandwidth
    rdma = [x for row in deepep.DEEPEP_NORMAL if row[0] == "rdma" for x in row[2:]]
    assert min(rdma) <= rate <= max(rdma)
    assert deepep.mode_overheads("normal")[0] > deepep.mode_overheads("low_latency")[0]
