"""BP's convergence test is per model of a batch (infer/belief_propagation.py, bp_fused.py, rounding_floor.py).

A check passes when every model ``b`` has its largest message change below its own
``max(tol, 16 eps s_b)``, ``s_b`` the largest magnitude of *its* messages.  Found by the batch audit: with one
scale over the whole batch, a strongly coupled ``float32`` model (messages of thousands, a rounding floor of
about ``5e-3``) stopped a weakly coupled model beside it 10-30 steps early, ``5e-4`` from its fixed point at
``tol = 1e-6`` (alone: ``1.8e-6``).
"""

import math

import pytest
import torch

from hybridpgm.graphs import ising_grid, potts_grid
from hybridpgm.infer import BeliefPropagation, bp_fused, rounding_floor
from hybridpgm.infer.bp_engine import _structure


def _potts_rows(dtype=torch.float32):
    """``(weak, strong)`` rows of a 6 x 6 3-state Potts grid: ``(coupling [1, E], unary [1, 36, 3])`` each; the
    weak one loopy with couplings about 0.8 (40 steps to ``tol = 1e-6``), the strong one with couplings 2500 and
    a unary of 500 (converged in 10 steps; messages of about 2500, a ``float32`` floor of ``4.8e-3``)."""
    H = W = 6
    E = 2 * H * (W - 1)
    weak = (0.8 + 0.1 * torch.randn(1, E, generator=torch.Generator().manual_seed(0)),
            0.3 * torch.randn(1, H * W, 3, generator=torch.Generator().manual_seed(0)))
    unary = torch.zeros(1, H * W, 3)
    unary[..., 0] = 500.0
    strong = (torch.full((1, E), 2500.0), unary)
    return tuple((c.to(dtype), u.to(dtype)) for c, u in (weak, strong))


def _potts(*rows):
    return potts_grid(6, 6, 3, coupling=torch.cat([c for c, _ in rows]), unary=torch.cat([u for _, u in rows]))


@pytest.mark.parametrize("strong_first", [False, True])
def test_a_strongly_coupled_float32_row_does_not_stop_a_weak_row_early_general_path(strong_first):
    """The audit's case (3 states: the general path).  Before, the batch stopped after 10-20 steps and the weak
    row was 5.2e-4 from its fixed point (its answer alone 1.8e-6); now it runs the weak row's 40 steps and
    the weak row's answer is its answer alone (here the same steps, so the same numbers; allowed: 1e-5)."""
    weak, strong = _potts_rows()
    bp = BeliefPropagation(num_iters=3000, damping=0.0, tol=1e-6)
    fixed_point = BeliefPropagation(num_iters=3000, damping=0.0, tol=0.0)(_potts(weak).factor_graph()).marginals[0]
    alone = bp(_potts(weak).factor_graph())
    strong_alone = bp(_potts(strong).factor_graph())
    rows = (strong, weak) if strong_first else (weak, strong)
    both = bp(_potts(*rows).factor_graph())
    w, s = (1, 0) if strong_first else (0, 1)
    assert (alone.marginals[0] - fixed_point).abs().max() < 1e-5       # what the stop gives the row alone
    assert (both.marginals[w] - fixed_point).abs().max() < 1e-5        # before: 5.2e-4
    assert (both.marginals[w] - alone.marginals[0]).abs().max() < 1e-5
    assert (both.marginals[s] - strong_alone.marginals[0]).abs().max() < 1e-5
    assert alone.converged and strong_alone.converged and both.converged
    assert strong_alone.num_iters < alone.num_iters <= both.num_iters


def test_the_weak_rows_gradients_in_the_batch_are_its_gradients_alone():
    """Gradients flow through the steps run: a row stopped early in the batch had other gradients than alone
    (before: they differed by far more than float32 rounding); now it runs its own steps."""
    weak, strong = _potts_rows()
    bp = BeliefPropagation(num_iters=3000, damping=0.0, tol=1e-6)
    c_alone = weak[0].clone().requires_grad_()
    bp(potts_grid(6, 6, 3, coupling=c_alone, unary=weak[1]).factor_graph()).log_z.sum().backward()
    c_both = torch.cat([weak[0], strong[0]]).requires_grad_()
    res = bp(potts_grid(6, 6, 3, coupling=c_both, unary=torch.cat([weak[1], strong[1]])).factor_graph())
    res.log_z[0].backward()
    assert torch.allclose(c_both.grad[0], c_alone.grad[0], rtol=1e-4, atol=1e-5)
    assert torch.equal(c_both.grad[1], torch.zeros_like(c_both.grad[1]))


def _ising_rows():
    """Weak and strong rows of an 8 x 8 Ising grid, ``(J [2, E], h [2, 64])`` in ``float32``: the weak one loopy
    (couplings about 0.4, 100 steps to ``tol = 1e-6``), the strong one ``J = h = 20`` (within
    :func:`~hybridpgm.infer.bp_fused.odds_max_spread`, so the binary path runs; shifted log-odds of 80, a floor of
    ``1.5e-4``; converged in 10 steps)."""
    E = 2 * 8 * 7
    g = torch.Generator().manual_seed(0)
    J0 = 0.4 + 0.1 * torch.randn(E, generator=g)
    h0 = 0.3 * torch.randn(64, generator=g)
    return torch.stack([J0, torch.full((E,), 20.0)]), torch.stack([h0, torch.full((64,), 20.0)])


