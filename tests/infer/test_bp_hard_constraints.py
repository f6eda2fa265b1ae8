"""Belief propagation with hard constraints written as huge finite penalties (``-1e30`` as "forbidden").

Found by an audit: on binary pairwise graphs the log-odds fast path (:class:`~hybridpgm.infer.bp_engine.
BinaryPairwise`, :mod:`~hybridpgm.infer.bp_fused`) forms :math:`H + a - H` for a penalty :math:`-H` and kept only
:math:`\\epsilon H` of the finite part :math:`a`: finite but wrong marginals (off by up to 0.99 on trees at
``-1e30``), where a penalty whose ``exp`` already underflows (``-1e4``) gave the right answer.  Such graphs now run
on the general path, which keeps the states apart; the answers below are those of the same model with the
penalties at ``-1e4`` in float64 (``exp(-1e4) = 0``: the ``-inf`` answer), by brute force on trees.
"""

import pytest
import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import BeliefPropagation
from hybridpgm.infer.bp_engine import BinaryPairwise
from hybridpgm.infer.bp_fused import odds_max_spread
from tests.graphs.mrf_brute_force import brute_force

LOOP = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 5), (5, 3), (0, 6), (6, 4), (0, 1)]


def _net(seed, dtype, penalty, binary=True, tree=True):
    """Random pairwise tables (tree or loops) with ~30% of the entries ``penalty`` (never the (0, 0) ones, so the
    model stays possible), plus random fields."""
    g = torch.Generator().manual_seed(seed)
    V = 6 if tree else 7
    cards = [2] * V if binary else [int(torch.randint(2, 4, (), generator=g)) for _ in range(V)]
    scopes = [[int(torch.randint(0, i, (), generator=g)), i] for i in range(1, V)] if tree else LOOP
    mrf = MarkovNet({f"v{i}": c for i, c in enumerate(cards)})
    for f, (a, b) in enumerate(scopes):
        t = torch.randn(cards[a], cards[b], generator=g, dtype=torch.float64)
        forbid = torch.rand(t.shape, generator=g) < 0.3
        forbid[0, 0] = False
        mrf.add_factor(f"f{f}", [f"v{a}", f"v{b}"], t.masked_fill(forbid, penalty).to(dtype))
    for i, c in enumerate(cards):
        mrf.add_factor(f"u{i}", [f"v{i}"], torch.randn(c, generator=g, dtype=torch.float64).to(dtype))
    return mrf


CASES = [(torch.float32, -1e8, 1e-5), (torch.float32, -1e30, 1e-5), (torch.float32, torch.finfo(torch.float32).min,
                                                                   1e-5),
         (torch.float64, -1e15, 1e-10), (torch.float64, -1e30, 1e-10), (torch.float64, -1e300, 1e-10)]


@pytest.mark.parametrize("dtype, penalty, tol", CASES)
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("grad", [False, True])
def test_huge_penalties_give_the_brute_force_marginals_on_trees(dtype, penalty, tol, binary, grad):
    """Sum-product on trees is exact: the marginals and the Bethe log Z equal brute force of the ``-inf`` model,
    on the fused (no grad) and the autograd path alike (binary trees took the log-odds path and were off by 0.44
    in float64 at -1e30)."""
    for seed in range(3):
        mrf = _net(seed, dtype, penalty, binary)
        log_z, marg = brute_force(_net(seed, torch.float64, -1e4, binary))
        fg = mrf.factor_graph()
        if grad:
            fg.groups[0].log_potentials.requires_grad_()
        res = BeliefPropagation(num_iters=30, tol=0.0)(fg)
        want = torch.zeros_like(res.marginals, dtype=torch.float64)
        for i, v in enumerate(mrf.variables):
            want[0, i, : mrf.cards[v]] = marg[v]
        assert torch.allclose(res.marginals.double(), want, atol=tol, rtol=0)
        assert torch.allclose(res.log_z.double(), log_z.reshape(1), atol=tol * 10, rtol=0)


@pytest.mark.parametrize("dtype, penalty, tol", CASES)
@pytest.mark.parametrize("max_product", [False, True])
@pytest.mark.parametrize("damping", [0.0, 0.5])
def test_huge_penalties_on_a_loopy_binary_graph_equal_the_minus_inf_answer(dtype, penalty, tol, max_product,
                                                                           damping):
    """Loopy BP (damped or not, max-product too) at a huge penalty gives what it gives at ``-1e4`` in float64."""
    for seed in range(3):
        bp = BeliefPropagation(num_iters=60, damping=damping, tol=0.0, max_product=max_product)
        got = bp(_net(seed, dtype, penalty, tree=False).factor_graph())
        want = bp(_net(seed, torch.float64, -1e4, tree=False).factor_graph())
        assert torch.allclose(got.marginals.double(), want.marginals, atol=tol, rtol=0)
        assert torch.equal(got.assignment, want.assignment)


def test_ordinary_binary_graphs_keep_the_fused_path_and_huge_spreads_leave_it(monkeypatch):
    """The precision check selects: tables and fields within :func:`odds_max_spread` run the fused path only (so
    it is not given up for ordinary models), a table spread or a field beyond it the general path."""
    calls = []
    real = BeliefPropagation._general
    monkeypatch.setattr(BeliefPropagation, "_general", lambda *a, **k: calls.append(1) or real(*a, **k))
    limit = odds_max_spread(torch.float32)
    assert 80 < limit < 100 and 1e6 < odds_max_spread(torch.float64) < 1e7
    for spread, field, fused in ((limit, 1.0, True), (limit * 1.01, 1.0, False), (1.0, limit * 1.01, False)):
        mrf = MarkovNet({"a": 2, "b": 2}).add_factor("ab", ["a", "b"], torch.tensor([[0.0, -spread], [0.0, 0.0]]))
        mrf.add_factor("ua", ["a"], torch.tensor([0.0, field]))
        fg = mrf.factor_graph()
        assert BinaryPairwise.applies(fg) and BinaryPairwise(fg).precise is fused
        calls.clear()
        BeliefPropagation(num_iters=5)(fg)
        assert calls == ([] if fused else [1])
