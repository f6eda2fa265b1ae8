"""fit(accumulate=M) trains a global latent with as many elements as a micro-batch has rows as one unsplit batch
(hybridpgm/infer/row_probe.py, global_share.py).

Before, ``w`` of shape ``[3]`` on the first micro-batch of ``accumulate=3`` on batches of 8 (3 + 3 + 2 rows) was
taken for a latent of the rows (a dimension of the batch's size): not scaled by the share, its prior counted once
per micro-batch, 0.080 away from ``accumulate=1`` after 3 epochs; a plate of 3 features alike.
"""

import functools

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam, pyro_method

from hybridpgm import SVIObjective, fit
from tests.infer.global_share_cases import fit_regression, regression


def test_accumulate_trains_a_global_latent_of_the_micro_batch_size_as_one_batch():
    one = fit_regression(8)
    torch.testing.assert_close(fit_regression(8, 3), one, rtol=0, atol=1e-6)


class FeaturePlateRegression(PyroModule):
    """``w`` drawn in a plate of 3 features (dim -1) outside the data plate (dim -1 too, entered after it)."""

    def __init__(self):
        super().__init__()
        self.loc = PyroParam(torch.zeros(3))

    @pyro_method
    def model(self, x, y):
        with pyro.plate("features", 3):
            w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)

    @pyro_method
    def guide(self, x, y):
        with pyro.plate("features", 3):
            pyro.sample("w", dist.Delta(self.loc))


def fitted(module_class, accumulate):
    m = module_class()
    fit(SVIObjective(m.model, m.guide), regression(32), epochs=3, batch_size=8, accumulate=accumulate,
        optim=functools.partial(torch.optim.SGD, lr=0.05), progress=False, seed=0)
    return m.loc.detach().clone()


def test_a_global_latent_in_a_plate_of_the_micro_batch_size_counts_once_per_update():
    torch.testing.assert_close(fitted(FeaturePlateRegression, 3), fitted(FeaturePlateRegression, 1), rtol=0, atol=1e-6)


class OneWeightRegression(PyroModule):
    """``w ~ N(0, 1)^1`` on the first feature: a global latent of one element, as many as a micro-batch of 1 row."""

    def __init__(self):
        super().__init__()
        self.loc = PyroParam(torch.zeros(1))

    @pyro_method
    def model(self, x, y):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(x[:, :1] @ w, 0.5), obs=y)

    @pyro_method
    def guide(self, x, y):
        pyro.sample("w", dist.Delta(self.loc).to_event(1))


def test_micro_batches_of_one_row_count_a_one_element_global_latent_once_per_update():
    """Batches of 8, ``accumulate=8``: every micro-batch has 1 row, and ``w`` 1 element."""
    torch.testing.assert_close(fitted(OneWeightRegression, 8), fitted(OneWeightRegression, 1), rtol=0, atol=1e-6)
