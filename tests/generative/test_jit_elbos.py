"""The VAE's and the sigmoid belief net's data checks under Pyro's JIT ELBOs: compiled on a valid batch, the ELBO
refuses a later batch the eager ELBO refuses (before, only the batch being traced was checked)."""

import warnings

import pyro
import pytest
import torch
from pyro.infer import JitTrace_ELBO

from hybridpgm.generative import VAE, SigmoidBeliefNet


def _binary(rows, cols, seed):
    return torch.randint(0, 2, (rows, cols), generator=torch.Generator().manual_seed(seed)).float()


def _compiled(model, guide, x):
    """A JitTrace_ELBO compiled on ``x``; returns its loss function."""
    elbo = JitTrace_ELBO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings, the deprecation of torch.jit.trace, the TrainingWarning
        elbo.differentiable_loss(model, guide, x)
    return lambda data: elbo.differentiable_loss(model, guide, data)


def _with(x, row, col, value):
    x = x.clone()
    x[row, col] = value
    return x


@pytest.fixture(autouse=True)
def param_store():
    with pyro.get_param_store().scope():
        yield


def test_a_jitted_vae_refuses_a_later_batch_that_is_not_binary():
    """Before: losses 27.54 for a 0.5 and nan for a NaN in the batch, where the eager ELBO raises DataError."""
    torch.manual_seed(0)
    vae = VAE(6, z_dim=2, hidden=[8])
    x = _binary(5, 6, 0)
    loss = _compiled(vae.model, vae.guide, x)
    assert torch.isfinite(loss(_binary(5, 6, 1)))
    with pytest.raises(torch.jit.Error, match=r"DataError: check 'not_binary' of VAE\._check"):
        loss(_with(x, 0, 0, 0.5))
    with pytest.raises(torch.jit.Error, match=r"DataError: VAE argument 'x' holds NaN or inf"):
        loss(_with(x, 2, 1, float("nan")))  # the guide's check (finite) comes first


def test_a_jitted_sigmoid_belief_net_refuses_a_later_batch_that_is_not_binary():
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([6, 3, 2])
    x = _binary(5, 6, 0)
    loss = _compiled(sbn.model, sbn.guide, x)
    assert torch.isfinite(loss(_binary(5, 6, 1)))
    with pytest.raises(torch.jit.Error, match="DataError: check 'not_binary' of SigmoidBeliefNet"):
        loss(_with(x, 0, 0, 0.5))
