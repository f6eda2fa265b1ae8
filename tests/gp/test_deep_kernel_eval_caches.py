"""GPyTorch's eval-mode memos (a KISS grid kernel's covariance matrix) never answer for earlier hyperparameters:
``DeepKernelGP.marginal_log_likelihood`` and ``prior`` in eval mode (hybridpgm/gp/deep_kernel.py,
``prediction_cache.clear_gpytorch_caches``)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from hybridpgm.gp import DeepKernelGP


def _eval_kiss_model():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 2, dtype=torch.float64, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DeepKernelGP(x, torch.sin(x.sum(-1)), grid_size=16)
    return model.eval(), x


def _changed(model):
    scaled = model.gp.covar_module.base_kernel
    scaled.base_kernel.lengthscale = torch.tensor([[0.2, 0.2]], dtype=torch.float64)
    scaled.outputscale = 3.0


@pytest.mark.parametrize("query", ["marginal_log_likelihood", "prior"])
def test_eval_mode_queries_follow_a_hyperparameter_change(query):
    """Found by an audit: after a change in eval mode, the marginal log-likelihood stayed -0.989 (a fresh copy:
    -1.632) and the prior variance 0.480 (fresh: 8.750), from the grid matrix of the earlier hyperparameters."""
    model, x = _eval_kiss_model()
    ask = (lambda m: m.marginal_log_likelihood()) if query == "marginal_log_likelihood" else \
        (lambda m: m.prior(x[:3]).covariance_matrix)
    with torch.no_grad():
        ask(model)
        _changed(model)
        got = ask(model)
        fresh = copy.deepcopy(model).train().eval()  # the mode switch drops GPyTorch's memos
        torch.testing.assert_close(got, ask(fresh), rtol=1e-12, atol=0)


def test_an_eval_mode_loop_back_propagates_every_step():
    """Found by an audit: a hand-written loop keeping the model in eval mode (a frozen batch norm) failed at its
    second step with "Trying to backward through the graph a second time" (the memo held the first step's graph),
    and a gradient after a call without gradients reached no hyperparameter."""
    model, _ = _eval_kiss_model()
    raw = model.gp.covar_module.base_kernel.raw_outputscale
    with torch.no_grad():
        model.marginal_log_likelihood()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        (-model.marginal_log_likelihood()).backward()
        assert raw.grad is not None and raw.grad.abs() > 0
        optimizer.step()
