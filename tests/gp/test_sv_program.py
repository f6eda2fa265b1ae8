"""The Pyro program of SVDeepKernelGP (hybridpgm/gp/sv_program.py): a block of a larger program, Bernoulli labels
and empty batches."""

import gpytorch
import pytest
import torch

import hybridpgm
from hybridpgm.errors import DataError
from hybridpgm.gp import SVDeepKernelGP
from hybridpgm.nn import mlp
from tests.gp.deep_kernel_helpers import DEEP_KERNEL_WARNINGS, _toy

pytestmark = pytest.mark.filterwarnings(*DEEP_KERNEL_WARNINGS)


def test_sv_dkl_is_a_block_of_a_larger_pyro_program():
    import pyro

    x, y = _toy(n=30, d=2, dtype=torch.float32)
    sv = SVDeepKernelGP(mlp([2, 8, 2]), num_features=2, num_data=30, inducing_points=torch.randn(10, 2))

    def model(x, y):
        shift = pyro.sample("shift", pyro.distributions.Normal(0.0, 1.0))
        return sv.model(x, y - shift)

    def guide(x, y):
        pyro.sample("shift", pyro.distributions.Normal(0.0, 0.1))
        sv.guide(x, y)

    trace = pyro.poutine.trace(pyro.poutine.replay(model, pyro.poutine.trace(guide).get_trace(x, y))).get_trace(x, y)
    assert {"shift", "gp.u", "gp.f", "gp.y"} <= set(trace.nodes)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model, guide, x, y)
    loss.backward()
    assert all(p.grad is not None for p in sv.feature_extractor.parameters())


def test_sv_dkl_bernoulli_takes_bool_labels_as_zero_one_and_refuses_integers():
    """Bool labels reached torch's bool subtraction (a raw RuntimeError)."""
    import pyro

    torch.manual_seed(0)
    x = torch.randn(20, 2)
    labels = x[:, 0] > 0
    sv = SVDeepKernelGP(None, num_features=2, num_data=20, inducing_points=torch.randn(5, 2),
                        likelihood=gpytorch.likelihoods.BernoulliLikelihood())
    elbo = pyro.infer.Trace_ELBO(num_particles=1)
    elbo.differentiable_loss(sv.model, sv.guide, x, labels.float())  # the first call registers the parameters
    losses = []
    for y in (labels, labels.float()):
        pyro.set_rng_seed(0)
        losses.append(elbo.differentiable_loss(sv.model, sv.guide, x, y))
    assert torch.equal(losses[0], losses[1])
    with pytest.raises(DataError, match=r"y has dtype torch.int64.*BernoulliLikelihood"):
        sv.model(x, labels.long())
    result = hybridpgm.fit(sv.objective(), (x, labels), batch_size=10, epochs=1, progress=False, seed=0)
    assert result.history.step == [1, 2]


@pytest.mark.parametrize("grid_size", [None, 8])
def test_sv_dkl_elbo_on_an_empty_batch_raises_a_named_data_error(grid_size):
    """Before, GPyTorch raised a raw IndexError (grid interpolation) or ZeroDivisionError (the likelihood's
    N / B scale); predict() on no examples still gives empty results."""
    sv = SVDeepKernelGP(num_features=2, num_data=8, grid_size=grid_size,
                        inducing_points=None if grid_size else torch.randn(4, 2))
    x, y = torch.zeros(0, 2), torch.zeros(0)
    empty = r"x has shape \(0, 2\): an empty batch"
    with pytest.raises(DataError, match=empty):
        sv.objective(num_particles=2).loss("elbo", (x, y))
    with pytest.raises(DataError, match=empty):
        sv.model(x, y)
    with pytest.raises(DataError, match=empty):
        sv.guide(x, y)
    with pytest.raises(DataError, match=r"x has shape \(0, 3\), expected \(N, 2\)"):  # its shape still checked
        sv.guide(torch.zeros(0, 3), y)
    prediction = sv.predict(x)
    assert prediction.mean.shape == prediction.variance.shape == (0,)
    loss = sv.objective(num_particles=2).loss("elbo", (torch.rand(3, 2), torch.zeros(3)))  # a batch still trains
    assert torch.isfinite(loss)
