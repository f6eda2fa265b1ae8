"""The bytes a torch function asks for, read from its arguments (hybridpgm/serialization_asked.py), split out of
hybridpgm/serialization_budget.py: each rule gives the bytes of what the call makes."""

import pytest
import torch

from hybridpgm import serialization_budget
from hybridpgm.serialization_asked import ASKED, call_text, function_name

_X = torch.randn(3, 4)
#: a call of each kind the rules read: (function, args, kwargs)
CALLS = [
    (torch.empty, (2, 3), {}), (torch.zeros, ((2, 3),), {"dtype": torch.float64}), (torch.ones, (), {"size": (5,)}),
    (torch.rand, (4,), {}), (torch.randn, (2, 2), {"dtype": torch.float16}), (torch.full, ((2, 3), 7), {}),
    (torch.full, ((2,), True), {}), (torch.randint, (10, (3, 3)), {}), (torch.normal, (0.0, 1.0, (4,)), {}),
    (torch.eye, (3, 5), {}), (torch.arange, (10,), {}), (torch.arange, (0.0, 1.0, 0.25), {}),
    (torch.linspace, (0, 1, 7), {}), (torch.randperm, (9,), {}), (torch.empty_strided, ((2, 3), (3, 1)), {}),
    (torch.tril_indices, (3, 3), {}), (torch.zeros_like, (_X,), {}), (torch.Tensor.new_zeros, (_X, 2, 2), {}),
    (torch.Tensor.new_full, (_X, (2,), 1.0), {}), (torch.Tensor.repeat, (_X, 2, 1), {}), (torch.tile, (_X, (2,)), {}),
    (torch.clone, (_X,), {}), (torch.Tensor.contiguous, (_X.t(),), {}),
]


@pytest.mark.parametrize("call", CALLS, ids=[f"{function_name(f)}{i}" for i, (f, _, _) in enumerate(CALLS)])
def test_each_rule_gives_at_least_the_bytes_the_call_makes(call):
    """The rule is exact for a factory; at most the bytes a triangle's indices can take (tril_indices)."""
    func, args, kwargs = call
    made = func(*args, **kwargs)
    asked = ASKED[func](args, kwargs)
    nbytes = made.untyped_storage().nbytes()
    assert asked >= nbytes and (asked == nbytes or func is torch.tril_indices), (asked, nbytes)


def test_call_text_and_the_names_the_budget_had():
    assert call_text(torch.zeros, (2, 3), {"dtype": torch.float64}) == "torch.zeros(2, 3, dtype=torch.float64)"
    assert call_text(torch.Tensor.repeat, (_X, 2), {}) == "Tensor.repeat(a tensor of shape (3, 4) (torch.float32), 2)"
    assert serialization_budget._ASKED is ASKED and serialization_budget._call_text is call_text
