"""Context inputs under ``pyro.markov``: an HMM whose emission at each step is a BayesNet or a MarkovNet reading the
enumerated hidden state ``z_t`` as its context (``[K, N, F]``, the documented form).  ``pyro.markov`` gives
``z_t`` a local enumeration dim that Pyro's global allocator does not record; :func:`outer_batch_dims` counts it,
so ``TraceEnum_ELBO`` gives the forward algorithm's exact ``-log p(observations)`` (and its gradients)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from hybridpgm.graphs import BayesNet, MarkovNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

K = 3  # hidden states


def _chain(T: int, seed: int):
    """The HMM's initial and transition log-probabilities ``[K]``, ``[K, K]`` (float64)."""
    g = torch.Generator().manual_seed(seed)
    init = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    trans = torch.log_softmax(torch.randn(K, K, generator=g, dtype=torch.float64), -1)
    return init, trans


def _forward(init, trans, emission):
    r"""The forward algorithm's :math:`-\log p(x_{1:T})` for emission log-likelihoods ``emission`` ``[K, T]``."""
    alpha = init + emission[:, 0]
    for t in range(1, emission.shape[1]):
        alpha = torch.logsumexp(alpha[:, None] + trans, 0) + emission[:, t]
    return -torch.logsumexp(alpha, 0)


def _hmm(init, trans, emit, T: int, markov: bool):
    """A Pyro HMM over ``T`` steps (under ``pyro.markov`` or not) whose step ``t`` calls ``emit(t, z_t)``."""
    def model():
        z = None
        for t in (pyro.markov(range(T)) if markov else range(T)):
            z = pyro.sample(f"z_{t}", dist.Categorical(logits=init if z is None else trans[z]),
                            infer={"enumerate": "parallel"})
            emit(t, z)
    return model


def _loss(model):
    return TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda: None)


@pytest.mark.parametrize("n", [4, K])  # n = K: a context whose row count equals the enumeration size
def test_a_bayes_net_emission_under_pyro_markov_gives_the_forward_algorithm(n):
    """``o | z`` a Neural CPD of the context ``u = z`` (``[K, n, 1]``, one row per data row): with ``pyro.markov``
    the loss and its gradients are the forward algorithm's (HEAD read ``u``'s enumeration dim as its rows: a
    ``DataError`` "context input 'u': 3", or for ``n = K`` a network run on 3 features)."""
    T = 5
    init, trans = _chain(T, seed=1)
    torch.manual_seed(0)
    net = torch.nn.Linear(1, 2).double()
    bn = BayesNet(name="emit").add("o", cpd.Neural(net, [], 2, context=["u"]))
    obs = torch.randint(0, 2, (T, n), generator=torch.Generator().manual_seed(2))

    def emit(t, z):
        u = z.double()[..., None].expand(*z.shape[:-1], n, 1)
        bn.model({"o": obs[t]}, context={"u": u}, prefix=f"t{t}_")

    lp = torch.log_softmax(net(torch.arange(K, dtype=torch.float64)[:, None]), -1)  # log p(o | z) [K, 2]
    want = _forward(init, trans, lp[:, obs].sum(-1))
    want_grads = torch.autograd.grad(want, list(net.parameters()))
    for markov in (False, True):
        loss = _loss(_hmm(init, trans, emit, T, markov))
        grads = torch.autograd.grad(loss, list(net.parameters()))
        assert loss.item() == pytest.approx(want.item(), rel=1e-12)
        for g, w in zip(grads, want_grads):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_a_one_hot_context_with_a_missing_entry_under_pyro_markov_gives_the_forward_algorithm():
    """``o | z`` reads ``one_hot(z_t)`` (``[K, 1, K]``: one row), ``p | o`` a table, one ``p`` missing; the chain
    of 8 steps reuses ``pyro.markov``'s two local dims, and a second run of the loss (the messenger entered
    again) gives the same value."""
    T = 8
    init, trans = _chain(T, seed=3)
    torch.manual_seed(0)
    net = torch.nn.Linear(K, 2).double()
    table = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    bn = BayesNet(name="emit").add("o", cpd.Neural(net, [], 2, context=["u"])).add("p", cpd.Table(table, ["o"]))
    obs_o = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    obs_p = torch.tensor([0, 1, -1, 0, 1, 1, 0, 0])

    def emit(t, z):
        u = torch.nn.functional.one_hot(z, K).double()
        u = u if z.dim() else u[None]  # [..., 1 row, K]
        bn.model({"o": obs_o[t:t + 1], "p": obs_p[t:t + 1]}, context={"u": u}, prefix=f"t{t}_")

    lp_o = torch.log_softmax(net(torch.eye(K, dtype=torch.float64)), -1)  # [K, 2]
    lp_p = table.log()
    em = torch.stack([lp_o[:, obs_o[t]] + (lp_p[obs_o[t], obs_p[t]] if obs_p[t] >= 0 else 0.0) for t in range(T)], -1)
    want = _forward(init, trans, em)
    model = _hmm(init, trans, emit, T, markov=True)
    first, second = _loss(model), _loss(model)
    assert first.item() == pytest.approx(want.item(), rel=1e-12)
    assert second.item() == first.item()
    for g, w in zip(torch.autograd.grad(first, list(net.parameters())),
                    torch.autograd.grad(want, list(net.parameters()))):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_a_markov_net_emission_under_pyro_markov_gives_the_forward_algorithm():
    """The emission a MarkovNet over ``o, p`` whose potential is a network of ``one_hot(z_t)`` (context
    ``[K, N, K]``): with ``pyro.markov`` the loss is the forward algorithm's (HEAD refused the tables' batch
    shape ``(3, 2)``: "the enclosing Pyro program claims none here")."""
    T, n = 6, 2
    init, trans = _chain(T, seed=5)
    torch.manual_seed(0)
    pot = torch.nn.Sequential(torch.nn.Linear(K, 4), torch.nn.Unflatten(-1, (2, 2))).double()
    mrf = MarkovNet({"o": 2, "p": 2}).add_factor("op", ["o", "p"], pot)
    g = torch.Generator().manual_seed(6)
    obs = {"o": torch.randint(0, 2, (T, n), generator=g), "p": torch.randint(0, 2, (T, n), generator=g)}

    def emit(t, z):
        u = torch.nn.functional.one_hot(z, K).double().expand(*z.shape[:-1], n, K)
        mrf.model({"o": obs["o"][t], "p": obs["p"][t]}, context=u, prefix=f"t{t}_")

    tabs = torch.log_softmax(pot(torch.eye(K, dtype=torch.float64)).reshape(K, 4), -1).reshape(K, 2, 2)
    em = torch.stack([tabs[:, obs["o"][t], obs["p"][t]].sum(-1) for t in range(T)], -1)  # log p(o, p | z) [K, T]
    want = _forward(init, trans, em)
    want_grads = torch.autograd.grad(want, list(pot.parameters()))
    for markov in (False, True):
        loss = _loss(_hmm(init, trans, emit, T, markov))
        assert loss.item() == pytest.approx(want.item(), rel=1e-12)
        for gr, w in zip(torch.autograd.grad(loss, list(pot.parameters())), want_grads):
            torch.testing.assert_close(gr, w, rtol=1e-10, atol=1e-12)


