"""BayesNetModel: the barren rows of the model's enumerated sites (a missing node with no observed descendant) add
exactly 0 to the gradient (hybridpgm/graphs/bn_barren_rows.py)."""

import functools
import itertools

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, JitTraceEnum_ELBO, TraceEnum_ELBO

import hybridpgm
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import SVIObjective
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _chain(seed: int = 3, dtype=torch.float32) -> BayesNet:
    """``a -> b -> c``, three states each, random tables."""
    g = torch.Generator().manual_seed(seed)

    def table(*shape):
        return torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64) * 2, -1).to(dtype)

    return (BayesNet().add("a", cpd.Table(table(3))).add("b", cpd.Table(table(3, 3), ["a"]))
            .add("c", cpd.Table(table(3, 3), ["b"])))


def _grads(bn, data, elbo=None) -> dict:
    """The gradient of the enumerated loss of ``data`` (``-1`` missing) in each table's logits, by node."""
    elbo = elbo or TraceEnum_ELBO(max_plate_nesting=1)
    loss = elbo.differentiable_loss(bn.model, bn.guide, *bn.split_missing(data))
    logits = [bn.cpds[v].logits for v in bn.nodes]
    return dict(zip(bn.nodes, torch.autograd.grad(loss, logits)))


def _brute_grads(bn32, data) -> dict:
    """The same gradient in float64 by brute force: :math:`-\\sum_n \\log \\sum_{x \\sim e_n} p(x)` over every
    complete assignment ``x`` that agrees with row ``n``'s observed entries, on the float32 tables' values."""
    bn = _chain()
    for v in bn.nodes:
        bn.cpds[v].logits = torch.nn.Parameter(bn32.cpds[v].logits.detach().double())
    rows = torch.tensor(list(itertools.product(range(3), repeat=3)))
    logp = bn.log_prob({v: rows[:, i] for i, v in enumerate(bn.nodes)})
    loss = 0
    for row in data:
        agree = ((rows == row) | (row == -1)).all(1)
        loss = loss - logp[agree].logsumexp(0)
    return dict(zip(bn.nodes, torch.autograd.grad(loss, [bn.cpds[v].logits for v in bn.nodes])))


def test_rows_with_nothing_observed_leave_float32_tables_exactly_as_they_were_under_adam():
    """The likelihood of "nothing observed" is 1 for any tables, its gradient 0; before, the sum over the missing
    entries was 1 only to rounding and Adam made steps of the learning rate out of that noise: here a's float32
    logits moved by up to 0.11 in the 100 steps under fit (a 2-state root [0.3, 0.7] went to [0.235, 0.765] in 200
    steps under plain SVI).  The tables now keep their bits exactly, under fit, plain SVI and the JIT ELBO, float32
    and float64 alike."""
    data = torch.full((8, 3), -1)
    for dtype in (torch.float32, torch.float64):
        bn = _chain(dtype=dtype)
        before = [p.detach().clone() for p in bn.parameters()]
        hybridpgm.fit(SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1)), bn.split_missing(data),
                      epochs=100, batch_size=8, device="cpu", seed=0, progress=False,
                      optim=functools.partial(torch.optim.Adam, lr=0.01))
        for p, p0 in zip(bn.parameters(), before):
            assert torch.equal(p.detach(), p0)
        for elbo in (TraceEnum_ELBO(max_plate_nesting=1), JitTraceEnum_ELBO(max_plate_nesting=1)):
            bn = _chain(dtype=dtype)
            with pyro.get_param_store().scope():
                svi = SVI(bn.model, bn.guide, pyro.optim.Adam({"lr": 0.01}), elbo)
                for _ in range(100):
                    svi.step(*bn.split_missing(data))
            for p, p0 in zip(bn.parameters(), before):
                assert torch.equal(p.detach(), p0)


