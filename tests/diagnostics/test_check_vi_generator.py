"""``check_vi(..., generator=g)``: the package's ``generator=`` contract (found by an audit of the samplers:
check_vi drew from the guide with torch's global stream only, so its k-hats could not be reproduced from a
generator and every call moved the caller's stream)."""

import torch

from hybridpgm.diagnostics import check_vi
from tests import generator_contract as contract
from tests.diagnostics.conjugate import guide_with_width, model

X = torch.linspace(-2.0, 2.0, 6, dtype=torch.float64)


def _check(**kw):
    result = check_vi(model, guide_with_width(1.5), X, num_samples=40, chunk_size=15, **kw)
    return torch.as_tensor(result.khat), torch.as_tensor(result.log_likelihood)


def test_a_generator_makes_the_check_a_function_of_its_state():
    contract.assert_generator_contract(_check, "check_vi generator")


def test_the_generator_is_not_passed_on_to_the_model():
    """``generator`` is check_vi's own keyword, as ``num_samples`` is: a model without one still runs."""
    g = torch.Generator().manual_seed(0)
    assert check_vi(model, guide_with_width(1.0), X, num_samples=30, generator=g).khat.shape == (6,)
