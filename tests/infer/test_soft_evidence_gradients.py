"""Gradients with respect to soft evidence: exact at a likelihood entry of exactly zero.

:math:`p(e) = \\sum_k \\lambda_k\\, p(x_v = k, e')` is linear in the likelihood, so
:math:`\\partial \\log p(e) / \\partial \\lambda_k = p(x_v = k, e') / p(e)` and
:math:`\\partial p(q \\mid e) / \\partial \\lambda_k = p(x_v = k, e') \\,
(p(q \\mid x_v = k, e') - p(q \\mid e)) / p(e)` are finite at :math:`\\lambda_k = 0`;
hard-evidence queries give the reference values.
"""

import pytest
import torch
from torch.autograd import gradcheck

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import bn_dense
from hybridpgm.infer.bn_contract import log_evidence_rows
from hybridpgm.infer.bn_evidence import network_facts, parse_evidence
from hybridpgm.infer.bn_factors import relevant
from hybridpgm.infer.soft_evidence import Likelihood, ZeroSafeLog
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

D = torch.float64


def _two() -> BayesNet:
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=D)))
    bn.add("c", cpd.Table(torch.tensor([[0.9, 0.1], [0.4, 0.6]], dtype=D), ["a"]))
    return bn


def _nine() -> BayesNet:
    """Nine ternary nodes, each with the two before it as parents (729 joint states: the contraction)."""
    g = torch.Generator().manual_seed(2)
    bn, names = BayesNet(), [f"n{i}" for i in range(9)]
    for i, v in enumerate(names):
        parents = names[max(0, i - 2):i]
        bn.add(v, cpd.Table(torch.softmax(torch.randn(*[3] * len(parents), 3, generator=g, dtype=D), -1), parents))
    return bn


#: network, soft node, query node, hard evidence, likelihood rows (each with a zero)
CASES = {
    "two-dense": (_two, "c", "a", {}, [[0.0, 0.3], [0.5, 0.0]]),
    "nine-contraction": (_nine, "n3", "n0", {"n8": torch.tensor([2, 0])}, [[0.1, 0.0, 0.7], [0.0, 0.4, 0.0]]),
}


def _setup(case: str, path: str, monkeypatch):
    make, soft, query, hard, lik = CASES[case]
    if path == "contraction":
        monkeypatch.setattr(bn_dense, "DENSE_MAX", 0)
    return make(), soft, query, hard, torch.tensor(lik, dtype=D)


def _hard(hard: dict, soft: str, k: int, n: int) -> dict:
    return {**hard, soft: torch.full((n,), k)}


@pytest.mark.parametrize("path", ["dense", "contraction"])
@pytest.mark.parametrize("case", list(CASES))
def test_log_evidence_gradient_at_a_zero_likelihood_is_exact(case, path, monkeypatch):
    bn, soft, _, hard, lik = _setup(case, path, monkeypatch)
    n, card = lik.shape
    lam = lik.clone().requires_grad_()
    le = bn.log_evidence({**hard, soft: Likelihood(lam)})
    g, = torch.autograd.grad(le.sum(), lam)
    with torch.no_grad():  # p(x_v = k, e') / p(e)
        expected = torch.stack([(bn.log_evidence(_hard(hard, soft, k, n)) - le).exp() for k in range(card)], -1)
    torch.testing.assert_close(g, expected)
    # one-sided finite differences at the zeros (the likelihood cannot go negative), central elsewhere
    h = 1e-7
    for i in range(n):
        for k in range(card):
            step = torch.zeros_like(lik)
            step[i, k] = h
            f = lambda x: bn.log_evidence({**hard, soft: Likelihood(x)})[i].item()  # noqa: E731
            fd = (f(lik + step) - f(lik)) / h if lik[i, k] == 0 else (f(lik + step) - f(lik - step)) / (2 * h)
            assert abs(fd - g[i, k].item()) < 1e-5 * max(1.0, abs(fd)), (i, k, fd, g[i, k].item())


