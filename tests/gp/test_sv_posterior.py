"""``SVDeepKernelGP.posterior(x)``: q(f) at x, the model's eval-mode call, in either mode (the call the exact
deep-kernel GP and the GP-LSTM have; it was an AttributeError)."""

import gpytorch
import pytest
import torch

from hybridpgm.gp import SVDeepKernelGP

pytestmark = pytest.mark.filterwarnings("ignore::linear_operator.utils.warnings.NumericalWarning")


def _sv(**kwargs):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    options = {"inducing_points": torch.randn(6, 2)} if "grid_size" not in kwargs else {}
    return SVDeepKernelGP(net, num_features=2, num_data=20, **options, **kwargs)


X = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kwargs", [{}, {"grid_size": 8}])
def test_posterior_is_the_eval_mode_call_in_either_mode(kwargs):
    sv = _sv(**kwargs)
    sv.train()
    sv(X)  # a training call: under KISS-GP it records the features' range
    state = {k: v.clone() for k, v in sv.state_dict().items()}
    wide = 5 * X  # features beyond the recorded range
    got = sv.posterior(wide)  # train mode: dropout would draw masks, the grid scaling would widen its range
    assert isinstance(got, gpytorch.distributions.MultivariateNormal) and got.mean.shape == (5,)
    assert all(m.training for m in sv.modules())  # each sub-module's own mode back
    assert all(torch.equal(v, sv.state_dict()[k]) for k, v in state.items())  # nothing recorded
    sv.eval()
    want = sv(wide)
    torch.testing.assert_close(got.mean, want.mean, rtol=0, atol=0)
    torch.testing.assert_close(got.covariance_matrix, want.covariance_matrix, rtol=0, atol=0)
    again = sv.posterior(wide)  # eval mode: the same
    assert torch.equal(again.mean, want.mean) and not any(m.training for m in sv.modules())


def test_posterior_is_differentiable_and_its_likelihood_gives_predict():
    sv = _sv().eval()
    q = sv.posterior(X)
    q.mean.sum().backward()
    assert sv.feature_extractor[0].weight.grad is not None and sv.feature_extractor[0].weight.grad.abs().sum() > 0
    pred = sv.predict(X)
    y = sv.likelihood(q)
    torch.testing.assert_close(y.mean.detach(), pred.mean)
    torch.testing.assert_close(y.variance.detach(), pred.variance)


def test_posterior_of_no_inputs_is_an_empty_mvn():
    assert _sv().posterior(X[:0]).mean.shape == (0,)