def test_a_second_order_chain_under_pyro_markov_history_2_gives_the_brute_force_value():
    """``z_t | z_{t-1}, z_{t-2}`` under ``pyro.markov(history=2)`` (three local dims in turn), the emission a
    BayesNet reading ``z_t`` as context: the loss is ``-log`` of the sum over all ``K^T`` paths."""
    T = 5
    g = torch.Generator().manual_seed(7)
    init = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    trans2 = torch.log_softmax(torch.randn(K, K, K, generator=g, dtype=torch.float64), -1)  # [z_{t-2}, z_{t-1}, z_t]
    torch.manual_seed(0)
    net = torch.nn.Linear(1, 2).double()
    bn = BayesNet(name="emit").add("o", cpd.Neural(net, [], 2, context=["u"]))
    obs = torch.randint(0, 2, (T, 2), generator=g)

    def model():
        zs = []
        for t in pyro.markov(range(T), history=2):
            logits = init if t < 2 else trans2[zs[-2], zs[-1]]
            zs.append(pyro.sample(f"z_{t}", dist.Categorical(logits=logits), infer={"enumerate": "parallel"}))
            z = zs[-1]
            bn.model({"o": obs[t]}, context={"u": z.double()[..., None].expand(*z.shape[:-1], 2, 1)}, prefix=f"t{t}_")

    lp = torch.log_softmax(net(torch.arange(K, dtype=torch.float64)[:, None]), -1)[:, obs].sum(-1)  # [K, T]
    paths = torch.cartesian_prod(*[torch.arange(K)] * T)  # [K^T, T]
    score = init[paths[:, 0]] + init[paths[:, 1]] + lp[paths, torch.arange(T)].sum(-1)
    for t in range(2, T):
        score = score + trans2[paths[:, t - 2], paths[:, t - 1], paths[:, t]]
    want = -torch.logsumexp(score, 0)
    assert _loss(model).item() == pytest.approx(want.item(), rel=1e-12)


def test_the_hmm_functions_give_the_same_loss_with_and_without_pyro_markov():
    """A guard on the references above: the hand-written emission (a plain Categorical site of ``net(z)``) with
    and without ``pyro.markov`` gives the forward algorithm's value."""
    T, n = 4, 3
    init, trans = _chain(T, seed=1)
    torch.manual_seed(0)
    net = torch.nn.Linear(1, 2).double()
    obs = torch.randint(0, 2, (T, n), generator=torch.Generator().manual_seed(2))

    def emit(t, z):
        with pyro.plate(f"t{t}_data", n, dim=-1):
            pyro.sample(f"t{t}_o", dist.Categorical(logits=net(z.double()[..., None])), obs=obs[t])

    lp = torch.log_softmax(net(torch.arange(K, dtype=torch.float64)[:, None]), -1)
    want = _forward(init, trans, lp[:, obs].sum(-1)).item()
    for markov in (False, True):
        assert _loss(_hmm(init, trans, emit, T, markov)).item() == pytest.approx(want, rel=1e-12)
