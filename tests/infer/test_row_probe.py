"""A global latent with as many elements as the micro-batch has rows is global (hybridpgm/infer/row_probe.py).

Before, ``w`` of shape ``[3]`` on the first micro-batch of ``fit(accumulate=3)`` on batches of 8 (3 + 3 + 2 rows) had
a dimension of the batch's size and was taken for a latent of the rows: not scaled by the micro-batch's share, its
prior counted once per micro-batch (0.080 away from ``accumulate=1`` after 3 epochs).  A probe on the rows twice over
tells them apart: a latent of the rows follows them, a global one keeps its shape and its plates.  The trainings
are in tests/infer/test_global_share_rows.py.
"""

import collections

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method

from hybridpgm.infer.global_share import sites_outside_batch_plates
from hybridpgm.infer.row_probe import doubled_rows, probe_doubled
from tests.infer.global_share_cases import BayesRegression, regression


def traces(program_owner, rows):
    x, y = regression(rows)
    guide = pyro.poutine.trace(program_owner.guide).get_trace(x, y)
    model = pyro.poutine.trace(pyro.poutine.replay(program_owner.model, trace=guide)).get_trace(x, y)
    return (guide, model), (x, y)


def test_the_second_probe_tells_the_global_latent_from_a_latent_of_the_rows():
    class LocalLatents(BayesRegression):
        """:class:`BayesRegression` with a latent ``z`` per row (a plate of 3 rows) beside the global ``w``."""

        @pyro_method
        def model(self, x, y):
            w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(0.0, 1.0))
                pyro.sample("y", dist.Normal(x @ w + z, 0.5), obs=y)

        @pyro_method
        def guide(self, x, y):
            pyro.sample("w", dist.Delta(self.loc).to_event(1))
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))

    m = LocalLatents()
    pair, args = traces(m, 3)
    calls = []

    def doubled():
        calls.append(1)
        return probe_doubled(m.model, m.guide, args, {}, 3)

    assert sites_outside_batch_plates(pair, 3) == frozenset()  # the size rule alone: w has 3 elements
    assert sites_outside_batch_plates(pair, 3, doubled) == {"w"}
    assert calls == [1]  # one second probe for the two sites the size rule takes for the rows'


def test_no_second_probe_where_no_site_meets_the_size_rule():
    m = BayesRegression()
    pair, _ = traces(m, 4)
    assert sites_outside_batch_plates(pair, 4, lambda: 1 / 0) == {"w"}


def test_a_program_that_fails_on_the_doubled_rows_keeps_the_size_rule():
    m = BayesRegression()
    pair, _ = traces(m, 3)
    assert sites_outside_batch_plates(pair, 3, lambda: None) == frozenset()


def test_the_rows_are_doubled_leaf_for_leaf_as_split_batch_splits_them():
    Pair = collections.namedtuple("Pair", "x y")
    x = torch.arange(6.0).reshape(3, 2)
    batch = (Pair(x, torch.tensor(2.0)), {"names": ["a", "b", "c"], "k": [1, 2]}, 7)
    out = doubled_rows(batch, 3)
    assert isinstance(out[0], Pair) and torch.equal(out[0].x, torch.cat([x, x])) and out[0].y.item() == 2.0
    assert out[1] == {"names": ["a", "b", "c", "a", "b", "c"], "k": [1, 2]} and out[2] == 7
