"""Modules saved through a spec pair rather than their constructor arguments: here gpytorch's
BernoulliLikelihood, the classification likelihood of an SV-DKL (hybridpgm/serialization_specs.py)."""

import gpytorch
import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.gp import SVDeepKernelGP


def _classifier(likelihood):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 2, generator=g) * 2 - 1
    y = (x[:, 0] * x[:, 1] > 0).float()
    gp = SVDeepKernelGP(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)), num_features=2, num_data=40,
                        inducing_points=torch.randn(6, 2), likelihood=likelihood)
    hybridpgm.fit(gp.objective(num_particles=1), (x, y), batch_size=20, epochs=1, seed=0, progress=False,
                  device="cpu")
    return gp, x


def test_an_sv_dkl_classifier_saves_and_loads(tmp_path):
    """Before, hybridpgm.save refused the documented classification setup: 'class
    gpytorch.likelihoods.bernoulli_likelihood.BernoulliLikelihood is not serializable'."""
    gp, x = _classifier(gpytorch.likelihoods.BernoulliLikelihood())
    expected = gp.predict(x)
    loaded = hybridpgm.load(hybridpgm.save(gp, tmp_path / "gp.pt"))
    assert type(loaded.likelihood) is gpytorch.likelihoods.BernoulliLikelihood
    assert (loaded.likelihood.num_data, loaded.likelihood.max_plate_nesting) == (40, 1)
    for name, value in gp.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    got = loaded.predict(x)
    assert torch.equal(got.mean, expected.mean) and torch.equal(got.variance, expected.variance)


def test_a_bernoulli_likelihood_keeps_its_quadrature_and_plate_nesting(tmp_path):
    from gpytorch.utils.quadrature import GaussHermiteQuadrature1D

    likelihood = gpytorch.likelihoods.BernoulliLikelihood()
    likelihood.quadrature = GaussHermiteQuadrature1D(num_locs=8)
    likelihood.max_plate_nesting = 2
    gp, x = _classifier(likelihood)
    loaded = hybridpgm.load(hybridpgm.save(gp, tmp_path / "gp.pt"))
    assert (loaded.likelihood.quadrature.num_locs, loaded.likelihood.max_plate_nesting) == (8, 2)
    assert torch.equal(loaded.predict(x).mean, gp.predict(x).mean)


def test_a_bernoulli_likelihood_with_more_state_is_refused_naming_it(tmp_path):
    likelihood = gpytorch.likelihoods.BernoulliLikelihood()
    likelihood.register_added_loss_term("extra")
    gp = SVDeepKernelGP(nn.Sequential(nn.Linear(2, 2)), num_features=2, num_data=8,
                        inducing_points=torch.randn(4, 2), likelihood=likelihood)
    with pytest.raises(CheckpointError, match=r"cannot save SVDeepKernelGP\(likelihood=\.\.\.\): a "
                                              r"BernoulliLikelihood holding \['added loss terms'\]"):
        hybridpgm.save(gp, tmp_path / "gp.pt")
    assert not list(tmp_path.iterdir())


def test_a_bayesian_regressor_of_a_convolutional_network_loads_with_equal_draws(tmp_path):
    """The layers added to TORCH_LAYERS for convolutional extractors (LOADTRAINED audit, session 39) serve a
    bayesianized network too: before, its ``Unflatten`` and ``Conv1d`` were refused ("a bayesianized network holds a
    PyroUnflatten")."""
    import pyro

    from hybridpgm.bayesian_nn import BayesianRegressor

    net = nn.Sequential(nn.Unflatten(1, (1, 6)), nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(8, 1))
    model, x = BayesianRegressor(net, 10, prior_scale=0.5), torch.randn(10, 6)
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "bnn.pt"))
    traces = []
    for m in (model, loaded):
        pyro.set_rng_seed(0)
        traces.append(pyro.poutine.trace(m).get_trace(x))
    sites = [n for n, site in traces[0].nodes.items() if site["type"] == "sample"]
    assert "net.1.weight" in sites and "y" in sites
    assert all(torch.equal(traces[0].nodes[n]["value"], traces[1].nodes[n]["value"]) for n in sites)
