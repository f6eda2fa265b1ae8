"""``MarkovNet.model`` inside a plate of the caller's at dim ``-1`` joins it (:mod:`hybridpgm.graphs.mrf_pyro_model`).

HEAD opened ``pyro.plate(prefix + "data", N)`` with no ``dim`` whenever the values or the context had rows: inside
a caller's plate at dim ``-1`` it took dim ``-2``, a second plate over the same rows.  With ``max_plate_nesting=1``
Pyro's raw "Shape mismatch ... dim -2, 4 vs 3"; with 2 every row's factors were summed against every row of the
caller's (a loss of 24.184 where :math:`-\\log p(\\text{observed})` is 6.046).  Joined, the program is the
hand-written one-plate program: its ``TraceEnum_ELBO`` loss and gradients are those of exact enumeration by hand.
"""

import itertools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from hybridpgm.errors import DataError
from hybridpgm.graphs import MarkovNet
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _loss(model, max_plate_nesting=1):
    return TraceEnum_ELBO(max_plate_nesting=max_plate_nesting).differentiable_loss(model, lambda: None)


def _assert_grads(loss, want, params):
    for g, w in zip(torch.autograd.grad(loss, params), torch.autograd.grad(want, params)):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def _param(*shape, seed):
    return torch.nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


def _chain():
    """``a - b - c`` with cards 2, 3, 2 and learnable tables."""
    return MarkovNet({"a": 2, "b": 3, "c": 2}).add_factor("ab", ["a", "b"], _param(2, 3, seed=0)) \
        .add_factor("bc", ["b", "c"], _param(3, 2, seed=1))


@pytest.mark.parametrize("max_plate_nesting", [1, 2])
def test_observed_rows_inside_a_caller_plate_give_the_exact_loss_and_gradients(max_plate_nesting):
    """``a, c`` observed on 4 rows, ``b`` summed out, in the caller's plate ``rows`` of 4:
    ``-sum_n [log sum_b exp(ab[a_n, b] + bc[b, c_n]) - log Z]`` (HEAD: 'Shape mismatch' with
    ``max_plate_nesting=1``; 24.18 for 6.05 with 2)."""
    mrf = _chain()
    a, c = torch.tensor([0, 1, 1, 0]), torch.tensor([1, 1, 0, 0])

    def model():
        with pyro.plate("rows", 4):
            mrf.model({"a": a, "c": c}, prefix="m_")

    ab, bc = mrf.table_potentials.ab, mrf.table_potentials.bc
    log_z = torch.logsumexp((ab[:, :, None] + bc[None]).reshape(-1), 0)
    want = -(torch.logsumexp(ab[a] + bc[:, c].T, -1) - log_z).sum()
    loss = _loss(model, max_plate_nesting)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    _assert_grads(loss, want, [ab, bc])
    tr = pyro.poutine.trace(model).get_trace()
    assert [f.name for f in tr.nodes["m_ab"]["cond_indep_stack"]] == ["rows"]  # no plate of its own
    assert "m_data" not in tr.nodes


