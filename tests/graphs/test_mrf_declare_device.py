"""A :class:`~hybridpgm.graphs.MarkovNet` factor declared with torch's default device set to ``"meta"``: before,
``add_factor`` / ``add_factors`` with a table made there failed in the finiteness check with torch's raw
``RuntimeError: Tensor.item() cannot be called on meta tensors``; now a
:class:`~hybridpgm.errors.ModelSpecError` names the factor and the meta device, and the net is left as it was."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import MarkovNet


@pytest.mark.parametrize("family", [False, True], ids=["add_factor", "add_factors"])
def test_a_table_on_the_meta_device_is_refused_naming_the_factor(family):
    net = MarkovNet({"a": 2, "b": 2, "c": 2})
    torch.set_default_device("meta")
    try:
        with pytest.raises(ModelSpecError, match="factor 'p' has log-potentials on the meta device"):
            if family:
                net.add_factors("p", [["a", "b"], ["b", "c"]], torch.zeros(2, 2, 2))
            else:
                net.add_factor("p", ["a", "b"], torch.zeros(2, 2))
    finally:
        torch.set_default_device(None)
    assert net.families == {} and not list(net.buffers())
    net.add_factor("p", ["a", "b"], torch.zeros(2, 2))  # the corrected call
    torch.testing.assert_close(net.log_partition(), torch.tensor(8.0).log())  # 2^3 states of potential 0
