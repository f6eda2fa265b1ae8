"""A guide's weight draws of another dtype than the network's (hybridpgm/bayesian_nn_dtypes.py).

Found by the DEPLOY audit: a :class:`~hybridpgm.bayesian_nn.BayesianRegressor` cast to bfloat16 for serving, with
its float32 ``AutoNormal`` guide, raised torch's raw "mat1 and mat2 must have the same dtype" from inside the
network.  Now a :class:`~hybridpgm.errors.DataError` names the weight site, both dtypes and the remedy."""

import copy

import pyro
import pytest
import torch

from hybridpgm.bayesian_nn import BayesianRegressor, predictive_samples
from hybridpgm.errors import DataError
from hybridpgm.nn import mlp

NAMED = (r"weight site 'net\.0\.weight' was given a draw of dtype torch\.float32 .* network's weights are "
         r"torch\.bfloat16; cast the guide with the model \(guide\.to\(torch\.bfloat16\)")


def _model_and_guide():
    torch.manual_seed(0)
    x = torch.randn(20, 1)
    model = BayesianRegressor(mlp([1, 8, 1]), num_data=20)
    guide = pyro.infer.autoguide.AutoNormal(model, init_scale=0.05)
    guide(x, x.squeeze(-1).sin())  # the guide's parameters, float32
    return model, guide, x


def test_a_bfloat16_model_with_a_float32_guide_names_the_site_and_the_remedy():
    model, guide, x = _model_and_guide()
    served = copy.deepcopy(model).to(torch.bfloat16)
    with pytest.raises(DataError, match=NAMED):
        predictive_samples(served, guide, x[:3].bfloat16(), num_samples=5)


def test_under_vectorized_plates_too():
    model, guide, x = _model_and_guide()
    served = copy.deepcopy(model).to(torch.bfloat16)
    predictive = pyro.infer.Predictive(served, guide=guide, num_samples=4, parallel=True)
    with pytest.raises(DataError, match=NAMED):
        predictive(x[:3].bfloat16())


def test_posterior_samples_of_another_dtype_are_named():
    model, _, x = _model_and_guide()
    samples = {"net.0.weight": torch.zeros(8, 1, dtype=torch.float64)}
    with pytest.raises(DataError, match=r"'net\.0\.weight' .* dtype torch\.float64 .* weights are torch\.float32"):
        pyro.poutine.condition(model, samples)(x[:3])


def test_the_guide_cast_with_the_model_answers_in_its_dtype():
    model, guide, x = _model_and_guide()
    served, served_guide = copy.deepcopy(model).to(torch.bfloat16), copy.deepcopy(guide).to(torch.bfloat16)
    out = predictive_samples(served, served_guide, x[:3].bfloat16(), num_samples=5,
                             generator=torch.Generator().manual_seed(0))
    want = predictive_samples(model, guide, x[:3], num_samples=5, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.bfloat16 and out.shape == (5, 3) and want.dtype == torch.float32
