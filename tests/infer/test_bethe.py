"""The Bethe log Z (:mod:`hybridpgm.infer.bethe`) under constants added to the *pairwise* tables: it moves by
exactly the constants, and its gradient w.r.t. the tables is the one of the tables without them.  Before, the
factors' energies :math:`\\sum_x b_f(x)\\theta_f(x)` were summed at the tables' magnitude: in float32 their
derivative's :math:`\\theta_f \\partial b_f` terms near 65536 cancelled only to rounding (gradients off by 4e-3 to
8e-3), and constants :math:`\\pm c` on alternate tables left a log Z near 10 to 20 rounded at their size.

Tolerances as in ``test_belief_propagation_unary_shift.py``: on these graphs the float32 run of the tables without
constants is within 3e-7 of float64's gradients w.r.t. the pairwise tables and 1.03 float32 epsilons of
:math:`\\max(1, |\\log Z|)` of its log Z (measured); the bounds are 1e-6 and 4 epsilons.
"""

import pytest
import torch

from tests.infer.bp_shift_cases import KINDS, OPTS, constants, shape_of, shifted_net

TOL32 = 1e-6
EPS32 = torch.finfo(torch.float32).eps


@pytest.mark.parametrize("kind", ["loop", "grid", "ising"])
@pytest.mark.parametrize("c", [1e3, 65536.0, -65536.0])
def test_the_bethe_log_z_moves_by_exactly_alternating_pairwise_constants(kind, c):
    """An even number of tables, :math:`+c, -c, \\dots`: log Z stays near 10 to 20.  Fails before by 8 to 18600
    epsilons of it (the loop at 1000 to the binary grid, on its log-odds path too, at -65536)."""
    shifts = constants(len(shape_of(kind)[1]), c, "alternating")
    assert sum(shifts) == 0.0
    with torch.no_grad():
        want = float(shifted_net(kind, torch.float64)[0].log_partition("bp", **OPTS))
        got = float(shifted_net(kind, torch.float32, pair_shifts=shifts)[0].log_partition("bp", **OPTS))
    assert abs(got - want) <= 4 * EPS32 * max(1.0, abs(want))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pattern", ["alternating", "same"])
@pytest.mark.parametrize("c", [1e3, 65536.0])
def test_the_gradient_of_the_bethe_log_z_ignores_the_pairwise_constants(kind, pattern, c):
    """The maxima taken off the energies are held constant, so the gradient w.r.t. each pairwise table is the
    float64 one of the tables without constants (the factor beliefs, on the tree).  Fails before by 5e-5 to 8e-3."""
    F = len(shape_of(kind)[1])
    ref, _, ref_pairs = shifted_net(kind, torch.float64, learn=True)
    want = torch.autograd.grad(ref.log_partition("bp", **OPTS), ref_pairs)
    net, _, pairs = shifted_net(kind, torch.float32, pair_shifts=constants(F, c, pattern), learn=True)
    got = torch.autograd.grad(net.log_partition("bp", **OPTS), pairs)
    assert max(float((a.double() - b).abs().max()) for a, b in zip(got, want)) < TOL32
    assert max(float(b.abs().max()) for b in want) > 0.1  # a real gradient, not zeros on both sides


@pytest.mark.parametrize("where", ["unary", "pair"])
def test_a_huge_entry_beside_a_finfo_min_penalty_gives_a_finite_log_z(where):
    """Review: centring takes ``finfo.min - 1e37`` to ``-inf`` at an allowed state, whose belief is then 0, and the
    energy's ``0 * (-inf)`` made the Bethe log Z NaN where the exact one is 1e37 (a chain: BP is exact)."""
    from hybridpgm.graphs import MarkovNet

    low = torch.finfo(torch.float32).min
    net = MarkovNet({f"x{i}": 3 for i in range(3)})
    first = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))
    if where == "pair":
        first[0, 0], first[1, 1] = 1e37, low
    net.add_factor("p0", ["x0", "x1"], first)
    net.add_factor("p1", ["x1", "x2"], torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))
    if where == "unary":
        net.add_factor("u0", ["x0"], torch.tensor([1e37, low, 0.0]))
    with torch.no_grad():
        got, want = net.log_partition("bp"), net.log_partition("exact")
    assert torch.isfinite(got) and float(got) == pytest.approx(float(want), rel=1e-6)
