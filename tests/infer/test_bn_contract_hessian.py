"""Second derivatives of exact Bayesian-network queries whose evidence probability is tiny: finite and exact.

Found by an audit: ``log_evidence`` and ``posterior`` of float64 networks were right, and so were their gradients,
but their Hessians were NaN once :math:`p(e)` fell under about :math:`10^{-154}` (still in probability space down
to :math:`10^{-250}`): the second derivative of :math:`\\log Z` and of :math:`p / Z` divides by :math:`Z^2`, which
underflows (:mod:`hybridpgm.graphs.tiny_ratio`); and in log space where a step's max-shifted sum is that small
(:class:`~hybridpgm.graphs.contraction_steps.LogOfSum`)."""

import pytest
import torch
from torch.autograd import gradgradcheck
from torch.autograd.functional import hessian, jacobian
from torch.func import functional_call

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import bn_dense

D = torch.float64


class _Query(torch.nn.Module):
    """``fn(bn)`` as a module, so that :func:`torch.func.functional_call` swaps the network's parameters."""

    def __init__(self, bn, fn):
        super().__init__()
        self.bn, self.fn = bn, fn

    def forward(self):
        return self.fn(self.bn)


def _of_parameters(bn, fn, names):
    """``(f(*values), initial values)``: ``fn(bn)`` as a function of the parameters ``names`` of ``bn``."""
    module = _Query(bn, fn)
    params = dict(module.named_parameters())
    values = [params[f"bn.{n}"].detach().clone().requires_grad_() for n in names]
    return (lambda *v: functional_call(module, {f"bn.{n}": x for n, x in zip(names, v)}, ())), values


def _a_to_b(t: float) -> BayesNet:
    """``a -> b``, :math:`p(a) = (0.3, 0.7)`, :math:`p(b = 1 \\mid a) = (t, 2t)`."""
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=D)))
    bn.add("b", cpd.Table(torch.tensor([[1 - t, t], [1 - 2 * t, 2 * t]], dtype=D), ["a"]))
    return bn


@pytest.mark.parametrize("t", [1e-100, 1e-120, 1e-200, 1e-260])
def test_log_evidence_and_posterior_derivatives_are_exact_where_the_evidence_is_tiny(t):
    """:math:`\\log p(b = 1)` and :math:`p(a \\mid b = 1)` as functions of a's logits :math:`x`, against the same
    formulas in log space (:math:`\\mathrm{logsumexp}(\\log\\mathrm{softmax}(x) + \\log q)`,
    :math:`\\mathrm{softmax}(x + \\log q)`): values and derivatives up to the third.  On the old code the second
    derivatives were NaN at :math:`t = 10^{-200}` (probability space, :math:`Z^2` underflows), the third from
    :math:`t = 10^{-110}` (:math:`Z^3`); :math:`10^{-100}` (probability space) and :math:`10^{-260}` (under the
    floor: log space) were exact."""
    bn = _a_to_b(t)
    log_q = torch.tensor([t, 2 * t], dtype=D).log()
    evidence, _ = _of_parameters(bn, lambda m: m.log_evidence({"b": 1}), ["cpds.a.logits"])
    post, (x0,) = _of_parameters(bn, lambda m: m.posterior("a", {"b": 1}), ["cpds.a.logits"])
    joint_post, _ = _of_parameters(bn, lambda m: m.posterior(["a"], {"b": 1}, joint=True), ["cpds.a.logits"])

    def ref_evidence(x):
        return torch.logsumexp(torch.log_softmax(x, -1) + log_q, -1)

    def ref_post(x):
        return torch.softmax(x + log_q, -1)

    def second(f, x, create_graph=False):
        return jacobian(lambda y: jacobian(f, y, create_graph=True), x, create_graph=create_graph)

    def third(f, x):
        return jacobian(lambda y: second(f, y, True), x)

    exact = dict(rtol=0, atol=1e-13)
    torch.testing.assert_close(evidence(x0), ref_evidence(x0), rtol=1e-15, atol=0)
    torch.testing.assert_close(jacobian(evidence, x0), jacobian(ref_evidence, x0), **exact)
    torch.testing.assert_close(hessian(evidence, x0), hessian(ref_evidence, x0), **exact)
    torch.testing.assert_close(post(x0), ref_post(x0), **exact)
    torch.testing.assert_close(jacobian(post, x0), jacobian(ref_post, x0), **exact)
    torch.testing.assert_close(second(post, x0), second(ref_post, x0), **exact)
    torch.testing.assert_close(second(joint_post, x0), second(ref_post, x0), **exact)
    torch.testing.assert_close(third(evidence, x0), third(ref_evidence, x0), **exact)
    torch.testing.assert_close(third(post, x0), third(ref_post, x0), **exact)
    torch.testing.assert_close(third(joint_post, x0), third(ref_post, x0), **exact)
    assert hessian(evidence, x0).abs().max() > 0.06 and third(post, x0).abs().max() > 0.01


def _random_table(shape, g, tiny=None):
    p = torch.rand(shape, dtype=D, generator=g) + 0.05
    if tiny is not None:
        p[..., -1] = tiny
    return p / p.sum(-1, keepdim=True)


def _twelve_nodes(tiny: float) -> BayesNet:
    """Twelve nodes of two or three states, each a child of the two before it; the last six put ``tiny`` on their
    last state."""
    g = torch.Generator().manual_seed(0)
    bn, cards = BayesNet(), [2 + (i % 2) for i in range(12)]
    for i in range(12):
        parents = list(range(max(0, i - 2), i))
        shape = [cards[j] for j in parents] + [cards[i]]
        bn.add(f"x{i}", cpd.Table(_random_table(shape, g, tiny if i >= 6 else None), [f"x{j}" for j in parents]))
    return bn


