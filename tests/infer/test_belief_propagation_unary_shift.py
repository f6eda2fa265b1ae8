"""Loopy BP under constants added to the *unary* tables (a metamorphic check, carried from an audit): a constant
changes no message, so the float32 marginals and the gradient of the Bethe log Z are the float64 ones of the tables
without it, and the Bethe log Z moves by exactly the constants.  Before, BP centred the factor tables but not the
unaries: the beliefs :math:`\\theta_v + \\sum m` and :math:`b_v - m_{f \\to v}` were formed at the constant's
magnitude, and float32 unary tables near -65536 moved the marginals by up to 1.9e-3 (8.4e-4 on the chain, a tree,
where BP is exact).

Tolerances, from the float32 rounding of the problem without constants.  On these graphs the float32 run of the
tables *without* constants is within 1.3e-7 of float64's marginals and 3e-7 of its gradients (measured: the
rounding of 40 steps whose centred messages and tables are below 10 in size, a few ulps of 10 each); 1e-6 leaves
3x room for the order of those roundings and is under a quarter of the smallest error of the uncentred iteration
(4.7e-6 for the marginals, the chain at c = 1000; 2.7e-5 for the gradients).  The log Z bound is 4 float32
epsilons of :math:`\\max(1, |\\log Z|)`: the float32 run without constants was up to 1.03 of them off (its own
rounding of the Bethe sums), and one of the constants' size the rounding of their sum (1.02 in all, the grid at
65536).
With the fix, these tables (exact in float32, and exactly centred) give the float32 answers of the tables without
constants, bit for bit.
"""

import pytest
import torch

from hybridpgm.infer.bp_engine import BinaryPairwise
from tests.infer.bp_shift_cases import KINDS, OPTS, constants, shape_of, shifted_net

TOL32 = 1e-6
EPS32 = torch.finfo(torch.float32).eps


def _worst(got: dict, want: dict) -> float:
    return max(float((got[v].double() - want[v]).abs().max()) for v in want)


def test_the_cases_take_the_paths_they_name():
    """Guard: the binary grid runs the log-odds path, the others the general one."""
    for kind in KINDS:
        fg = shifted_net(kind, torch.float32)[0].factor_graph()
        assert BinaryPairwise.applies(fg) == (kind == "ising")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("c", [1e3, 4096.0, 65536.0, -65536.0])
def test_a_constant_on_every_unary_table_leaves_the_float32_bp_marginals(kind, c):
    """Fails before on the general path: off by 4.7e-6 (chain), 9.6e-6 (loop), 3.3e-5 (grid) at 1000, 8.4e-4 to
    1.9e-3 at -65536 (the chain's 2-state variables are padded to 3: their maxima are over their states, or the
    padding's 0 would be the maximum at -65536 and centre nothing).  The binary grid passes before too (its
    log-odds hold differences of the unary entries only)."""
    n = len(shape_of(kind)[0])
    with torch.no_grad():
        want = shifted_net(kind, torch.float64)[0].marginals("bp", **OPTS)
        got = shifted_net(kind, torch.float32, constants(n, c, "same"))[0].marginals("bp", **OPTS)
    assert _worst(got, want) < TOL32


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pattern", ["alternating", "same"])
@pytest.mark.parametrize("c", [1e3, 65536.0])
def test_the_bethe_log_z_moves_by_exactly_the_unary_constants(kind, pattern, c):
    """Alternating constants :math:`\\pm c` leave a log Z near 10 to 20 that the uncentred sums rounded at the
    constants' size: fails before by 16 to 3000 epsilons of it (2.4e-4 to 7.2e-3 at 65536).  Constants of one sign
    (a guard, passes before too) give a log Z of their size, whose float32 rounding hides the difference."""
    n = len(shape_of(kind)[0])
    shifts = constants(n, c, pattern)
    with torch.no_grad():
        want = float(shifted_net(kind, torch.float64)[0].log_partition("bp", **OPTS)) + sum(shifts)
        got = float(shifted_net(kind, torch.float32, shifts)[0].log_partition("bp", **OPTS))
    assert abs(got - want) <= 4 * EPS32 * max(1.0, abs(want))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pattern", ["alternating", "same"])
@pytest.mark.parametrize("c", [1e3, 65536.0])
def test_the_gradient_of_the_bethe_log_z_ignores_the_unary_constants(kind, pattern, c):
    """The maxima are held constant (detached), so the gradient w.r.t. each unary table is the float64 one of the
    tables without constants (the beliefs, on the tree; the unrolled iteration's, on loops).  Fails before by
    2.7e-5 to 7.8e-3 (the eager log-odds path of the binary grid too: its Bethe sums took the unaries as given)."""
    n = len(shape_of(kind)[0])
    ref, ref_unary, _ = shifted_net(kind, torch.float64, learn=True)
    want = torch.autograd.grad(ref.log_partition("bp", **OPTS), ref_unary)
    net, unary, _ = shifted_net(kind, torch.float32, constants(n, c, pattern), learn=True)
    got = torch.autograd.grad(net.log_partition("bp", **OPTS), unary)
    assert max(float((a.double() - b).abs().max()) for a, b in zip(got, want)) < TOL32
    assert max(float(b.abs().max()) for b in want) > 0.1  # a real gradient, not zeros on both sides


def test_unary_constants_per_model_of_a_batch():
    """Each model (batch row) is centred by its own maxima: a batch of three rows with constants 65536, -65536 and
    0 on every unary gives each row the marginals and the Bethe log Z (less its constants) of the row without
    them.  Fails before: the rows with constants off by 4.3e-4 and 8.4e-4."""
    cards, _ = shape_of("chain")
    n = len(cards)
    net, unary, pairs = shifted_net("chain", torch.float64)
    rows = torch.tensor([65536.0, -65536.0, 0.0], dtype=torch.float64)
    batched = type(net)({f"x{i}": c for i, c in enumerate(cards)})
    for j, t in enumerate(pairs):
        batched.add_factor(f"p{j}", [f"x{j}", f"x{j + 1}"], t.float())
    for i, t in enumerate(unary):
        batched.add_factor(f"u{i}", [f"x{i}"], (t + rows[:, None]).float())
    with torch.no_grad():
        want, want_z = net.marginals("bp", **OPTS), float(net.log_partition("bp", **OPTS))
        got, got_z = batched.marginals("bp", **OPTS), batched.log_partition("bp", **OPTS)
    for b in range(3):
        assert _worst({v: got[v][b] for v in got}, want) < TOL32
        target = want_z + n * float(rows[b])
        assert abs(float(got_z[b]) - target) <= 4 * EPS32 * max(1.0, abs(target))
