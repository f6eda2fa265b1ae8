"""The range check of floating discrete evidence (hybridpgm/infer/bn_evidence_states.py): the first value past the
states, ``card`` itself, is refused by name, as an integer ``card`` is.

A mutation that let the float ``card`` through (``t > card`` for ``t >= card``) survived the evidence tests, whose
floating out-of-range values were -2, inf and 1e20: a query then failed in torch's indexing (a raw ``IndexError``)."""

import pytest
import torch

from hybridpgm.errors import EvidenceError
from tests.graphs.bn_helpers import sprinkler


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.long])
@pytest.mark.parametrize("batched", [False, True])
def test_the_value_card_is_out_of_range_in_every_dtype(dtype, batched):
    value = torch.tensor([0, 2], dtype=dtype) if batched else torch.tensor(2, dtype=dtype)
    where = "row 1" if batched else "a scalar"
    shown = "2" if dtype == torch.long else "2.0"
    with pytest.raises(EvidenceError, match=rf"^value {shown} out of range for 'wet' \(cardinality 2\) in {where}"):
        sprinkler().posterior("rain", {"wet": value})
    assert sprinkler().posterior("rain", {"wet": value - 1}).shape[-1] == 2  # the last state is a state
