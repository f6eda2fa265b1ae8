"""fit refuses an enumerated global site whose plate has as many elements as a micro-batch has rows, before it sets
the run up (hybridpgm/infer/split_refusal.py with row_probe.py).

Before, ``c`` in a plate of 1 element on micro-batches of 1 row was taken for a latent of the rows: neither the early
check nor the step refused it, and ``accumulate=2`` summed it out once per micro-batch (another model, silently).
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO
from pyro.nn import PyroModule, PyroParam, pyro_method

from hybridpgm import SVIObjective, fit
from hybridpgm.errors import ConfigError
from hybridpgm.train import Callback


class GlobalMixture(PyroModule):
    """One global component ``c`` (in a plate ``k`` of 1, enumerated) for every row's ``x ~ N(locs[c], 1)``."""

    def __init__(self):
        super().__init__()
        self.locs = PyroParam(torch.tensor([-1.0, 1.0]))

    @pyro_method
    def model(self, x):
        with pyro.plate("k", 1, dim=-2):
            c = pyro.sample("c", dist.Categorical(torch.tensor([0.3, 0.7])), infer={"enumerate": "parallel"})
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("x", dist.Normal(self.locs[c], 1.0), obs=x)

    @pyro_method
    def guide(self, x):
        pass


def test_an_enumerated_global_site_in_a_plate_of_the_micro_batch_size_is_refused_before_the_run():
    m = GlobalMixture()
    objective = SVIObjective(m.model, m.guide, TraceEnum_ELBO(max_plate_nesting=2))
    x = torch.tensor([0.5, -0.2, 1.5, 0.3])
    starts = []
    callback = type("Started", (Callback,), {"on_fit_start": lambda self, *a, **k: starts.append(1)})()
    with pytest.raises(ConfigError, match=r"the enumerated site 'c' lies outside the batch's plate"):
        fit(objective, x, epochs=1, batch_size=2, accumulate=2, progress=False, seed=0, callbacks=[callback])
    assert starts == []  # before fit set the run up
    fit(SVIObjective(m.model, m.guide, TraceEnum_ELBO(max_plate_nesting=2)), x, epochs=1, batch_size=2,
        progress=False, seed=0)  # accumulate=1: trained


class FeaturePlateRegression(PyroModule):
    """``w`` drawn in a plate of 3 features outside the data plate: global, with as many elements as a micro-batch
    of 3 rows (``accumulate=3`` on batches of 8: 3 + 3 + 2)."""

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
            pyro.sample("w", dist.Normal(self.loc, 1.0))


def test_iwae_with_a_global_latent_in_a_plate_of_the_micro_batch_size_is_refused_before_the_run():
    """Before, the early check had the size rule alone: the plate of 3 features passed for the rows', and the step
    refused ``w`` (told global by the doubled rows) after ``on_fit_start``."""
    from hybridpgm.infer import IWAE
    from tests.infer.global_share_cases import regression

    m = FeaturePlateRegression()
    starts = []
    callback = type("Started", (Callback,), {"on_fit_start": lambda self, *a, **k: starts.append(1)})()
    with pytest.raises(ConfigError, match=r"SVIObjective with IWAE: the latent site\(s\) \['w'\]"):
        fit(SVIObjective(m.model, m.guide, IWAE(num_particles=2)), regression(16), epochs=1, batch_size=8,
            accumulate=3, progress=False, seed=0, callbacks=[callback])
    assert starts == []  # before fit set the run up
