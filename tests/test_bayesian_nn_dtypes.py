"""The dtype rule for :class:`~hybridpgm.bayesian_nn.BayesianRegressor`'s ``x`` and ``y``
(:func:`~hybridpgm.data.validation.as_model_dtype`), as VAE, RBM, SBN, BayesNet and the GPs follow it.

Found by the INPUTS audit (session 39, finding 7): int64, bool or float16 ``x`` for a float32 network were refused
with advice no network can follow ("or the model (.to(torch.int64))"), and ``y`` was not checked at all (a float64
``y`` made the site's log-probability float64).  Now both are converted where that is exact and refused where it
would round."""

import pyro
import pytest
import torch
from torch import nn

from hybridpgm.bayesian_nn import BayesianRegressor
from hybridpgm.errors import DataError


def _log_prob(model, x, y):
    """The trace's log-density and the site ``"y"``'s dtype, under a fixed seed."""
    pyro.set_rng_seed(0)
    trace = pyro.poutine.trace(model).get_trace(x, y)
    return trace.log_prob_sum(), trace.nodes["y"]["log_prob_sum"].dtype


@pytest.mark.parametrize("convert", [lambda x: x, lambda x: x > 0, lambda x: x.half()],
                         ids=["int64", "bool", "float16"])
def test_x_of_an_exact_dtype_is_converted(convert):
    torch.manual_seed(0)
    model = BayesianRegressor(nn.Linear(2, 1), num_data=8)
    x = convert(torch.randint(0, 3, (8, 2)))
    y = torch.randn(8)
    got, dtype = _log_prob(model, x, y)
    want, _ = _log_prob(model, x.float(), y)
    assert dtype == torch.float32 and torch.equal(got, want)


def test_y_follows_the_rule_too():
    torch.manual_seed(0)
    model = BayesianRegressor(nn.Linear(2, 1), num_data=8)
    x, y = torch.randn(8, 2), torch.randint(0, 3, (8,))
    assert torch.equal(_log_prob(model, x, y)[0], _log_prob(model, x, y.float())[0])
    with pytest.raises(DataError, match="BayesianRegressor y has dtype torch.float64, the model computes in "
                                        "torch.float32"):
        model(x, y.double())
    with pytest.raises(DataError, match=r"BayesianRegressor x has dtype torch\.int64 .*holds exactly \(\+-2\^24\)"):
        model(torch.full((8, 2), 2 ** 25), y.float())
