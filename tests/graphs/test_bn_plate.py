"""``BayesNet.model`` inside a plate of the caller's at dim ``-1`` joins it (:mod:`hybridpgm.graphs.bn_plate`).

HEAD always opened its own ``pyro.plate(prefix + "data", N, dim=-1)``: a caller's plate around the call collided at
dim ``-1`` (Pyro's raw ``ValueError``), and the caller's per-row sites could only go in a sibling plate, which
Pyro's enumeration reads as independent of the network's rows (a network prior under a neural decoder: loss 30.43
where the exact :math:`-\\log p(x)` is 24.67).  Joined, the program is the hand-written one-plate program: its
``TraceEnum_ELBO`` loss and gradients are those of exact enumeration by hand.
"""

import itertools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _loss(model, *args):
    return TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda *a: None, *args)


def _assert_grads(loss, want, params):
    for g, w in zip(torch.autograd.grad(loss, params), torch.autograd.grad(want, params)):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def _prior_net(name: str) -> BayesNet:
    bn = BayesNet(name=name).add("a", cpd.Table(torch.tensor([0.6, 0.4], dtype=torch.float64), learnable=True))
    return bn.add("b", cpd.Table(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=torch.float64), ["a"],
                                 learnable=True))


def test_a_network_prior_under_a_neural_decoder_gives_the_exact_loss_and_gradients():
    """``a -> b`` a network prior, ``x | a, b`` a neural decoder's Bernoulli, every row's ``a, b`` summed out:
    ``-log p(x) = -sum_n log sum_{a,b} p(a) p(b | a) p(x_n | a, b)`` and its gradients in the tables and the
    decoder (HEAD: the plates collide)."""
    torch.manual_seed(0)
    d, n = 5, 7
    bn = _prior_net("prior")
    dec = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, d)).double()
    x = torch.randint(0, 2, (n, d), generator=torch.Generator().manual_seed(1)).double()

    def decode(a, b):
        a, b = torch.broadcast_tensors(a, b)
        return dec(torch.cat([torch.nn.functional.one_hot(a, 2), torch.nn.functional.one_hot(b, 3)], -1).double())

    def model(x):
        with pyro.plate("rows", x.shape[0]):
            z = bn.model(None, prefix="bn_")
            pyro.sample("x", dist.Bernoulli(logits=decode(z["a"], z["b"])).to_event(1), obs=x)

    la = torch.log_softmax(bn.cpds["a"].logits, -1)
    lb = torch.log_softmax(bn.cpds["b"].logits, -1)
    terms = [la[a] + lb[a, b] + dist.Bernoulli(logits=decode(torch.tensor(a), torch.tensor(b))).log_prob(x).sum(-1)
             for a, b in itertools.product(range(2), range(3))]
    want = -torch.logsumexp(torch.stack(terms), 0).sum()
    loss = _loss(model, x)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    _assert_grads(loss, want, [*bn.parameters(), *dec.parameters()])


def test_a_per_row_enumerated_site_feeding_a_neural_cpd_gives_the_exact_loss_and_gradients():
    """``c_n`` enumerated per row in the caller's plate, the context ``u_n = base_n + shift[c_n]`` of a neural CPD
    ``y | u``: ``-sum_n log sum_c p(c) p(y_n | u_n(c))`` (HEAD, the network outside the plate: 7.596 against
    5.854; inside it the plates collide)."""
    torch.manual_seed(0)
    n, f = 5, 2
    net = torch.nn.Linear(f, 3).double()
    bn = BayesNet(name="head").add("y", cpd.Neural(net, [], 3, context=["u"]))
    g = torch.Generator().manual_seed(2)
    base = torch.randn(n, f, generator=g, dtype=torch.float64)
    shift = torch.randn(2, f, generator=g, dtype=torch.float64)
    y, pc = torch.tensor([0, 1, 2, 1, 0]), torch.tensor(0.3, dtype=torch.float64)

    def model():
        with pyro.plate("rows", n, dim=-1):
            c = pyro.sample("c", dist.Bernoulli(pc), infer={"enumerate": "parallel"}).long()
            bn.model({"y": y}, context={"u": base + shift[c]}, prefix="bn_")

    terms = [torch.log(torch.stack([1 - pc, pc]))[c] + torch.log_softmax(net(base + shift[c]), -1)[range(n), y]
             for c in (0, 1)]
    want = -torch.logsumexp(torch.stack(terms), 0).sum()
    loss = _loss(model)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    _assert_grads(loss, want, list(net.parameters()))


def test_a_caller_plate_of_another_size_is_refused_by_name():
    """A plate of 4 at dim -1 around a network given 5 rows (or ``num_samples=3``): a ``DataError`` naming the
    plate, both counts and ``dim=-2`` (HEAD: Pyro's raw ``ValueError``, the plates collide)."""
    bn = _prior_net("sizes")

    def model():
        with pyro.plate("groups", 4, dim=-1):
            bn.model({"b": torch.tensor([0, 1, 2, 1, 0])})

    with pytest.raises(DataError, match=r"plate 'groups' of 4 rows at dim -1.*give 5 rows.*dim=-2"):
        _loss(model)
    with pytest.raises(DataError, match=r"plate 'groups' of 4 rows.*give 3 rows"), pyro.plate("groups", 4):
        bn.model(None, num_samples=3)


def test_inside_a_caller_plate_the_rows_are_its_size_and_the_network_samples_them():
    """Without data, ``num_samples`` defaults to the plate's size: 4 draws of each node, in the plate."""
    bn = _prior_net("draws")
    tr = pyro.poutine.trace(lambda: _in_plate(4, bn.model)).get_trace()
    assert tr.nodes["a"]["value"].shape == (4,) and tr.nodes["b"]["value"].shape == (4,)
    assert [f.name for f in tr.nodes["b"]["cond_indep_stack"]] == ["rows"]
    assert "data" not in tr.nodes  # no plate of its own


def _in_plate(size, fn, **plate):
    with pyro.plate("rows", size, **plate):
        return fn()


def _prior_table_net(name: str) -> BayesNet:
    return BayesNet(name=name).add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=torch.float64), learnable=True,
                                                  prior=torch.tensor([5.0, 2.0], dtype=torch.float64)))


def test_a_dirichlet_prior_counts_once_in_a_joined_plate():
    """The prior term inside a joined plate is spread over its rows: the loss is the network's own (the rows plus
    one prior term), and in a subsampled plate of ``N`` (no ``num_data``) it is ``N / B`` times the network's own
    loss with ``num_data=N``: the full-data MAP objective, the prior once (HEAD: the plates collide)."""
    bn = _prior_table_net("map")
    a = torch.tensor([0, 1, 1, 0, 1])
    own = _loss(lambda: bn.model({"a": a}))
    joined = _loss(lambda: _in_plate(5, lambda: bn.model({"a": a})))
    assert joined.item() == pytest.approx(own.item(), rel=1e-12)
    own_batch = _loss(lambda: bn.model({"a": a}, num_data=20))
    sub = _loss(lambda: _in_plate(20, lambda: bn.model({"a": a}), subsample=torch.arange(5)))
    assert sub.item() == pytest.approx(4 * own_batch.item(), rel=1e-12)
    log_prior = dist.Dirichlet(torch.tensor([5.0, 2.0], dtype=torch.float64)).log_prob(
        torch.softmax(bn.cpds["a"].logits, -1))
    rows = torch.log_softmax(bn.cpds["a"].logits, -1)[a].sum()
    assert sub.item() == pytest.approx(-(4 * rows + log_prior).item(), rel=1e-12)