@pytest.mark.parametrize("path", ["scripted", "autograd", "eager"])
def test_a_strongly_coupled_float32_row_does_not_stop_a_weak_row_early_binary_path(path):
    """The same on the binary fast path, all three of its forms.  Before, the batch stopped at step 60 and the
    weak row was 1.0e-4 from its answer alone (100 steps, 1.6e-6 from its fixed point)."""
    J, h = _ising_rows()
    bp = BeliefPropagation(num_iters=3000, tol=1e-6)
    fixed_point = BeliefPropagation(num_iters=3000, tol=0.0)(ising_grid(8, 8, J[0], field=h[0]).factor_graph())
    alone = bp(ising_grid(8, 8, J[:1], field=h[:1]).factor_graph())
    if path == "eager":
        fg = ising_grid(8, 8, J, field=h).factor_graph()
        g = fg.groups[0]
        marginals, _, _, converged, it = bp_fused.run_binary_forward(
            g.log_potentials, fg.unary, _structure(g.variables, fg.num_vars), 3000, False, 0.0, 1e-6, 10,
            script=False)
    else:
        res = bp(ising_grid(8, 8, J.clone().requires_grad_(path == "autograd"), field=h).factor_graph())
        marginals, converged, it = res.marginals.detach(), res.converged, res.num_iters
    assert (marginals[0] - alone.marginals[0]).abs().max() < 1e-5              # before: 1.0e-4
    assert (marginals[0] - fixed_point.marginals[0]).abs().max() < 1e-5
    assert converged and it == alone.num_iters == 100


def test_check_margin_is_each_models_own_test():
    """:func:`rounding_floor.check_margin` against the test written out per model: negative exactly when every model
    passes ``delta_b < max(tol, floor * s_b)``, for one model (on the host) and several (on the device), with the
    batch first (``dim=1``) or last (``dim=0``); NaN for a NaN change; ``-inf`` for nothing to compare."""
    floor = 16 * torch.finfo(torch.float32).eps
    tol = rounding_floor.tol_above(1e-6, torch.float32)
    # two models (columns): model 0 has messages of 2500 (floor 4.8e-3), model 1 of 1 and a change of 1e-3
    new = torch.tensor([[2500.0, 1.0], [0.0, 0.5]])
    change = torch.tensor([[1e-4, 1e-3], [0.0, -1e-4]])
    margin = rounding_floor.check_margin(new, change.clone(), 0, tol, floor)
    assert margin == pytest.approx(1e-3 - floor * 1.0, rel=1e-6)        # model 1 fails by its own floor
    assert rounding_floor.check_margin(new.t(), change.t().clone(), 1, tol, floor) == margin
    assert rounding_floor.check_margin(new[:, :1], change[:, :1].clone(), 0, tol, floor) < 0.0
    assert rounding_floor.check_margin(new[:, 1:], change[:, 1:].clone(), 0, tol, floor) > 0.0
    # a cap leaves hard-constraint stand-ins out of the scale
    big = torch.tensor([[1e30, 1.0], [1.0, 1.0]])
    assert rounding_floor.check_margin(big, torch.tensor([[0.0, 1e-3], [0.0, 0.0]]), 1, tol, floor, 2896.0) > 0.0
    assert rounding_floor.check_margin(big, torch.tensor([[0.0, 1e-3], [0.0, 0.0]]), 1, tol, floor) < 0.0
    assert rounding_floor.check_margin(big[:1], torch.tensor([[0.0, 1e-3]]), 1, tol, floor, 2896.0) > 0.0
    nan = torch.tensor([[0.0, float("nan")], [0.0, 0.0]])
    assert math.isnan(rounding_floor.check_margin(new, nan.clone(), 0, tol, floor))
    assert math.isnan(rounding_floor.check_margin(new[:, 1:], nan[:, 1:].clone(), 0, tol, floor))
    assert rounding_floor.check_margin(torch.zeros(0, 2), torch.zeros(0, 2), 0, tol, floor) == -math.inf


@pytest.mark.parametrize("models", [1, 3])
def test_a_change_just_under_tol_passes_in_float32_as_in_python_floats(models):
    """Guard of the exact decision (for one model the old test decided the same): ``float32(1e-6)`` is
    ``9.99999997e-07 < 1e-6``, so it passes ``tol = 1e-6``; compared in ``float32`` with ``tol`` rounded to
    the same number it would not.  ``tol_above`` gives the smallest ``float32`` not below ``tol``."""
    assert rounding_floor.tol_above(1e-6, torch.float32) == pytest.approx(1e-6, rel=1e-7)
    assert rounding_floor.tol_above(1e-6, torch.float64) == 1e-6
    just_under = torch.full((4, models), 1e-6)
    assert float(just_under[0, 0]) < 1e-6
    tol = rounding_floor.tol_above(1e-6, torch.float32)
    assert rounding_floor.check_margin(torch.zeros(4, models), just_under.clone(), 0, tol, 0.0) < 0.0
    at = torch.full((4, models), tol)
    assert rounding_floor.check_margin(torch.zeros(4, models), at, 0, tol, 0.0) == 0.0        # not below: fails


@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (5, 2), (301, 3), (1000, 16), (16128, 4), (513, 255), (40, 300)])
def test_column_amax_is_amax_over_rows(shape):
    g = torch.Generator().manual_seed(shape[0])
    x = torch.randn(*shape, generator=g)
    assert torch.equal(rounding_floor.column_amax(x), x.amax(0))
    x[shape[0] // 2, -1] = float("nan")
    got = rounding_floor.column_amax(x)
    assert torch.isnan(got[-1]) and torch.equal(got[:-1], x[:, :-1].amax(0))
