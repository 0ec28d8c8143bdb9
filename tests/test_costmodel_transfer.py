"""The KV transfer engine's closed form."""

import pytest

from simulator.costmodel.transfer import kv_bytes, transfer_time
from simulator.models import model


def test_transfer_engine_closed_form_paces_messages_per_nic():
    sizes = [1e6, 2e6, 3e6]

    def msg(b):
        return 10e-6 + b / 45e9

    t = transfer_time(sizes, 20e9, 2e-6, msg)
    assert t == pytest.approx(2e-6 + 1e6 / 20e9 + 2e-6 + 2e6 / 20e9 + 2e-6 + msg(3e6))
    assert transfer_time([], 20e9, 2e-6, msg) == 0.0


def test_kv_bytes_of_a_prompt():
    # DeepSeek-V3.2's MLA cache: 1,152 B per token and layer (512 latent + 64 RoPE elements,
    # bf16); a 1,000-token prompt over 61 layers, over one layer, and halves and quarters
    arch = model("deepseek-v3.2")
    assert arch.kv_bytes_per_token == 1152.0
    assert kv_bytes(arch, 1000, 61) == 70_272_000.0
    assert kv_bytes(arch, 1000) == 1_152_000.0
    assert kv_bytes(arch, 640, 4) == 2 * kv_bytes(arch, 320, 4) == 4 * kv_bytes(arch, 640, 1)
