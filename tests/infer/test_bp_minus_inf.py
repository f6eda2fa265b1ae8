"""Belief propagation where a state is impossible: the convergence check and ``-inf`` log-potentials.

An audit suspected that a state ruled out everywhere (a table row of ``-inf``) would give equal ``-inf`` messages
whose change, ``-inf - (-inf)``, is NaN, so that the check never passed and a query warned of non-convergence.
Reproduced, that does not happen:

* written as finite penalties (what :class:`~hybridpgm.graphs.MarkovNet` takes: it refuses ``-inf`` tables), even
  ``finfo.min`` on a whole row, every message stays finite (a normalised incoming message has an entry
  :math:`\\ge -\\log C`, so a penalised sum rounds to the penalty, never past it), the check passes and the answer is
  brute force's of the ``-inf`` model (general and binary path, float32 and float64), save that the Bethe
  :math:`\\log Z` was NaN where two ``finfo.min`` rows met on a state (its belief overflows to ``-inf``, and the
  variable entropy formed :math:`0 \\cdot (-\\infty)`: now :math:`0 \\log 0 = 0` there too);
* with real ``-inf`` in a hand-built :class:`~hybridpgm.graphs.FactorGraph` (outside its contract) a ``-inf``
  message meets itself in :math:`b_v - m_{f \\to v}` and the *messages* are NaN at the next step: the check raised
  :class:`~hybridpgm.errors.ModelSpecError` blaming an overflow near ``finfo.min``; it now names the ``-inf``
  log-potentials and says what to write instead.
"""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import BeliefPropagation
from tests.graphs.mrf_brute_force import brute_force

TREE = [(0, 1), (1, 2), (1, 3)]
LOOP = [(0, 1), (1, 2), (2, 0), (2, 3)]


def _net(dtype, penalty, card, scopes):
    """Random pairwise tables; state ``card - 1`` of each factor's first argument ruled out (a whole row of
    ``penalty``), so ``v1``'s last state is impossible through two or three factors."""
    g = torch.Generator().manual_seed(1)
    mrf = MarkovNet({f"v{i}": card for i in range(4)})
    for f, (a, b) in enumerate(scopes):
        t = torch.randn(card, card, generator=g, dtype=torch.float64)
        t[card - 1] = penalty
        mrf.add_factor(f"f{f}", [f"v{a}", f"v{b}"], t.to(dtype))
    for i in range(4):
        mrf.add_factor(f"u{i}", [f"v{i}"], torch.randn(card, generator=g, dtype=torch.float64).to(dtype))
    return mrf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("card", [2, 3])
@pytest.mark.parametrize("grad", [False, True])
def test_a_state_ruled_out_everywhere_converges_to_brute_force_on_a_tree(dtype, card, grad):
    """``-1e30`` and ``finfo.min`` rows, ``tol > 0``: the check passes (well before ``num_iters``) and the
    marginals and Bethe log Z are brute force's of the ``-inf`` model; binary graphs included (they leave the
    log-odds path for the general one).  The convergence and the marginals held before; the log Z at ``finfo.min``
    was NaN (``v1``'s belief at its ruled-out state, ``finfo.min`` twice, overflows to ``-inf``, and the variable
    entropy took :math:`0 \\cdot (-\\infty)` there)."""
    log_z, marg = brute_force(_net(torch.float64, -1e4, card, TREE))
    for penalty in (-1e30, torch.finfo(dtype).min):
        fg = _net(dtype, penalty, card, TREE).factor_graph()
        if grad:
            fg.groups[0].log_potentials.requires_grad_()
        res = BeliefPropagation(num_iters=200, tol=1e-6)(fg)
        assert res.converged and res.num_iters <= 20
        assert torch.isfinite(res.marginals).all()
        for i in range(4):
            torch.testing.assert_close(res.marginals[0, i].double(), marg[f"v{i}"], rtol=0, atol=1e-5)
        torch.testing.assert_close(res.log_z.double(), log_z.reshape(1), rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("card", [2, 3])
def test_a_state_ruled_out_everywhere_converges_on_a_loop_without_a_warning(dtype, card, recwarn):
    """Guard: on a loop the ``MarkovNet`` query converges (no :class:`~hybridpgm.errors.EstimateWarning`) to the
    answer of the ``-1e4`` model, and the impossible state gets probability 0."""
    want = _net(torch.float64, -1e4, card, LOOP).marginals(method="bp", tol=1e-10, num_iters=500)
    for penalty in (-1e30, torch.finfo(dtype).min):
        got = _net(dtype, penalty, card, LOOP).marginals(method="bp", tol=1e-6, num_iters=500)
        for v in want:
            torch.testing.assert_close(got[v].double(), want[v], rtol=0, atol=1e-5)
        assert float(got["v1"][card - 1]) == 0.0
    assert not [w for w in recwarn if "did not converge" in str(w.message)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scopes", [TREE, LOOP])
@pytest.mark.parametrize("card", [2, 3])
@pytest.mark.parametrize("grad", [False, True])
def test_minus_inf_log_potentials_in_a_hand_built_factor_graph_are_named(dtype, scopes, card, grad):
    """Real ``-inf`` entries (a hand-built graph) make NaN messages; the check's error names the ``-inf``
    log-potentials and the variable (it blamed an overflow near ``finfo.min`` before)."""
    fg = _net(dtype, -1e30, card, scopes).factor_graph()
    g = fg.groups[0]
    g.log_potentials = g.log_potentials.masked_fill(g.log_potentials < -1e20, float("-inf"))
    if grad:
        g.log_potentials.requires_grad_()
    with pytest.raises(ModelSpecError, match=r"message to variable 'v\d' became NaN at step \d+: the factor graph "
                                             r"holds -inf log-potentials.*finite penalty"):
        BeliefPropagation(num_iters=50, tol=1e-6)(fg)
