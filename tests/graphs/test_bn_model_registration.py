"""A Bayes net's Pyro program registers each CPD parameter once per call, not once per look-up of a node.

Inside a Pyro method every read of ``bn.cpds`` registered every CPD parameter (``register_module``), and the model
read it about four times per node (its loop, ``columns``, ``cardinality``, the checks): ``6n^2 + 10n`` ``param``
messages per call of a binary chain with data (2,600 at n = 20, for 20 parameters; 1,700 once checked), an SVI
step of 8.5 s at n = 200.  Counted here, never timed.
"""


import pyro
import pytest
import torch
from pyro.infer import SVI, TraceEnum_ELBO

import hybridpgm.module_registration as registration
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)
from tests.param_messages import ParamMessages

N = 20


def _chain(n=N, learnable=True, name="") -> BayesNet:
    bn = BayesNet(name=name).add("x0", cpd.Table([0.3, 0.7], learnable=learnable))
    for i in range(1, n):
        bn.add(f"x{i}", cpd.Table([[0.9, 0.1], [0.2, 0.8]], [f"x{i - 1}"], learnable=learnable))
    return bn


def _data(n=N, rows=8):
    return (torch.rand(rows, n, generator=torch.Generator().manual_seed(0)) < 0.5).long()


@pytest.mark.parametrize("kwargs", [{"data": "full"}, {"data": "missing"}, {"num_samples": 4}])
def test_model_sends_one_param_message_per_cpd_parameter(kwargs):
    """Before: 2,600 messages for the 20 parameters with data on the first call (each parameter 130 times), 1,700
    on the next; 1,380 and 480 without data."""
    bn = _chain()
    x = _data()
    if kwargs.get("data") == "missing":
        x[:, 3] = -1  # a latent column, enumerated
    args = {"num_samples": 4} if "num_samples" in kwargs else {"data": x}
    for _ in range(2):  # the first call also checks the network
        seen = ParamMessages()
        with seen, pyro.poutine.enum(first_available_dim=-2):
            bn.model(**args)
        assert seen.names == {f"cpds$$$x{i}.logits": 1 for i in range(N)}


@pytest.mark.parametrize("learnable", [True, False])
def test_log_prob_and_sample_register_the_cpds_once(monkeypatch, learnable):
    """Their model runs under a handler scope of their own, so the registrations are counted: one per call, the
    tables fixed or learnable (before: 83 for log_prob, each walking all 20 CPDs' modules; 24 for sample)."""
    bn = _chain(learnable=learnable)
    x = _data()
    bn.log_prob(x)  # checked once
    calls = []
    register = registration.register_module
    monkeypatch.setattr(registration, "register_module", lambda name, module: calls.append(name) or
                        register(name, module))
    scores = bn.log_prob(x)
    assert calls == ["cpds"] and scores.shape == (8,)
    calls.clear()
    draws = bn.sample(5)
    assert calls == ["cpds"] and draws["x19"].shape == (5,)


def test_an_svi_step_puts_every_cpd_parameter_in_the_store_and_trains_it():
    """The one registration per call is Pyro's: the store holds each CPD parameter under pyro.module's name, the
    very tensor, and a step of plain SVI moves them all."""
    bn = _chain(4, name="net")
    before = {n: p.detach().clone() for n, p in bn.named_parameters()}
    with pyro.settings.context(module_local_params=False), pyro.get_param_store().scope():
        svi = SVI(bn.model, bn.guide, pyro.optim.SGD({"lr": 0.5}), TraceEnum_ELBO(max_plate_nesting=1))
        svi.step(_data(4))
        store = dict(pyro.get_param_store().items())
    assert sorted(store) == [f"net.cpds$$$x{i}.logits" for i in range(4)]
    assert all(store[f"net.cpds$$$x{i}.logits"] is bn.cpds[f"x{i}"].logits for i in range(4))
    assert all(not torch.equal(p, before[n]) for n, p in bn.named_parameters())