def test_a_barren_part_of_a_row_gives_its_tables_exactly_zero_gradient_and_the_rest_matches_brute_force():
    """Row 0 leaves the leaf c missing under an observed b (c is barren there), row 2 leaves b and c missing under
    an observed a (both barren), row 3 leaves a missing above an observed b (not barren: it has an observed child);
    c's and b's columns are mixed (sites ``c_unobserved``/``b_unobserved``, barren also in the rows where the node
    is observed).  The table rows that only barren rows reach -- c given b=1 (row 0), c given b=2 and b given a=1
    (row 2) -- get exactly 0 (before: rounding noise); every gradient matches float64 brute force."""
    data = torch.tensor([[0, 1, -1], [2, 0, 1], [1, -1, -1], [-1, 0, 2]])
    bn = _chain()
    grads = _grads(bn, data[:3])  # row 3 (a summed out) reaches b's table given every a
    assert torch.equal(grads["b"][1], torch.zeros(3))
    assert torch.equal(grads["c"][1], torch.zeros(3)) and torch.equal(grads["c"][2], torch.zeros(3))
    grads = _grads(bn, data)
    assert torch.equal(grads["c"][1], torch.zeros(3)) and torch.equal(grads["c"][2], torch.zeros(3))
    reference = _brute_grads(bn, data)
    for v in bn.nodes:
        torch.testing.assert_close(grads[v].double(), reference[v], atol=2e-7, rtol=1e-5)
    assert all(grads[v].abs().max() > 0.1 for v in bn.nodes)  # the observed rows do move every table


def test_a_conditioned_or_replayed_value_is_no_barren_row():
    """A missing node whose value a caller's handler gives (``poutine.condition``, as Gibbs does; a guide's draw)
    is one value, not summed out: its factor keeps its gradient, and its missing parent (b in row 0) has an
    observed child there, so is not barren either.  Conditioning c equals observing it in the data."""
    missing_c = torch.tensor([[0, -1, -1], [2, 0, -1]])
    observed_c = torch.tensor([[0, -1, 2], [2, 0, 1]])
    bn = _chain()
    conditioned = poutine.condition(bn.model, data={"c": observed_c[:, 2]})
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(conditioned, bn.guide, *bn.split_missing(missing_c))
    grads = dict(zip(bn.nodes, torch.autograd.grad(loss, [bn.cpds[v].logits for v in bn.nodes])))
    expected = _grads(bn, observed_c)
    for v in bn.nodes:
        torch.testing.assert_close(grads[v], expected[v])
    assert (grads["c"] != 0).all() and (grads["b"][0] != 0).all()


@pytest.mark.parametrize("observed_b", [True, False])
def test_losses_and_samples_keep_their_values(observed_b):
    """Only gradients change: the loss of a batch with barren rows is the exact -log-evidence (to rounding), and
    ``infer_discrete`` draws the missing entries as before (posterior, then the barren ones from their CPDs)."""
    data = torch.tensor([[0, 1 if observed_b else -1, -1], [-1, -1, -1], [1, -1, 2]])
    bn = _chain()
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(bn.model, bn.guide, *bn.split_missing(data))
    evidence = {v: data[:, i] for i, v in enumerate(bn.nodes)}
    exact = -bn.log_evidence({v: x.float().masked_fill(x < 0, float("nan")) for v, x in evidence.items()}).sum()
    assert loss == pytest.approx(float(exact), rel=1e-6)
    pyro.set_rng_seed(0)
    draws = pyro.infer.infer_discrete(bn.model, first_available_dim=-2)(*bn.split_missing(data.repeat(4000, 1)))
    c_given_b1 = draws["c"][0::3][draws["b"][0::3] == 1]  # row 0: c is barren, drawn from p(c | b=1)
    torch.testing.assert_close(torch.bincount(c_given_b1, minlength=3).double() / len(c_given_b1),
                               bn.cpds["c"].probs[1].double(), atol=0.04, rtol=0)


def test_one_rows_values_read_by_a_site_outside_any_plate_keep_their_gradient():
    """Found by a review: with one row a caller's site outside any plate may read the returned values (they
    broadcast), so a node barren to the network is not barren to the program; its gradient was zeroed.  One row
    is left as it is: the gradient of ``-log p(a=T) - log sum_z p(z | a=T) N(y; mu_z, 1)``."""
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=torch.float64)), states=["F", "T"])
    bn.add("z", cpd.Table(torch.tensor([[0.6, 0.4], [0.2, 0.8]], dtype=torch.float64), ["a"]), states=["F", "T"])
    mu, y = torch.tensor([-1.0, 2.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)

    def model():
        z = bn.model({"a": torch.tensor([1.0])})["z"]
        pyro.sample("y", pyro.distributions.Normal(mu[z], 1.0), obs=y)

    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda: None)
    got = torch.autograd.grad(loss, bn.cpds["z"].logits)[0]
    logits = bn.cpds["z"].logits.detach().clone().requires_grad_()
    like = torch.distributions.Normal(mu, 1.0).log_prob(y).exp()
    exact = -(logits[1].softmax(-1) * like).sum().log()
    want = torch.autograd.grad(exact, logits)[0]
    assert want[1].abs().max() > 0.1  # the gradient the detach zeroed
    torch.testing.assert_close(got, want)
