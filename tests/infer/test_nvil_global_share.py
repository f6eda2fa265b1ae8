"""NVIL(per_example=True) counts a global latent's prior and guide terms once per update of fit, whatever
``accumulate`` (hybridpgm/infer/nvil.py, ModelGuideObjective.global_share, hybridpgm/infer/global_share.py).

Before, NVIL did not apply the share that SVIObjective applies: each micro-batch counted the global terms once,
``accumulate=2`` trained weights 0.039 away from ``accumulate=1`` on the same batches after 3 epochs (0.11 at
``accumulate=4``; 1.2e-7 now).  A batch that is not split, on one process, keeps the direct path (no handler):
bit for bit the loss of a hand-written loop.
"""

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam, pyro_method

from hybridpgm import fit
from hybridpgm.infer import NVIL
from hybridpgm.infer import global_share
from tests.infer.global_share_cases import regression


class GlobalAndLocal(PyroModule):
    """``w ~ N(0, 1)^3`` outside the plate ``data`` (guide: a delta at ``loc``); per row a latent ``z`` (guide:
    ``Bernoulli(sigmoid(enc(x)))``, the score-function site with NVIL's baseline, or a delta at ``enc(x)``) and
    ``y ~ N(x w + z, 0.5)``."""

    def __init__(self, local="bernoulli"):
        super().__init__()
        self.local = local
        self.loc = PyroParam(torch.zeros(3))
        self.enc = torch.nn.Linear(3, 1)
        self.layer_sizes = [3]

    @pyro_method
    def model(self, x, y):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        with pyro.plate("data", x.shape[0]):
            prior = dist.Bernoulli(0.5) if self.local == "bernoulli" else dist.Normal(0.0, 1.0)
            z = pyro.sample("z", prior)
            pyro.sample("y", dist.Normal(x @ w + z, 0.5), obs=y)

    @pyro_method
    def guide(self, x, y):
        pyro.sample("w", dist.Delta(self.loc).to_event(1))
        with pyro.plate("data", x.shape[0]):
            out = self.enc(x).squeeze(-1)
            pyro.sample("z", dist.Bernoulli(logits=out) if self.local == "bernoulli" else dist.Delta(out))

    def model_parameters(self):
        return []

    def guide_parameters(self):
        return [self.loc, *self.enc.parameters()]


def _objective(local):
    torch.manual_seed(0)  # the encoder's and the baselines' initial weights
    m = GlobalAndLocal(local)
    return m, NVIL(m.model, m.guide, sites=["z"], input_dim=3, hidden_dim=4)


def _trained(accumulate, local="bernoulli", n=32, epochs=3):
    """Every parameter (the guide's and the baselines') after ``epochs`` of SGD on :func:`regression`."""
    m, objective = _objective(local)
    fit(objective, regression(n), epochs=epochs, batch_size=8, accumulate=accumulate,
        optim=functools.partial(torch.optim.SGD, lr=0.05), progress=False, seed=0)
    return [p.detach().clone() for p in objective.module.parameters()]


@pytest.mark.parametrize("local", ["bernoulli", "delta"])
@pytest.mark.parametrize("accumulate", [2, 4])
def test_accumulate_trains_a_global_latent_as_one_batch(accumulate, local):
    """The same batches, the same draws of the rows' z (drawn row by row from one stream), the baselines' running
    statistics pooled over the update: the parameters after 3 epochs agree to float rounding."""
    one = _trained(1, local)
    split = _trained(accumulate, local)
    assert all(torch.isfinite(a).all() for a in one)
    for a, b in zip(split, one):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_an_unsplit_batch_keeps_the_direct_path_bit_for_bit(monkeypatch):
    """accumulate=1 on one process builds no handler, and its fit is bit for bit a hand-written loop over fit's
    batches (the deterministic delta model: no draws to line up)."""
    monkeypatch.setattr(global_share, "GlobalShare", _refused)
    fitted = _trained(1, "delta")
    m, objective = _objective("delta")
    params = objective.players()["elbo"]
    opt = torch.optim.SGD(params, lr=0.05)
    x, y = regression(32)
    with pyro.get_param_store().scope():
        for epoch in range(3):
            order = torch.randperm(32, generator=torch.Generator().manual_seed(epoch))  # fit's order for seed 0
            for start in range(0, 32, 8):
                rows = order[start:start + 8]
                opt.zero_grad()
                objective.loss("elbo", (x[rows], y[rows])).backward()
                opt.step()
    for a, b in zip(fitted, objective.module.parameters()):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)


def test_a_split_batch_scales_the_global_site_by_its_share(monkeypatch):
    """Under accumulate=2 every micro-batch's loss is computed inside GlobalShare({"w"}, 1/2)."""
    seen = []
    original = global_share.GlobalShare

    def recording(names, share):
        seen.append((set(names), share))
        return original(names, share)

    monkeypatch.setattr(global_share, "GlobalShare", recording)
    _trained(2, "delta", epochs=1)
    assert seen and all(entry == ({"w"}, 0.5) for entry in seen)


def _refused(names, share):
    raise AssertionError(f"GlobalShare({set(names)}, {share}) built for an unsplit batch")
