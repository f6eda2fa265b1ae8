"""``MarkovNet.distribution()`` at a Pyro site marked for enumeration: its support, every joint state, is listed
(up to ``MAX_ENUMERATED_STATES``), so ``TraceEnum_ELBO`` sums it out exactly; before, torch's
base class raised a bare ``NotImplementedError`` from inside Pyro."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import MarkovNet, mrf_distribution
from tests.graphs.mrf_brute_force import assignments

X = torch.tensor([[0.3, -1.2, 2.0, 0.5], [1.1, 0.4, -0.3, 0.0], [-0.7, 0.9, 1.5, -2.0]], dtype=torch.float64)


def _mrf():
    """A loop a - b - c - d - a of cardinalities 2, 3, 1, 3 (a variable of one state too) with learnable float64
    tables of a batch of 3 rows; the parameters are ``mrf.tables_``."""
    mrf = MarkovNet({"a": 2, "b": 3, "c": 1, "d": 3})
    g = torch.Generator().manual_seed(8)
    mrf.tables_ = []
    for scope in ("ab", "bc", "cd", "da", "b"):
        table = torch.nn.Parameter(torch.randn(3, *(mrf.cards[v] for v in scope), generator=g, dtype=torch.float64))
        mrf.add_factor(scope, list(scope), table)
        mrf.tables_.append(table)
    return mrf


def _evidence(mrf):
    a, b = mrf.variables[:2]
    return {a: torch.tensor([-1, 0, 1]), b: torch.tensor([2, -1, -1])}


def _emission(z):
    return dist.Normal(0.8 * z.double() - 0.5, 1.0).to_event(1)


def _brute_loss(mrf, evidence):
    """``-sum_n log sum_z p(z | e_n) p(x_n | z)`` by enumeration."""
    values, rows = assignments(mrf, 1)
    scores = mrf.score(values).expand(rows.shape[0], 3)  # [M, 3]
    for v, val in evidence.items():
        scores = scores.masked_fill((values[v] != val) & (val >= 0), -math.inf)
    log_p = scores - scores.logsumexp(0)
    log_lik = _emission(rows[:, None, :]).log_prob(X)  # [M, 3]
    return -(log_p + log_lik).logsumexp(0).sum()


def test_enumerate_support_lists_every_joint_state_in_product_order():
    mrf = _mrf()
    d = mrf.distribution(_evidence(mrf))
    rows = torch.tensor(list(itertools.product(*[range(mrf.cards[v]) for v in mrf.variables])))
    values = d.enumerate_support(expand=False)
    assert values.shape == (rows.shape[0], 1, 4) and values.dtype == torch.long
    assert torch.equal(values[:, 0], rows)
    assert torch.equal(d.enumerate_support(), rows[:, None, :].expand(-1, 3, -1))
    assert torch.allclose(d.log_prob(values).exp().sum(0), torch.ones(3, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("with_evidence", [False, True])
def test_trace_enum_elbo_sums_an_enumerated_site_out_as_brute_force(with_evidence):
    """Before: NotImplementedError from torch's Distribution.enumerate_support.  Now the loss and its gradients
    in the tables are brute force's, with and without per-row evidence, inside a plate."""
    mrf = _mrf()
    evidence = _evidence(mrf) if with_evidence else None

    def model():
        with pyro.plate("rows", 3):
            z = pyro.sample("z", mrf.distribution(evidence), infer={"enumerate": "parallel"})
            pyro.sample("x", _emission(z), obs=X)

    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda: None)
    want = _brute_loss(mrf, evidence or {})
    assert torch.allclose(loss, want, rtol=0, atol=1e-10)
    params = mrf.tables_
    got_grads = torch.autograd.grad(loss, params)
    want_grads = torch.autograd.grad(want, params)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-10) for a, b in zip(got_grads, want_grads))


def test_a_downstream_enumerated_site_reading_the_state():
    """An enumerated Categorical reading the MRF's state: TraceEnum_ELBO's loss is brute force's over both."""
    mrf = _mrf()
    weights = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.tensor([1.0, -0.5, 2.5], dtype=torch.float64)

    @config_enumerate
    def model():
        with pyro.plate("rows", 3):
            z = pyro.sample("z", mrf.distribution(), infer={"enumerate": "parallel"})
            c = pyro.sample("c", dist.Categorical(logits=z.double() @ weights))
            pyro.sample("y", dist.Normal(2.0 * c.double() - 0.5, 1.0), obs=y)

    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda: None)
    values, rows = assignments(mrf, 1)
    log_p = mrf.score(values).expand(rows.shape[0], 3)
    log_p = log_p - log_p.logsumexp(0)  # [M, 3]
    log_c = (rows.double() @ weights).log_softmax(-1)  # [M, 2]
    log_y = dist.Normal(2.0 * torch.arange(2.0, dtype=torch.float64)[:, None] - 0.5, 1.0).log_prob(y)  # [2, 3]
    joint = log_p[:, None, :] + log_c[:, :, None] + log_y[None]  # [M, 2, 3]
    assert torch.allclose(loss, -joint.logsumexp((0, 1)).sum(), rtol=0, atol=1e-10)


def test_more_states_than_the_limit_is_a_named_model_spec_error(monkeypatch):
    mrf = _mrf()  # 2 * 3 * 1 * 3 = 18 joint states
    monkeypatch.setattr(mrf_distribution, "MAX_ENUMERATED_STATES", 17)

    def model():
        with pyro.plate("rows", 3):
            pyro.sample("z", mrf.distribution(), infer={"enumerate": "parallel"})

    with pytest.raises(ModelSpecError, match=r"cannot enumerate its 18 joint states \(2 x 3 x 1 x 3; .* = 17\).*"
                                             r"mrf\.model"):
        TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda: None)
    monkeypatch.setattr(mrf_distribution, "MAX_ENUMERATED_STATES", 18)
    assert mrf.distribution().enumerate_support().shape == (18, 3, 4)


def test_config_enumerate_still_leaves_the_site_sampled():
    """``has_enumerate_support`` stays False: only a site marked by hand is enumerated."""
    mrf = _mrf()
    d = mrf.distribution()
    assert d.has_enumerate_support is False

    @config_enumerate
    def model():
        with pyro.plate("rows", 3):
            pyro.sample("z", mrf.distribution())

    site = pyro.poutine.trace(model).get_trace().nodes["z"]
    assert "enumerate" not in site["infer"] and site["value"].shape == (3, 4)
