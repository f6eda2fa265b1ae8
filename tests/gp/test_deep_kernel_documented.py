"""KISS-GP DeepKernelGP against GPyTorch's documented DKL model (the reference of benchmarks/dkl_step.py): the same
loss and gradients at identical weights."""

import copy
import importlib.util
import sys
from pathlib import Path

import gpytorch
import pytest
import torch

from hybridpgm.gp import DeepKernelGP
from hybridpgm.nn import mlp
from tests.gp.deep_kernel_helpers import DEEP_KERNEL_WARNINGS, _toy

pytestmark = pytest.mark.filterwarnings(*DEEP_KERNEL_WARNINGS)


def _documented_dkl():
    """The benchmark's reference (``benchmarks/dkl_step.py``: GPyTorch's documented
    KISS-GP deep kernel model), so these tests also prove the benchmark compares
    like with like."""
    path = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(path))
    try:
        spec = importlib.util.spec_from_file_location("dkl_step_reference", path / "dkl_step.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path))
    return module.DocumentedDKL


def _kiss_pair(n=60, grid_size=20):
    """A KISS-GP DeepKernelGP and the plain GPyTorch model with identical weights
    (hyperparameters moved away from their defaults first), float64."""
    x, y = _toy(n=n, d=3)
    torch.manual_seed(0)
    model = DeepKernelGP(x, y, mlp([3, 16, 2], activation="tanh").double(), grid_size=grid_size).double()
    for p in model.gp.parameters():
        p.data.add_(0.3)
    ref = _documented_dkl()(x, y, gpytorch.likelihoods.GaussianLikelihood(), copy.deepcopy(model.feature_extractor),
                            2, grid_size).double()
    ref.mean_module.load_state_dict(model.gp.mean_module.state_dict())
    ref.covar_module.load_state_dict(model.gp.covar_module.state_dict())
    ref.likelihood.load_state_dict(model.likelihood.state_dict())
    return x, y, model, ref


def _loss_and_grads(loss_fn, named_params, seed=None):
    for _, p in named_params:
        p.grad = None
    if seed is not None:
        torch.manual_seed(seed)
    loss = loss_fn()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in named_params}


def _dkl_losses(x, y, model, ref, seed=None):
    """``((loss, grads) of DeepKernelGP, (loss, grads) of the plain model)``, grads keyed alike."""
    ref_mll = gpytorch.mlls.ExactMarginalLogLikelihood(ref.likelihood, ref)
    ours = [("net." + n, p) for n, p in model.feature_extractor.named_parameters()] + \
        [("gp." + n, p) for n, p in model.gp.named_parameters()]
    theirs = [("net." + n, p) for n, p in ref.feature_extractor.named_parameters()] + \
        [("gp." + n, p) for n, p in ref.named_parameters() if not n.startswith("feature_extractor.")]
    return (_loss_and_grads(lambda: -model.marginal_log_likelihood(), ours, seed),
            _loss_and_grads(lambda: -ref_mll(ref(x), y), theirs, seed))


def _assert_same(got, expected, rtol):
    (loss, grads), (ref_loss, ref_grads) = got, expected
    torch.testing.assert_close(loss, ref_loss, rtol=rtol, atol=rtol)
    assert grads.keys() == ref_grads.keys() and len(grads) == 8  # 2 layers x 2 + mean, noise, scale, lengthscale
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=100 * rtol, atol=rtol, msg=name)


def test_kiss_dkl_loss_and_gradients_equal_gpytorchs_documented_model():
    """At identical weights, DeepKernelGP's training loss (KISS-GP on network
    features) is the marginal likelihood of GPyTorch's DKL example model, with the
    same gradients for the network weights and every hyperparameter: exactly
    (Cholesky, float64), and with GPyTorch's default CG / stochastic
    log-determinant given the same random probe vectors."""
    x, y, model, ref = _kiss_pair()
    model.train(), ref.train()
    with gpytorch.settings.fast_computations(False, False, False):
        _assert_same(*_dkl_losses(x, y, model, ref), rtol=1e-10)
    _assert_same(*_dkl_losses(x, y, model, ref, seed=3), rtol=1e-10)
    # and the two settings agree with each other to the stochastic estimator's accuracy
    with gpytorch.settings.fast_computations(False, False, False):
        exact = -model.marginal_log_likelihood()
    torch.manual_seed(3)
    assert abs(float(-model.marginal_log_likelihood() - exact)) < 0.05 * abs(float(exact))
