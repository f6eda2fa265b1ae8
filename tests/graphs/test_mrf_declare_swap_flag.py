"""A MarkovNet with fixed tables loads under torch's swap setting (audit: caches)."""

from __future__ import annotations

import torch


def test_load_state_dict_under_torchs_swap_flag_loads_fixed_tables():
    """With torch.__future__.set_swap_module_params_on_conversion(True) load_state_dict swaps each tensor with
    torch.utils.swap_tensors, which refuses a tensor that has a weak reference: the declaration's record of each
    fixed table's buffer held one, so no MarkovNet with a fixed table could load (hybridpgm.load neither)."""
    from hybridpgm.graphs import MarkovNet

    def build(table):
        net = MarkovNet({"a": 2, "b": 2})
        net.add_factor("f", ["a", "b"], table)
        return net

    source, target = build(torch.tensor([[0.0, 1.0], [1.0, 0.0]])), build(torch.zeros(2, 2))
    before = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        target.load_state_dict(source.state_dict())
    finally:
        torch.__future__.set_swap_module_params_on_conversion(before)
    torch.testing.assert_close(target.log_partition(), source.log_partition(), atol=0, rtol=0)
