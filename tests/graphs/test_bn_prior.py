"""BayesNet Dirichlet priors (``Table(prior=alpha)``) under fit's gradient accumulation.

Without ``num_data`` the model adds the whole :math:`\\log \\mathrm{Dir}(\\theta; \\alpha)` once per call; fit with
``accumulate > 1`` calls it once per micro-batch, so the prior counted ``accumulate`` times per optimizer step and
the fitted table moved away from the MAP estimate (``p(a=F)`` 0.4773 -> 0.5893 on the data below).  That is now
refused with a ConfigError naming the nodes and ``num_data``; with ``num_data`` accumulation is exact.
"""

import functools

import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

import hybridpgm
from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import SVIObjective
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

ALPHA = torch.tensor([5.0, 1.0])


def _data() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 2, (40, 2)).float()  # 17 of 40 zeros in column a


def _bn(prior=ALPHA) -> BayesNet:
    bn = BayesNet()
    bn.add("a", cpd.Table([0.5, 0.5], prior=prior), states=["F", "T"])
    bn.add("b", cpd.Table([[0.5, 0.5], [0.5, 0.5]], ["a"]))
    return bn


def _train(bn: BayesNet, accumulate: int, epochs: int = 40, num_particles: int = 1, **model_kwargs) -> torch.Tensor:
    """``p(a)`` after ``fit`` on the 40 rows in one batch of 40, split into ``accumulate`` micro-batches."""
    elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=num_particles)
    objective = SVIObjective(bn.model, bn.guide, elbo, **model_kwargs)
    hybridpgm.fit(objective, _data(), epochs=epochs, batch_size=40, accumulate=accumulate, progress=False, seed=0,
                  optim=functools.partial(torch.optim.Adam, lr=0.05))
    return bn.posterior("a", {}).detach()


def test_prior_without_num_data_under_accumulation_is_refused_naming_the_node_and_num_data():
    """Before, accumulate=4 silently added the prior 4 times per step (p(a=F) 0.5893 after 300 epochs instead
    of the MAP estimate 0.4773 that accumulate=1 and num_data=40 find)."""
    with pytest.raises(ConfigError, match=r"Dirichlet prior of node 'a'.*micro-batch 2 of 4.*pass num_data=N"):
        _train(_bn(), accumulate=4, epochs=1)


def test_prior_with_num_data_is_exact_under_accumulation():
    """With num_data the prior weighs m_i / N per micro-batch: accumulate=4 takes the steps of accumulate=1."""
    one = _train(_bn(), accumulate=1, num_data=40)
    four = _train(_bn(), accumulate=4, num_data=40)
    torch.testing.assert_close(four, one, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(one, torch.tensor([0.5, 0.5]), atol=1e-2)  # it did train


def test_prior_without_num_data_in_one_micro_batch_per_update_counts_once_as_with_num_data():
    """accumulate=1 (and several ELBO particles: several model calls on one micro-batch) is not refused, and
    on a batch holding the whole data set equals num_data=N."""
    reference = _train(_bn(), accumulate=1, num_data=40)
    torch.testing.assert_close(_train(_bn(), accumulate=1), reference, rtol=1e-5, atol=1e-6)
    _train(_bn(), accumulate=1, epochs=2, num_particles=2)


def test_accumulation_without_num_data_is_fine_for_a_network_without_priors():
    one = _train(_bn(prior=None), accumulate=1)
    four = _train(_bn(prior=None), accumulate=4)
    torch.testing.assert_close(four, one, rtol=1e-5, atol=1e-6)


def test_plain_svi_outside_fit_adds_the_whole_prior_once_per_call():
    """Outside fit (no update) nothing changes: weight 1 without num_data, B / N with it, call after call."""
    bn, data = _bn(), _data()
    for _ in range(2):  # two calls on different batches, as two SVI steps would make
        for rows in (data[:10], data[10:]):
            trace = poutine.trace(bn.model).get_trace(rows)
            torch.testing.assert_close(trace.nodes["a_prior"]["fn"].log_factor, bn.cpds["a"].log_prior())
    trace = poutine.trace(bn.model).get_trace(data[:10], num_data=40)
    torch.testing.assert_close(trace.nodes["a_prior"]["fn"].log_factor, bn.cpds["a"].log_prior() / 4)
