"""SVIObjective(per_example=True): sites outside the batch's plate count once per update of fit, whatever
``accumulate`` and the number of ranks (hybridpgm/infer/global_share.py).

Before, the prior of a global latent counted once per micro-batch: ``accumulate=2`` trained other weights than
``accumulate=1`` on the same batches (0.041 apart after 3 epochs).  The 2-rank case is in
tests/train/test_distributed.py (mode ``bayes_regression``).
"""

import pyro
import pytest
import torch
from pyro.infer import JitTrace_ELBO, Trace_ELBO

from hybridpgm import SVIObjective
from hybridpgm.infer.global_share import GlobalShare, sites_outside_batch_plates
from hybridpgm.train.update_scope import micro_batch, weighted_per_update
from tests.infer.global_share_cases import BayesRegression, fit_regression, regression


def plain_autograd(batch, n=32, epochs=3):
    """The same SGD on the same batches as fit's, by hand: the loss of a batch is -ELBO / B (in a param-store scope
    of its own, as fit's: a PyroModule's ``loc`` would otherwise meet an earlier run's in Pyro's global store)."""
    m = BayesRegression()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    x, y = regression(n)
    elbo = Trace_ELBO()
    with pyro.get_param_store().scope():
        for epoch in range(epochs):
            order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))  # fit's order for seed 0
            for start in range(0, n, batch):
                rows = order[start:start + batch]
                opt.zero_grad()
                (elbo.differentiable_loss(m.model, m.guide, x[rows], y[rows]) / len(rows)).backward()
                opt.step()
    return m.loc.detach()


@pytest.mark.parametrize("accumulate", [2, 4])
def test_accumulate_trains_a_global_latent_as_one_batch(accumulate):
    one = fit_regression(8)
    torch.testing.assert_close(one, plain_autograd(8), rtol=0, atol=1e-6)
    torch.testing.assert_close(fit_regression(8, accumulate), one, rtol=0, atol=1e-6)


def test_a_short_last_batch_and_its_micro_batches_match_under_the_jit():
    """31 rows in batches of 8: the last batch of 7 splits into 4 + 3, a micro-batch of the shape of the full
    batches' but another share (4/7, not 1/2): a JIT trace keyed by shape alone would replay the scale 1/2."""
    eager = fit_regression(8, 1, Trace_ELBO(), n=31)
    torch.testing.assert_close(eager, plain_autograd(8, n=31), rtol=0, atol=1e-6)
    torch.testing.assert_close(fit_regression(8, 2, Trace_ELBO(), n=31), eager, rtol=0, atol=1e-6)
    torch.testing.assert_close(fit_regression(8, 2, JitTrace_ELBO(), n=31), eager, rtol=0, atol=1e-5)


def test_the_global_sites_are_those_in_no_plate_of_the_batch_size():
    m = BayesRegression()
    x, y = regression(6)
    guide = pyro.poutine.trace(m.guide).get_trace(x, y)
    model = pyro.poutine.trace(pyro.poutine.replay(m.model, trace=guide)).get_trace(x, y)
    assert sites_outside_batch_plates((guide, model), 6) == {"w"}
    assert sites_outside_batch_plates((guide, model), 5) == {"w"}  # an observed site is never global


def test_the_share_scales_global_sites_only_and_not_those_a_model_weights_itself():
    def program():
        pyro.sample("g", pyro.distributions.Normal(0.0, 1.0), obs=torch.tensor(0.5))
        with weighted_per_update():
            pyro.sample("own", pyro.distributions.Normal(0.0, 1.0), obs=torch.tensor(0.5))
        with pyro.plate("data", 3):
            pyro.sample("y", pyro.distributions.Normal(0.0, 1.0), obs=torch.zeros(3))

    with GlobalShare(frozenset({"g", "own"}), 0.25):
        trace = pyro.poutine.trace(program).get_trace()
    assert [trace.nodes[name]["scale"] for name in ("g", "own", "y")] == [0.25, 1.0, 1.0]


def test_an_unsplit_batch_and_a_model_without_global_sites_get_no_handler():
    m = BayesRegression()
    objective = SVIObjective(m.model, m.guide)
    x, y = regression(8)
    objective.loss("elbo", (x, y))
    assert objective._global_sites == {"w"}
    with micro_batch(1.0):
        assert not isinstance(objective._global_share(), GlobalShare)
    with micro_batch(0.5):
        assert isinstance(objective._global_share(), GlobalShare)
    objective._global_sites = frozenset()
    with micro_batch(0.5):
        assert not isinstance(objective._global_share(), GlobalShare)


class TemperedPriorRegression(BayesRegression):
    """:class:`BayesRegression` whose prior on ``w`` is tempered by ``poutine.scale(0.1)`` (KL annealing)."""

    @pyro.nn.pyro_method
    def model(self, x, y):
        with pyro.poutine.scale(scale=0.1):
            w = pyro.sample("w", pyro.distributions.Normal(0.0, 1.0).expand([3]).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", pyro.distributions.Normal(x @ w, 0.5), obs=y)


def test_the_share_multiplies_a_scale_the_model_gives_a_global_site():
    """A global site's own scale (``poutine.scale``, a plate that is not the batch's) is kept and multiplied by the
    share: 0.1 x 0.5 = 0.05.  A mutation that set the scale to the share survived the suite: every global site of
    the other tests has scale 1."""
    m = TemperedPriorRegression()
    x, y = regression(4)
    with GlobalShare(frozenset({"w"}), 0.5):
        trace = pyro.poutine.trace(m.model).get_trace(x, y)
    assert trace.nodes["w"]["scale"] == pytest.approx(0.05, rel=1e-12)
    assert trace.nodes["y"]["scale"] == 1.0


@pytest.mark.parametrize("accumulate", [2, 4])
def test_accumulate_trains_a_tempered_global_latent_as_one_batch(accumulate):
    """``fit(accumulate=M)`` on a model whose global prior is tempered trains the weights of the unsplit batch (the
    prior counts 0.1 once per update); with the share in place of the scale the prior counted 1 per update."""
    import functools

    from hybridpgm import fit

    def fitted(acc):
        m = TemperedPriorRegression()
        fit(SVIObjective(m.model, m.guide), regression(32), epochs=3, batch_size=8, accumulate=acc,
            optim=functools.partial(torch.optim.SGD, lr=0.05), progress=False, seed=0)
        return m.loc.detach().clone()

    one = fitted(1)
    assert (one - fit_regression(8)).abs().max() > 1e-3  # the tempering shows in the weights
    torch.testing.assert_close(fitted(accumulate), one, rtol=0, atol=1e-6)
