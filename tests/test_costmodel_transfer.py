"""The KV transfer engine's closed form."""

import pytest

from simulator.costmodel.transfer import transfer_time


def test_transfer_engine_closed_form_paces_messages_per_nic():
    sizes = [1e6, 2e6, 3e6]

    def msg(b):
        return 10e-6 + b / 45e9

    t = transfer_time(sizes, 20e9, 2e-6, msg)
    assert t == pytest.approx(2e-6 + 1e6 / 20e9 + 2e-6 + 2e6 / 20e9 + 2e-6 + msg(3e6))
    assert transfer_time([], 20e9, 2e-6, msg) == 0.0