@pytest.mark.parametrize("observed", [True, False])
def test_a_decoder_reading_the_variables_in_the_caller_plate_gives_the_exact_loss_and_gradients(observed):
    """``a - b`` a MarkovNet prior (``a`` observed or not), ``x | a, b`` a neural decoder's Bernoulli in the same
    plate: ``-sum_n log sum_{a, b} p(a, b) p(x_n | a, b)`` and its gradients in the table and the decoder (HEAD,
    ``a`` observed: 'Shape mismatch'; without values, no plate of its own: exact already, kept)."""
    n, d = 6, 4
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], _param(2, 3, seed=2))
    torch.manual_seed(0)
    dec = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, d)).double()
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 2, (n, d), generator=g).double()
    a_obs = torch.randint(0, 2, (n,), generator=g)

    def decode(a, b):
        a, b = torch.broadcast_tensors(a, b)
        return dec(torch.cat([torch.nn.functional.one_hot(a, 2), torch.nn.functional.one_hot(b, 3)], -1).double())

    def model():
        with pyro.plate("rows", n):
            z = mrf.model({"a": a_obs} if observed else None, prefix="m_")
            pyro.sample("x", dist.Bernoulli(logits=decode(z["a"], z["b"])).to_event(1), obs=x)

    ab = mrf.table_potentials.ab
    log_p = ab - torch.logsumexp(ab.reshape(-1), 0)
    terms = []
    for a, b in itertools.product(range(2), range(3)):
        term = log_p[a, b] + dist.Bernoulli(logits=decode(torch.tensor(a), torch.tensor(b))).log_prob(x).sum(-1)
        terms.append(term.masked_fill(a_obs != a, -torch.inf) if observed else term)
    want = -torch.logsumexp(torch.stack(terms), 0).sum()
    loss = _loss(model)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    _assert_grads(loss, want, [ab, *dec.parameters()])


class _Pairwise(torch.nn.Module):
    """A context ``[..., f]`` to a ``[..., 2, 3]`` log-potential."""

    def __init__(self, f):
        super().__init__()
        self.lin = torch.nn.Linear(f, 6).double()

    def forward(self, u):
        return self.lin(u).reshape(*u.shape[:-1], 2, 3)


def test_a_per_row_enumerated_site_giving_the_context_gives_the_exact_loss_and_gradients():
    """``s_n`` enumerated per row in the caller's plate, the context ``u_n = base_n + shift[s_n]`` of a neural
    potential over ``a - b``, ``a`` observed: ``-sum_n log sum_s p(s) sum_b exp(T(u_n(s))[a_n, b]) / Z(u_n(s))``."""
    n, f = 5, 2
    torch.manual_seed(0)
    pot = _Pairwise(f)
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], pot)
    g = torch.Generator().manual_seed(4)
    base = torch.randn(n, f, generator=g, dtype=torch.float64)
    shift = torch.randn(2, f, generator=g, dtype=torch.float64)
    a, ps = torch.tensor([0, 1, 1, 0, 1]), torch.tensor(0.3, dtype=torch.float64)

    def model():
        with pyro.plate("rows", n, dim=-1):
            s = pyro.sample("s", dist.Bernoulli(ps), infer={"enumerate": "parallel"}).long()
            mrf.model({"a": a}, context=base + shift[s], prefix="m_")

    terms = []
    for s in (0, 1):
        t = pot(base + shift[s])  # [n, 2, 3]
        log_z = torch.logsumexp(t.reshape(n, -1), -1)
        terms.append(torch.log(torch.stack([1 - ps, ps]))[s] + torch.logsumexp(t[range(n), a], -1) - log_z)
    want = -torch.logsumexp(torch.stack(terms), 0).sum()
    loss = _loss(model)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    _assert_grads(loss, want, list(pot.parameters()))


def test_a_caller_plate_of_another_size_is_refused_by_name():
    """A plate of 4 at dim -1 around values of 5 rows, or a context of 3: a ``DataError`` naming the plate, both
    counts and ``dim=-2`` (HEAD: Pyro's raw 'Shape mismatch')."""
    mrf = _chain()

    def model():
        with pyro.plate("groups", 4, dim=-1):
            mrf.model({"a": torch.tensor([0, 1, 1, 0, 1])})

    with pytest.raises(DataError, match=r"MarkovNet.model .*plate 'groups' of 4 rows at dim -1.*give 5 rows.*"
                                        r"pass 4 rows.*dim=-2"):
        _loss(model)
    neural = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], _Pairwise(2))
    with pytest.raises(DataError, match=r"plate 'groups' of 4 rows.*values or context give 3 rows"), \
            pyro.plate("groups", 4):
        neural.model(context=torch.zeros(3, 2, dtype=torch.float64))
