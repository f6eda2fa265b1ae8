"""``fit`` refuses the caller's context that would reach every step (:mod:`hybridpgm.train.callers_context`).

Found by an audit: inside the caller's ``torch.autocast`` every step reused the weight casts of the first (a
one-weight loss ``(w - 2)^2`` went from 0 to 12 in 30 SGD steps, its history 4.0 throughout); under
``torch.no_grad()`` a Bayes net's ``TraceEnum_ELBO`` raised Pyro's raw "ELBO is cannot be differentiated" while an
RBM trained; Pyro handlers around ``fit`` scaled its losses and gradients (``poutine.scale(0.5)``) or broke the
step with Pyro's raw errors (``poutine.trace``, ``poutine.condition``).
"""

from __future__ import annotations

import contextlib
import functools

import pyro
import pyro.poutine as poutine
import pytest
import torch

import hybridpgm
from hybridpgm.errors import ConfigError
from tests.graphs.bn_helpers import neural_child_net, neural_child_training

SGD = functools.partial(torch.optim.SGD, lr=0.1)
X, Y = torch.ones(8, 1), torch.full((8, 1), 2.0)


class OneWeight:
    """The loss ``(w x - y)^2`` of one weight ``w``, started at 0: at ``x = 1, y = 2`` its minimum is ``w = 2``."""

    def __init__(self):
        self.module = torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.module.weight.zero_()

    def players(self):
        return {"w": [self.module.weight]}

    def loss(self, player, batch):
        x, y = batch
        return ((self.module(x).float() - y) ** 2).mean()


def _fit_one_weight(precision=None, **kwargs):
    objective = OneWeight()
    result = hybridpgm.fit(objective, (X, Y), batch_size=8, max_steps=30, precision=precision, optim=SGD,
                           progress=False, seed=0, device="cpu", **kwargs)
    return objective.module.weight.detach().clone(), result


def _weight_after_refusal(context, precision=None):
    objective = OneWeight()
    with context, pytest.raises(ConfigError) as raised:
        hybridpgm.fit(objective, (X, Y), batch_size=8, max_steps=30, precision=precision, optim=SGD,
                      progress=False, seed=0, device="cpu")
    assert objective.module.weight.item() == 0.0  # refused before any step
    return str(raised.value)


@pytest.mark.parametrize("precision", [None, "bf16"])
def test_fit_inside_the_caller_s_autocast_is_refused(precision):
    message = _weight_after_refusal(torch.autocast("cpu", dtype=torch.bfloat16), precision)
    assert "inside torch.autocast (cpu, torch.bfloat16)" in message and "precision='bf16'" in message


def test_a_16_bit_fit_inside_a_disabled_autocast_region_is_refused():
    message = _weight_after_refusal(torch.autocast("cpu", enabled=False), "bf16")
    assert "fit(precision='bf16') is called inside a torch.autocast region (enabled=False)" in message


def test_a_full_precision_fit_inside_a_disabled_autocast_region_trains_as_outside():
    plain, _ = _fit_one_weight()
    with torch.autocast("cpu", enabled=False):
        inside, _ = _fit_one_weight()
    assert torch.equal(inside, plain) and abs(plain.item() - 2.0) < 1e-2


def _bayes_net_objective():
    return neural_child_training(neural_child_net())


def _rbm_objective():
    torch.manual_seed(0)
    data = torch.bernoulli(torch.full((16, 6), 0.4), generator=torch.Generator().manual_seed(1))
    return hybridpgm.ContrastiveDivergence(hybridpgm.RBM(6, 3), 1), data


GRAD_OFF = {"no_grad": (torch.no_grad, r"under torch\.no_grad\(\)"),
            "set_grad_enabled": (lambda: torch.set_grad_enabled(False), r"under torch\.no_grad\(\) \(or torch\.set"),
            "inference_mode": (torch.inference_mode, r"under torch\.inference_mode\(\)")}


@pytest.mark.parametrize("make", [_bayes_net_objective, _rbm_objective], ids=["bayes_net", "rbm"])
@pytest.mark.parametrize("mode", list(GRAD_OFF))
def test_fit_with_autograd_off_is_refused_for_every_objective(make, mode):
    objective, data = make()
    before = [p.detach().clone() for p in objective.module.parameters()]
    context, match = GRAD_OFF[mode]
    with context(), pytest.raises(ConfigError, match=match):
        hybridpgm.fit(objective, data, batch_size=3, max_steps=2, progress=False, seed=0, device="cpu")
    assert torch.is_grad_enabled()
    assert all(torch.equal(p, q) for p, q in zip(objective.module.parameters(), before))


HANDLERS = {"scale": (lambda: poutine.scale(scale=0.5), r"\(ScaleMessenger; outermost first\)"),
            "trace": (lambda: poutine.trace(), r"\(TraceMessenger; outermost first\)"),
            "condition": (lambda: poutine.condition(data={"c": torch.zeros(3)}), r"\(ConditionMessenger;"),
            "plate in block": (lambda: _nested(poutine.block(), pyro.plate("rows", 3)),
                               r"\(BlockMessenger, plate 'rows'; outermost first\)")}


@contextlib.contextmanager
def _nested(*contexts):
    with contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context)
        yield


@pytest.mark.parametrize("handler", list(HANDLERS))
def test_fit_inside_pyro_handlers_is_refused_naming_them(handler):
    objective, data = _bayes_net_objective()
    make, match = HANDLERS[handler]
    with make(), pytest.raises(ConfigError, match=r"fit is called inside Pyro effect handlers " + match):
        hybridpgm.fit(objective, data, batch_size=3, max_steps=2, progress=False, seed=0, device="cpu")
    from pyro.poutine.runtime import _PYRO_STACK
    assert len(_PYRO_STACK) == 0


def test_pyro_settings_that_are_not_handlers_and_a_nested_fit_are_accepted():
    """``pyro.validation_enabled`` and a param store scope are no handlers; a ``fit`` started from a callback of
    another ``fit`` finds none of the outer one's handlers, autocast regions or grad mode left on."""
    plain, _ = _fit_one_weight()
    with pyro.validation_enabled(True), pyro.get_param_store().scope():
        inside, _ = _fit_one_weight()
    assert torch.equal(inside, plain)

    nested = []

    class FitAgain:
        def on_step_end(self, info):
            if not nested:
                nested.append(_fit_one_weight()[0])

    objective, data = _bayes_net_objective()
    hybridpgm.fit(objective, data, batch_size=3, max_steps=2, progress=False, seed=0, device="cpu",
                  precision="bf16", callbacks=[FitAgain()])
    assert len(nested) == 1 and torch.equal(nested[0], plain)
