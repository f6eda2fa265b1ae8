"""SigmoidBeliefNet's evaluation methods run their Pyro programs isolated from the caller's effect handlers
(hybridpgm/generative/sbn.py with hybridpgm/handler_scope.py)."""

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO

from hybridpgm.generative import SigmoidBeliefNet

X = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])

HANDLERS = [
    lambda: poutine.scale(scale=5.0),
    lambda: poutine.condition(data={"x": torch.ones(3, 4), "h1": torch.zeros(3, 2)}),
    lambda: pyro.plate("rows", 3, dim=-1),
    lambda: pyro.plate("particles", 2, dim=-2),
    lambda: poutine.trace(),
]
IDS = ["scale", "condition", "user_plate", "outer_plate", "trace"]


def _sbn():
    torch.manual_seed(0)
    return SigmoidBeliefNet([4, 2])


def _sbn_sites(trace):
    return {"data", "x", "h1", "h2"} & set(trace.nodes)


@pytest.mark.parametrize("handler", HANDLERS, ids=IDS)
def test_exact_log_likelihood_is_the_same_under_any_handler(handler):
    sbn = _sbn()
    plain = sbn.exact_log_likelihood(X)
    with poutine.trace() as outer, handler():
        got = sbn.exact_log_likelihood(X)
    torch.testing.assert_close(got, plain)
    assert not _sbn_sites(outer.trace)


@pytest.mark.parametrize("handler", HANDLERS, ids=IDS)
def test_log_likelihood_is_the_same_under_any_handler(handler):
    sbn = _sbn()
    pyro.set_rng_seed(1)
    plain = sbn.log_likelihood(X, num_samples=20)
    pyro.set_rng_seed(1)
    with poutine.trace() as outer, handler():
        got = sbn.log_likelihood(X, num_samples=20)
    torch.testing.assert_close(got, plain)
    assert not _sbn_sites(outer.trace)


@pytest.mark.parametrize("handler", HANDLERS, ids=IDS)
def test_sample_is_a_prior_draw_under_any_handler(handler):
    sbn = _sbn()
    pyro.set_rng_seed(2)
    plain = sbn.sample(3)
    pyro.set_rng_seed(2)
    with poutine.trace() as outer, handler():
        got = sbn.sample(3)
    torch.testing.assert_close(got, plain)
    assert not (got == 1).all()  # not the conditioned value
    assert not _sbn_sites(outer.trace)


def test_exact_log_likelihood_as_a_factor_of_a_user_model():
    """Before: the enumerated sites leaked into the model's trace ('invalid log_prob shape' at site 'h1')."""
    sbn = _sbn()
    value = sbn.exact_log_likelihood(X).sum()

    def model():
        pyro.factor("ll", sbn.exact_log_likelihood(X).sum())

    trace = poutine.trace(model).get_trace()
    assert [n for n, s in trace.nodes.items() if s["type"] == "sample"] == ["ll"]
    assert Trace_ELBO().loss(model, lambda: None) == pytest.approx(-value.item(), rel=1e-6)


def test_exact_log_likelihood_per_row_inside_a_user_plate():
    sbn = _sbn()
    plain = sbn.exact_log_likelihood(X)

    def model():
        with pyro.plate("rows", 3, dim=-1):
            pyro.factor("ll", sbn.exact_log_likelihood(X))

    assert Trace_ELBO().loss(model, lambda: None) == pytest.approx(-float(plain.sum()), rel=1e-6)


def test_a_factor_trains_the_network_when_the_model_registers_it():
    """The isolated parameters reach SVI through pyro.module, as the handler_scope docs say."""
    sbn = _sbn()

    def model():
        pyro.module("sbn", sbn)
        pyro.factor("ll", sbn.exact_log_likelihood(X).sum())

    before = float(sbn.exact_log_likelihood(X).sum())
    pyro.clear_param_store()
    svi = pyro.infer.SVI(model, lambda: None, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(20):
        svi.step()
    pyro.clear_param_store()
    assert float(sbn.exact_log_likelihood(X).sum()) > before + 0.5
