"""posterior(x) of DeepKernelGP with gradients (hybridpgm/gp/deep_kernel.py): the closed-form gradients, and no
prediction strategy kept alive."""

import pytest
import torch

from hybridpgm.gp import DeepKernelGP
from hybridpgm.nn import mlp
from tests.gp.deep_kernel_helpers import DEEP_KERNEL_WARNINGS, _toy

pytestmark = pytest.mark.filterwarnings(*DEEP_KERNEL_WARNINGS)


def test_posterior_gradients_are_the_closed_form_gradients():
    """The training features were computed without gradients and GPyTorch detached its test caches: the
    gradients of posterior(x).mean in the network weights and the hyperparameters were partial."""
    x, y = _toy(n=12)
    xt = _toy(n=3, seed=1)[0]
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 2).double()
    model = DeepKernelGP(x, y, net)
    with torch.no_grad():
        model.likelihood.noise = 0.05

    def closed_form():
        h, ht = net(x), net(xt)
        ls, scale = model.gp.covar_module.base_kernel.lengthscale, model.gp.covar_module.outputscale
        k = lambda a, b: scale * torch.exp(-0.5 * (((a[:, None] - b[None]) / ls) ** 2).sum(-1))  # noqa: E731
        K = k(h, h) + model.likelihood.noise * torch.eye(12, dtype=torch.float64)
        c = model.gp.mean_module.constant
        mean = c + k(ht, h) @ torch.linalg.solve(K, y - c)
        cov = k(ht, ht) - k(ht, h) @ torch.linalg.solve(K, k(h, ht))
        return mean, cov.diagonal()

    params = [p for p in model.parameters() if p.requires_grad]
    want_mean, want_var = closed_form()
    got = model.posterior(xt)
    for a, b in ((got.mean, want_mean), (got.variance, want_var)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
        grads = torch.autograd.grad(a.sum(), params, allow_unused=True, retain_graph=True)
        refs = torch.autograd.grad(b.sum(), params, allow_unused=True, retain_graph=True)
        for p, g, r in zip(params, grads, refs):
            g = torch.zeros_like(p) if g is None else g
            r = torch.zeros_like(p) if r is None else r
            torch.testing.assert_close(g, r, rtol=1e-7, atol=1e-9)
    with torch.no_grad():  # predict: no graph
        assert not model.posterior(xt).mean.requires_grad


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_posterior_with_gradients_keeps_no_prediction_strategy_and_its_gradients(mode, monkeypatch):
    """Before, each ``posterior`` call with gradients on left its prediction strategy (and the ``O(n^2)`` factors
    of the training covariance) alive for good: GPyTorch hooks the strategy on its cache's ``grad_fn``, a cycle
    :mod:`gc` cannot collect; 10 calls kept 10 strategies (26 MiB a call at n = 1500).  The model keeps none
    either (in eval mode it kept the last call's, with its graph, until ``condition()``)."""
    import gc

    from gpytorch.models.exact_prediction_strategies import DefaultPredictionStrategy

    from hybridpgm.gp import deep_kernel

    def strategies():
        gc.collect()
        return sum(isinstance(o, DefaultPredictionStrategy) for o in gc.get_objects())

    x, y = _toy(n=30)
    xt = _toy(n=3, seed=1)[0]
    torch.manual_seed(0)
    model = DeepKernelGP(x, y, mlp([2, 8, 2], activation="tanh").double())
    model.train(mode == "train")
    params = [p for p in model.parameters() if p.requires_grad]
    before = strategies()
    for _ in range(10):
        model.posterior(xt)  # the result discarded, nothing back-propagated
    assert strategies() == before and model.gp.prediction_strategy is None

    first = model.posterior(xt)
    model.posterior(xt)  # conditioning again leaves the first distribution's graph intact
    grads = torch.autograd.grad(first.mean.sum() + first.variance.sum(), params, allow_unused=True)
    assert model.training == (mode == "train")
    monkeypatch.setattr(deep_kernel, "release_test_caches", lambda gp: None)  # the caches kept, as before
    kept = model.posterior(xt)
    refs = torch.autograd.grad(kept.mean.sum() + kept.variance.sum(), params, allow_unused=True)
    assert all(g is not None and r is not None for g, r in zip(grads, refs))  # every weight, every hyperparameter
    for g, r in zip(grads, refs):
        assert torch.isfinite(g).all() and torch.equal(g, r)
