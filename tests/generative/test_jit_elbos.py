"""The VAE's and the sigmoid belief net's data checks under Pyro's JIT ELBOs: compiled on a valid batch, the ELBO
refuses a later batch the eager ELBO refuses (before, only the batch being traced was checked)."""

import warnings

import pyro
import pytest
import torch
from pyro.infer import SVI, JitTrace_ELBO

from hybridpgm.errors import TrainingWarning
from hybridpgm.generative import VAE, SigmoidBeliefNet
from hybridpgm.train import traced_checks


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
    with pytest.raises(torch.jit.Error, match=r"DataError: VAE data 'x' is not 0/1 \[a hybridpgm data check"):
        loss(_with(x, 0, 0, 0.5))
    with pytest.raises(torch.jit.Error, match=r"DataError: VAE argument 'x' holds NaN or inf"):
        loss(_with(x, 2, 1, float("nan")))  # the guide's check (finite) comes first


def test_a_jitted_sigmoid_belief_net_refuses_a_later_batch_that_is_not_binary():
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([6, 3, 2])
    x = _binary(5, 6, 0)
    loss = _compiled(sbn.model, sbn.guide, x)
    assert torch.isfinite(loss(_binary(5, 6, 1)))
    with pytest.raises(torch.jit.Error, match="DataError: SigmoidBeliefNet site 'x' holds values other than 0 and 1"):
        loss(_with(x, 0, 0, 0.5))


def test_the_one_time_warning_points_at_the_users_line(monkeypatch):
    """Before, the TrainingWarning that traced checks lose their details pointed at pyro/nn/module.py, a line of
    Pyro's, which the default filter then showed once for every program."""
    monkeypatch.setattr(traced_checks, "_WARNED", [])
    torch.manual_seed(0)
    vae = VAE(6, z_dim=2, hidden=[8])
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), JitTrace_ELBO())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        svi.step(_binary(5, 6, 0))
    ours = [w for w in caught if issubclass(w.category, TrainingWarning)]
    assert [w.filename for w in ours] == [__file__]