@pytest.mark.parametrize("path", ["dense", "contraction"])
@pytest.mark.parametrize("case", list(CASES))
def test_posterior_gradient_at_a_zero_likelihood_is_exact(case, path, monkeypatch):
    bn, soft, query, hard, lik = _setup(case, path, monkeypatch)
    n, card = lik.shape
    lam = lik.clone().requires_grad_()
    post = bn.posterior(query, {**hard, soft: Likelihood(lam)})
    w = torch.linspace(-1.0, 2.0, post.shape[-1], dtype=D)
    g, = torch.autograd.grad((post * w).sum(), lam)
    with torch.no_grad():
        le = bn.log_evidence({**hard, soft: Likelihood(lik)})
        expected = torch.stack([(bn.log_evidence(_hard(hard, soft, k, n)) - le).exp()
                                * ((bn.posterior(query, _hard(hard, soft, k, n)) - post) * w).sum(-1)
                                for k in range(card)], -1)
    torch.testing.assert_close(g, expected)


@pytest.mark.parametrize("path", ["dense", "contraction"])
@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck_of_positive_likelihoods(case, path, monkeypatch):
    bn, soft, query, hard, lik = _setup(case, path, monkeypatch)
    lam = (lik + 0.2).requires_grad_()
    assert gradcheck(lambda x: bn.log_evidence({**hard, soft: Likelihood(x)}), (lam,))
    assert gradcheck(lambda x: bn.posterior(query, {**hard, soft: Likelihood(x)}), (lam,))


@pytest.mark.parametrize("path", ["dense", "contraction"])
def test_a_zero_in_one_row_leaves_the_other_rows_gradients_zero_there(path, monkeypatch):
    bn, soft, _, hard, lik = _setup("nine-contraction" if path == "contraction" else "two-dense", path,
                                    monkeypatch)
    lam = lik.clone().requires_grad_()
    g, = torch.autograd.grad(bn.log_evidence({**hard, soft: Likelihood(lam)})[1], lam)
    assert (g[0] == 0).all() and torch.isfinite(g[1]).all() and (g[1] > 0).all()


def test_network_whose_sigmoid_underflows_to_zero_gets_finite_exact_gradients():
    bn = _two()
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        net.bias[0] = -800.0  # sigmoid(-800 + ...) is exactly 0.0 in float64
    x = torch.tensor([[1.0, 2.0, 3.0], [0.5, -0.5, 0.1]], dtype=D)
    lik = torch.sigmoid(net(x))
    assert (lik[:, 0] == 0).all()
    lik.retain_grad()
    le = bn.log_evidence({"c": Likelihood(lik)})
    (-le.sum()).backward()
    p_c = torch.tensor([0.3 * 0.9 + 0.7 * 0.4, 0.3 * 0.1 + 0.7 * 0.6], dtype=D)
    torch.testing.assert_close(lik.grad, -p_c / (lik.detach() @ p_c)[:, None])
    assert torch.isfinite(net.weight.grad).all() and torch.isfinite(net.bias.grad).all()


def test_log_likelihood_path_is_unchanged():
    bn = _two()
    lam = torch.tensor([float("-inf"), 0.3], dtype=D, requires_grad=True)
    g, = torch.autograd.grad(bn.log_evidence({"c": Likelihood(lam, log=True)}), lam)
    torch.testing.assert_close(g, torch.tensor([0.0, 1.0], dtype=D))


def test_log_space_gives_finite_gradients_exact_at_positive_entries():
    """Rows answered in log space (under the dtype's floor, or half-precision networks): the derivative in a
    zero entry is not available from the log (documented as 0); the positive entries and every other gradient
    stay exact and finite."""
    bn = _two()
    lam = torch.tensor([[0.0, 0.3], [0.5, 0.2]], dtype=D, requires_grad=True)

    def rows(spaces):
        ev = parse_evidence(bn, {"c": Likelihood(lam)})
        return log_evidence_rows(bn, ev, relevant(network_facts(bn), {"c"}), spaces)

    g_log, = torch.autograd.grad(rows(("log",)).sum(), lam)
    g_prob, = torch.autograd.grad(rows(None).sum(), lam)
    assert torch.isfinite(g_log).all() and g_log[0, 0] == 0
    positive = lam.detach() > 0
    torch.testing.assert_close(g_log[positive], g_prob[positive])


def test_zero_safe_log():
    t = torch.tensor([0.0, 0.5, 2.0], dtype=D, requires_grad=True)
    out = ZeroSafeLog.apply(t)
    torch.testing.assert_close(out, t.detach().log())
    g, = torch.autograd.grad(out.sum(), t)
    torch.testing.assert_close(g, torch.tensor([0.0, 2.0, 0.5], dtype=D))
    assert gradcheck(ZeroSafeLog.apply, (torch.tensor([0.3, 1.5], dtype=D, requires_grad=True),))
