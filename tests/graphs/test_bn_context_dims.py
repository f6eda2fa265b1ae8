"""The refusal of an enumerated one-row context ([K, 1, F], Pyro's [K, 1] enumeration shape one-hot encoded) by
BayesNet.model (DataError) and MarkovNet.model (EvidenceError) gives the remedy, ``ctx.expand(K, N, F)``
(hybridpgm/graphs/bn_context_dims.py ``expand_hint``), and that remedy gives the exact mixture (audit COMPOSE,
finding 3).  The two types stay as documented (BayesNet.model: DataError for its data and inputs; MarkovNet.model:
EvidenceError for values whose rows differ from the tables')."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from hybridpgm.errors import DataError, EvidenceError
from hybridpgm.graphs import BayesNet, MarkovNet, cpd
from hybridpgm.graphs.bn_context_dims import expand_hint

N, PK = 5, torch.tensor([0.2, 0.5, 0.3])
Y = torch.tensor([0, 1, 1, 0, 1])


class _Pot(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 6)

    def forward(self, x):
        return self.lin(x).reshape(x.shape[:-1] + (2, 3))


def _program(net, expand):
    def model():
        with pyro.plate("data", N):
            k = pyro.sample("k", dist.Categorical(PK), infer={"enumerate": "parallel"})
            ctx = torch.nn.functional.one_hot(k, 3).float()  # [K, 1, 3] under enumeration
            if expand:
                ctx = ctx.expand(*ctx.shape[:-2], N, ctx.shape[-1])
            if isinstance(net, BayesNet):
                net.model({"c": Y}, context={"k": ctx})
            else:
                net.model({"a": Y}, context=ctx)
    return model


def _nets():
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("c", cpd.Neural(torch.nn.Linear(3, 2), [], 2, context=["k"]))
    pot = _Pot()
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], pot)
    return bn, mrf, pot


@pytest.mark.parametrize("which, error, call", [
    (0, DataError, "bn.model(data, context={'k': k.expand(3, 5, 3)})"),
    (1, EvidenceError, "mrf.model(values, context=context.expand(3, 5, 3))")])
def test_a_one_row_enumerated_context_is_refused_naming_the_call_to_make(which, error, call):
    """The hint names the call and its argument with the expanded tensor, not a bare ``ctx.expand`` (session 38:
    which argument ``ctx`` was, and where the expanded tensor goes, was left to the reader)."""
    net = _nets()[which]
    with pytest.raises(error, match=r"of shape \(3, 1, 3\) is one row ") as info:
        TraceEnum_ELBO(max_plate_nesting=1).loss(_program(net, expand=False), lambda: None)
    assert f"expand it to them and call {call} " in str(info.value)
    assert "N = 5 the data plate's rows" in str(info.value)


def test_the_expand_gives_the_exact_mixture():
    bn, mrf, pot = _nets()
    eye = torch.eye(3)
    with torch.no_grad():
        log_c = torch.log_softmax(bn.cpds["c"].net(eye), -1)  # [K, 2]: log p(c | k)
        want = -torch.logsumexp(PK.log()[:, None] + log_c[:, Y], 0).sum()
        table = pot(eye)  # [K, 2, 3] log-potentials
        log_pa = torch.logsumexp(table, -1) - torch.logsumexp(table, (-2, -1))[:, None]  # log p(a | k)
        want_mrf = -torch.logsumexp(PK.log()[:, None] + log_pa[:, Y], 0).sum()
    got = TraceEnum_ELBO(max_plate_nesting=1).loss(_program(bn, expand=True), lambda: None)
    got_mrf = TraceEnum_ELBO(max_plate_nesting=1).loss(_program(mrf, expand=True), lambda: None)
    assert got == pytest.approx(float(want), rel=1e-5) and got_mrf == pytest.approx(float(want_mrf), rel=1e-5)


def test_expand_hint_only_for_one_row_beside_more():
    assert "ctx.expand(3, 5, 4)" in expand_hint("context", (3, 1, 4), 5)
    assert "call f(inputs={'my-k': x.expand(3, 5, 4)})" in expand_hint("context", (3, 1, 4), 5,
                                                                      "f(inputs={'my-k': EXPR})", "x")
    assert "ctx.expand(5, 4)" in expand_hint("context", (1, 4), 5)
    assert expand_hint("context", (3, 2, 4), 5) == "" and expand_hint("context", (3, 1, 4), 1) == ""
    assert expand_hint("context", (4,), 5) == ""