@pytest.mark.parametrize("contract", [False, True], ids=["dense", "contraction"])
@pytest.mark.parametrize("tiny, log_z0", [(1e-40, -550.5), (1e-42, -578.1)])
def test_gradgradcheck_with_a_row_of_evidence_at_minus_550(tiny, log_z0, contract, monkeypatch):
    """The audit's case: the six tiny nodes observed on their tiny state in row 0 (:math:`\\log p(e) = -550.5`,
    :math:`10^{-239}`: probability space), five of them in row 1 (about :math:`10^{-200}`), none in row 2.
    ``gradgradcheck`` of ``log_evidence`` and of every posterior marginal in two CPDs' logits: the analytical
    second derivatives were NaN.  With ``tiny`` = 1e-42 row 0 is under the floor (:math:`10^{-251}`): redone in
    log space, the other rows kept in probability space.  The six free nodes have 216 joint states, so the queries
    take the dense joint; ``contract`` forces the contraction (marginals as gradients of the evidence)."""
    if contract:
        monkeypatch.setattr(bn_dense, "DENSE_MAX", 0)
    bn = _twelve_nodes(tiny)
    cards = [2 + (i % 2) for i in range(12)]
    ev = {f"x{i}": torch.tensor([cards[i] - 1, cards[i] - 1 if i < 11 else 0, 0]) for i in range(6, 12)}
    log_z = bn.log_evidence(ev)
    assert abs(log_z[0].item() - log_z0) < 0.1 and -500 < log_z[1].item() < -400 and log_z[2].item() > -3
    names = ["cpds.x0.logits", "cpds.x3.logits"]
    for fn in (lambda m: m.log_evidence(ev),
               lambda m: torch.cat([v.reshape(-1) for v in m.posterior(None, ev).values()])):
        f, values = _of_parameters(bn, fn, names)
        assert gradgradcheck(f, values, eps=1e-6, atol=1e-5, rtol=1e-4)


def _conflicting_chain(t: float) -> BayesNet:
    """A chain ``x0 -> ... -> x9`` of binary nodes: ``x8`` almost surely 0 (:math:`1 - t`), ``x9 = 1`` almost
    surely where ``x8 = 1`` and with probability ``t`` where ``x8 = 0``; nine free nodes (512 states: the
    contraction path)."""
    g = torch.Generator().manual_seed(1)
    bn = BayesNet()
    bn.add("x0", cpd.Table(_random_table([2], g)))
    for i in range(1, 8):
        bn.add(f"x{i}", cpd.Table(_random_table([2, 2], g), [f"x{i - 1}"]))
    bn.add("x8", cpd.Table(torch.tensor([[1 - t, t], [1 - 3 * t, 3 * t]], dtype=D), ["x7"]))
    bn.add("x9", cpd.Table(torch.tensor([[1 - t, t], [t, 1 - t]], dtype=D), ["x8"]))
    return bn


def test_second_derivatives_in_log_space_where_a_steps_shifted_sum_is_tiny():
    """Evidence ``x9 = 1`` against ``x8``'s prior: :math:`p(e) \\approx 2t = 2 \\cdot 10^{-280}`, under the floor,
    so log space, where the step joining ``x8``'s table and ``x9``'s likelihood (maxima on different states) has a
    max-shifted sum of :math:`2 \\cdot 10^{-280}`.  The first derivatives were right, the second NaN.
    :math:`\\log p(e) = \\log t + \\log(1 - t + p(x_8 = 1)\\ldots)` hardly depends on ``x0``'s logits, so
    ``x7``'s and ``x8``'s are checked: :math:`p(x_7 \\mid e)` and :math:`\\log p(e)` move with them."""
    bn = _conflicting_chain(1e-280)
    ev = {"x9": torch.tensor([1])}
    assert -645 < bn.log_evidence(ev).item() < -643
    names = ["cpds.x7.logits", "cpds.x8.logits"]
    for fn in (lambda m: m.log_evidence(ev), lambda m: m.posterior(["x7", "x8"], ev)["x7"]):
        f, values = _of_parameters(bn, fn, names)
        assert gradgradcheck(f, values, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("contract", [False, True], ids=["dense", "contraction"])
@pytest.mark.parametrize("network", ["a_to_b", "twelve_1e-40", "twelve_1e-42"])
def test_differentiable_answers_are_the_bits_of_the_plain_ones(network, contract, monkeypatch):
    """First-order results unchanged: with the tables requiring gradients (the graph that the second derivatives
    need) ``log_evidence``, ``posterior`` and the joint posterior give the same bits as under ``torch.no_grad()``
    (the plain log and division), at tiny evidence too: the marginals are read off a contraction scaled by a power
    of two, an exact scaling."""
    if contract:
        monkeypatch.setattr(bn_dense, "DENSE_MAX", 0)
    if network == "a_to_b":
        bn, ev = _a_to_b(1e-200), {"b": torch.tensor([1, 0])}
    else:
        bn = _twelve_nodes(float(network.split("_")[1]))
        cards = [2 + (i % 2) for i in range(12)]
        ev = {f"x{i}": torch.tensor([cards[i] - 1, cards[i] - 1 if i < 11 else 0, 0]) for i in range(6, 12)}
    queries = {"log_evidence": lambda: bn.log_evidence(ev), "posterior": lambda: bn.posterior(None, ev),
               "joint": lambda: bn.posterior(["x0", "x1"] if network != "a_to_b" else ["a"], ev, joint=True)}
    for name, query in queries.items():
        got = query()
        with torch.no_grad():
            plain = query()
        got, plain = (got, plain) if isinstance(got, dict) else ({name: got}, {name: plain})
        assert all(v.requires_grad and torch.equal(v.detach(), plain[k]) for k, v in got.items()), name
