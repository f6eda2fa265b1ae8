"""BP and mean field's convergence test allows for float rounding (hybridpgm/infer/rounding_floor.py)."""

import pytest
import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.graphs.grids import ising_grid
from hybridpgm.infer import BeliefPropagation, MeanField, bp_fused
from hybridpgm.infer import rounding_floor as floor_module
from hybridpgm.infer.bp_engine import _structure

EPS32 = torch.finfo(torch.float32).eps


def _tree(seed, dtype=torch.float32):
    """A 15-variable binary tree of 4-state variables with log-potentials ``5 * randn`` (ordinary ones)."""
    g = torch.Generator().manual_seed(seed)
    net = MarkovNet({f"v{i}": 4 for i in range(15)})
    for i in range(1, 15):
        net.add_factor(f"f{i}", [f"v{(i - 1) // 2}", f"v{i}"], 5 * torch.randn(4, 4, generator=g, dtype=dtype))
    return net


@pytest.mark.parametrize("seed", [4, 8, 9])
def test_float32_bp_on_a_tree_converges_at_its_exact_log_z(seed):
    """Found by review: float32 messages of magnitude ~50 move by about an ulp forever (the general path's
    b_v - m feeds a message back into itself), so these trees ran all 50 steps, converged=False, although the
    Bethe log Z is exact there."""
    net = _tree(seed)
    res = BeliefPropagation()(net.factor_graph())
    assert res.converged and res.num_iters < 50
    exact = float(net.double().log_partition("exact"))
    assert abs(float(res.log_z) - exact) <= 8 * EPS32 * abs(exact)  # float32 rounding of the Bethe sum


def _grid(seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (2.0 * torch.randn(2 * 8 * 7, generator=g, dtype=dtype), 5.0 * torch.randn(64, generator=g, dtype=dtype))


def test_the_binary_paths_stop_at_the_floor_alike():
    """float32 damped BP on a loopy 8 x 8 grid settles to rounding by step 50 (tol=1e-10 is below any float32
    change of these messages): the scripted, eager and autograd binary paths stop there, at the same step with
    the same numbers.  Before, all three ran the 60 steps."""
    J, h = _grid(0)
    bp = BeliefPropagation(num_iters=60, damping=0.5, tol=1e-10)
    fg = ising_grid(8, 8, J, field=h).factor_graph()
    scripted = bp(fg)
    grad = bp(ising_grid(8, 8, J.clone().requires_grad_(), field=h).factor_graph())
    g = fg.groups[0]
    eager_m, _, _, eager_conv, eager_it = bp_fused.run_binary_forward(
        g.log_potentials, fg.unary, _structure(g.variables, fg.num_vars), 60, False, 0.5, 1e-10, 10, script=False)
    assert scripted.converged and scripted.num_iters < 60
    assert (grad.converged, grad.num_iters) == (eager_conv, eager_it) == (True, scripted.num_iters)
    assert torch.equal(grad.marginals.detach(), scripted.marginals) and torch.equal(eager_m, scripted.marginals)


def test_mean_field_stops_at_the_floor():
    """float32 mean field on a loopy grid: changes of q below 16 eps are rounding (before, tol=1e-10 ran until
    a sweep happened to change nothing, 15 sweeps here, so 14 sweeps never converged).  The change of sweep 13 is
    within 0.5% of the floor (1.79e-6 on the tables as given, 1.91e-6 on the centred tables mean field sweeps since
    docs/deprecations.md's row), so the run stops at sweep 13 or 14: converged within 14 is the test."""
    J, h = _grid(0)
    res = MeanField(num_iters=14, tol=1e-10, check_every=1)(ising_grid(8, 8, J / 2, field=h).factor_graph())
    assert res.converged and res.num_iters <= 14


@pytest.mark.parametrize("kind", ["bp_binary", "bp_general", "mean_field"])
def test_float64_at_the_default_tol_is_as_without_a_floor(kind, monkeypatch):
    """Guard (passes on the code before the floor too): in float64 the floor (at most 16 sqrt(eps) = 2.4e-7) is
    under tol=1e-6, so runs are bit for bit those of the plain test delta < tol."""
    def run():
        out = []
        for seed, damping in [(0, 0.0), (1, 0.5), (2, 0.3)]:
            J, h = _grid(seed, torch.float64)
            if kind == "mean_field":
                r = MeanField(num_iters=200)(ising_grid(8, 8, J / 2, field=h).factor_graph())
            else:
                r = BeliefPropagation(num_iters=200, damping=damping)(
                    (_tree(seed, torch.float64) if kind == "bp_general" else ising_grid(8, 8, J, field=h))
                    .factor_graph())
            out.append((r.converged, r.num_iters, r.marginals, r.log_z))
        return out

    with_floor = run()
    monkeypatch.setattr(floor_module, "ROUNDING_ULPS", 0)
    without = run()
    for a, b in zip(with_floor, without):
        assert a[:2] == b[:2] and torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])


def test_huge_finite_penalties_do_not_raise_the_floor(monkeypatch):
    """Guard of the scale cap: -1e30 stand-ins for forbidden states would make c eps s about 1e15 and end a loopy
    float64 run at its first check; left out of s, the run is the one without a floor."""
    g = torch.Generator().manual_seed(3)
    net = MarkovNet({f"v{i}": 3 for i in range(6)})
    for i in range(6):
        table = torch.randn(3, 3, generator=g, dtype=torch.float64)
        table[:, 2] = -1e30                 # state 2 of the second variable is forbidden
        net.add_factor(f"f{i}", [f"v{i}", f"v{(i + 1) % 6}"], table)

    def run():
        r = BeliefPropagation(num_iters=200)(net.factor_graph())
        return r.converged, r.num_iters, r.marginals

    with_floor = run()
    monkeypatch.setattr(floor_module, "ROUNDING_ULPS", 0)
    without = run()
    assert with_floor[:2] == without[:2] and with_floor[1] > 10 and torch.equal(with_floor[2], without[2])
