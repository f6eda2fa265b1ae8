"""A regulariser outside the batch's plate under fit's micro-batches (hybridpgm/infer/global_share.py,
``global_factor``).

A ``pyro.factor`` outside the plates is taken for the batch's likelihood (a sum over its rows) and counts once per
micro-batch: a regulariser ``G`` of the parameters written with it counts ``M G / B`` per update under
``accumulate = M`` instead of ``G / B`` (measured: the regulariser's pull on ``mu`` 2x and 4x that of one unsplit
batch).  ``global_factor`` marks it as a term of the update: scaled by the micro-batch's share like a global latent,
so that ``accumulate`` trains as one unsplit batch; outside fit it is ``pyro.factor``.
"""

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule, PyroParam, pyro_method

from hybridpgm import SVIObjective, fit
from hybridpgm.infer.global_share import global_factor


class Regularised(PyroModule):
    """``y ~ N(x w, 0.5)`` in the plate, the weights ``w`` a parameter (no latent at all) with a ridge penalty
    ``-lam |w|^2`` outside it, as ``pyro.factor`` (``marked=False``) or ``global_factor``."""

    def __init__(self, marked, lam=2.0, w=(0.0, 0.0, 0.0)):
        super().__init__()
        self.w = PyroParam(torch.tensor(w))
        self.marked, self.lam = marked, lam

    @pyro_method
    def model(self, x, y):
        (global_factor if self.marked else pyro.factor)("ridge", -self.lam * self.w.pow(2).sum())
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(x @ self.w, 0.5), obs=y)

    @pyro_method
    def guide(self, x, y):
        pass


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([2.0, -1.0, 0.5]) + 0.5 * torch.randn(n, generator=g)


def _fit(marked, accumulate, elbo=None):
    m = Regularised(marked)
    fit(SVIObjective(m.model, m.guide, elbo), _data(), epochs=3, batch_size=8, accumulate=accumulate,
        optim=functools.partial(torch.optim.SGD, lr=0.05), progress=False, seed=0)
    return m.w.detach().clone()


@pytest.mark.parametrize("elbo", [None, Trace_ELBO()], ids=["DirectTrace_ELBO", "Trace_ELBO"])
@pytest.mark.parametrize("accumulate", [2, 4])
def test_a_global_factor_counts_once_per_update_under_accumulate(elbo, accumulate):
    torch.testing.assert_close(_fit(True, accumulate, elbo), _fit(True, 1, elbo), rtol=1e-6, atol=1e-6)


def test_a_plain_factor_counts_once_per_micro_batch():
    """The documented behaviour of an unmarked ``pyro.factor`` (it may be the batch's likelihood): under accumulate=2
    the ridge pulls harder than in one unsplit batch (the weights' norm smaller)."""
    one, two = _fit(False, 1), _fit(False, 2)
    torch.testing.assert_close(one, _fit(True, 1))  # unsplit, marked or not: the same model
    assert two.norm() < one.norm() - 1e-3


def test_outside_fit_a_global_factor_is_pyro_factor():
    x, y = _data(8)
    losses = []
    for marked in (True, False):
        m = Regularised(marked, w=(0.5, -0.2, 0.1))
        losses.append(Trace_ELBO().differentiable_loss(m.model, m.guide, x, y))
    assert torch.equal(losses[0], losses[1])
    without = Regularised(True, lam=0.0, w=(0.5, -0.2, 0.1))
    assert losses[0] > Trace_ELBO().differentiable_loss(without.model, without.guide, x, y) + 0.1  # the ridge counts
