"""``model(x)`` of DeepKernelGP and GPLSTM (hybridpgm/gp/deep_kernel_call.py): before, both raised a bare
``NotImplementedError('')`` (gpytorch.Module.forward) in either mode, where SVDeepKernelGP(x) gives q(f)."""

import gpytorch
import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.gp import GPLSTM, DeepKernelGP
from hybridpgm.nn import mlp

pytestmark = pytest.mark.filterwarnings(
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: jitter added
)


def _dkl(grid_size=None):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 2, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.sin(3 * x[:, 0]) + 0.1 * torch.randn(30, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = DeepKernelGP(x, y, mlp([2, 8, 2]).double(), grid_size=grid_size)
    return model, torch.rand(7, 2, generator=g, dtype=torch.float64) * 2 - 1


def _lstm():
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    model = GPLSTM(torch.randn(25, 5, 1, generator=g), torch.randn(25, generator=g), hidden_size=4, num_features=2)
    return model, torch.randn(4, 5, 1, generator=g)


def _same(got, expected):
    assert isinstance(got, gpytorch.distributions.MultivariateNormal)
    torch.testing.assert_close(got.mean, expected.mean)
    torch.testing.assert_close(got.covariance_matrix, expected.covariance_matrix)


@pytest.mark.parametrize("build", [_dkl, lambda: _dkl(grid_size=16), _lstm], ids=["exact", "kiss", "gp_lstm"])
def test_in_eval_mode_the_call_is_the_posterior(build):
    model, xt = build()
    model.eval()
    got = model(xt)
    _same(got, model.posterior(xt))
    assert not model.training  # the mode kept
    # GPyTorch's prediction, model.likelihood(model(x)), is predict's
    y = model.likelihood(got)
    expected = model.predict(xt)
    torch.testing.assert_close(y.mean.detach(), expected.mean)
    torch.testing.assert_close(y.variance.detach(), expected.variance)


def test_the_call_is_differentiable_as_the_posterior():
    model, xt = _dkl()
    model.eval()
    model(xt).mean.sum().backward()
    first = next(model.feature_extractor.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("build, name", [(_dkl, "DeepKernelGP"), (_lstm, "GPLSTM")])
def test_in_train_mode_the_call_names_what_to_use(build, name):
    model, xt = build()
    model.train()
    with pytest.raises(ConfigError, match=rf"{name}\(x\) in train mode.*model\.eval\(\).*posterior\(x\).*"
                                          r"predict\(x\).*prior\(x\).*marginal_log_likelihood"):
        model(xt)
    assert model.training


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_under_prior_mode_the_call_is_the_prior(mode):
    model, xt = _dkl()
    model.train(mode == "train")
    with gpytorch.settings.prior_mode(True):
        got = model(xt)
    _same(got, model.prior(xt))
