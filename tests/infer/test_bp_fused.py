"""The scripted no-grad forward pass of the binary BP fast path (hybridpgm/infer/bp_fused.py).

It must give the same numbers as the differentiable eager path (bit for bit:
same kernels in the same order) and as the pre-engine reference BP, on every
branch: the odds form and the two-branch form, batch 1 (padded gather) and
batched (``embedding_bag``), damping, max-product, convergence checks.
"""

import dataclasses
import math
import subprocess
import sys
import textwrap

import pytest
import torch

from hybridpgm.graphs import ising_grid
from hybridpgm.infer import BeliefPropagation
from hybridpgm.infer import bp_fused
from hybridpgm.infer.bp_engine import BinaryPairwise, _structure
from tests.infer.bp_reference import ReferenceBP


def _grid(seed, batch, coupling, dtype=torch.double, n=5):
    g = torch.Generator().manual_seed(seed)
    E = 2 * n * (n - 1)
    J = coupling * torch.randn(*batch, E, generator=g, dtype=dtype)
    h = torch.randn(*batch, n * n, generator=g, dtype=dtype)
    return J, h


def _three_paths(J, h, n=5, **kw):
    """(autograd path, scripted no-grad path, eager no-grad path) results on the same grid."""
    bp = BeliefPropagation(**kw)
    with_grad = bp(ising_grid(n, n, J.clone().requires_grad_(), h).factor_graph())
    fg = ising_grid(n, n, J, h).factor_graph()
    scripted = bp(fg)
    g = fg.groups[0]
    marginals, L, d, converged, it = bp_fused.run_binary_forward(
        g.log_potentials, fg.unary, _structure(g.variables, fg.num_vars), bp.num_iters, bp.max_product,
        bp.damping, bp.tol, bp.check_every, script=False)
    return with_grad, scripted, (marginals, converged, it), fg


@pytest.mark.parametrize("batch", [(), (3,)])
@pytest.mark.parametrize("max_product", [False, True])
@pytest.mark.parametrize("damping,tol", [(0.0, 0.0), (0.35, 0.0), (0.0, 1e-6), (0.35, 1e-6)])
def test_scripted_eager_and_autograd_paths_agree_bit_for_bit(batch, max_product, damping, tol):
    J, h = _grid(1, batch, 0.8)
    kw = dict(num_iters=23, damping=damping, tol=tol, max_product=max_product, check_every=4)
    grad, scripted, (eager_m, eager_conv, eager_it), fg = _three_paths(J, h, **kw)
    assert torch.equal(grad.marginals.detach(), scripted.marginals)
    assert torch.equal(eager_m, scripted.marginals)
    assert grad.num_iters == scripted.num_iters == eager_it
    assert grad.converged == scripted.converged == eager_conv
    assert torch.equal(grad.assignment, scripted.assignment)
    if not max_product:
        assert torch.equal(grad.log_z.detach(), scripted.log_z)
    if tol == 0:
        ref_log_z, ref_marg, ref_assign, _, _ = ReferenceBP(num_iters=23, damping=damping, tol=0.0,
                                                            max_product=max_product)(fg)
        assert scripted.num_iters == 23
        assert torch.allclose(scripted.marginals, ref_marg, atol=1e-12, rtol=0)
        assert torch.equal(scripted.assignment, ref_assign)
        if not max_product:
            assert torch.allclose(scripted.log_z, ref_log_z, atol=1e-10, rtol=0)


def test_strong_couplings_take_the_two_branch_form_and_match_reference():
    # |Delta| = 4|J| beyond log(float64 max) ~ 709: e^|Delta| would overflow, so the softplus form runs
    J, h = _grid(2, (2,), 300.0)
    fg = ising_grid(5, 5, J, h).factor_graph()
    assert not BinaryPairwise(fg).odds_form
    assert BinaryPairwise(ising_grid(5, 5, J / 300, h).factor_graph()).odds_form
    kw = dict(num_iters=15, damping=0.0, tol=0.0)
    grad, scripted, (eager_m, _, _), _ = _three_paths(J, h, **kw)
    assert torch.equal(grad.marginals.detach(), scripted.marginals) and torch.equal(eager_m, scripted.marginals)
    _, ref_marg, _, _, _ = ReferenceBP(**kw)(fg)
    assert torch.allclose(scripted.marginals, ref_marg, atol=1e-10, rtol=0)


def test_float32_grid_matches_float64_reference():
    J, h = _grid(3, (4,), 0.5, dtype=torch.float32, n=16)
    fg32 = ising_grid(16, 16, J, h).factor_graph()
    fg64 = ising_grid(16, 16, J.double(), h.double()).factor_graph()
    got = BeliefPropagation(num_iters=50, tol=0.0)(fg32).marginals
    _, ref, _, _, _ = ReferenceBP(num_iters=50, tol=0.0)(fg64)
    assert got.dtype == torch.float32
    assert float((got.double() - ref).abs().max()) < 1e-6


def test_padded_gather_equals_embedding_bag():
    J, h = _grid(4, (), 1.0, n=6)
    fg = ising_grid(6, 6, J, h).factor_graph()
    _, _, cols, offsets, pad = _structure(fg.groups[0].variables, fg.num_vars)
    assert pad.numel() == 3 * (offsets.numel() - 1)  # grid: at most 3 other messages per edge
    d = torch.randn(offsets.numel() - 1, 1, dtype=torch.double)
    padded = bp_fused.gather_others(d, cols, offsets, pad)
    bag = bp_fused.gather_others(d, cols, offsets, pad[:0])
    assert torch.equal(padded, bag)


def test_batch_shared_potentials_with_batched_fields():
    J, h = _grid(5, (3,), 0.7)
    fg = ising_grid(5, 5, J[0], h).factor_graph()
    group = fg.groups[0]
    shared = dataclasses.replace(fg, groups=[dataclasses.replace(group, log_potentials=group.log_potentials[:1])])
    kw = dict(num_iters=12, damping=0.2, tol=0.0)
    got = BeliefPropagation(**kw)(shared)
    _, ref_marg, _, _, _ = ReferenceBP(**kw)(fg)
    assert got.marginals.shape == (3, 25, 2)
    assert torch.allclose(got.marginals, ref_marg, atol=1e-12, rtol=0)


def test_gradient_at_zero_coupling_matches_finite_differences():
    # Delta = 0 exactly is where |Delta| has a kink; the messages are smooth there
    J = torch.zeros(12, dtype=torch.double, requires_grad=True)
    h = (0.5 * torch.randn(9, generator=torch.Generator().manual_seed(6), dtype=torch.double)).requires_grad_()

    def f(J, h):
        res = BeliefPropagation(num_iters=6, damping=0.1, tol=0.0)(ising_grid(3, 3, J, h).factor_graph())
        return res.log_z, res.marginals

    assert torch.autograd.gradcheck(f, (J, h))


def test_inference_mode_leaves_caches_usable_with_autograd():
    J, h = _grid(7, (), 0.5)
    variables_source = ising_grid(5, 5, J, h)
    with torch.inference_mode():
        fg = ising_grid(5, 5, J, h).factor_graph()   # inference tensors everywhere, nothing cached
        a = BeliefPropagation(num_iters=5)(fg).marginals
        fg2 = variables_source.factor_graph()
        b = BeliefPropagation(num_iters=5)(fg2).marginals   # caches built inside inference mode
    Jg = J.clone().requires_grad_()
    res = BeliefPropagation(num_iters=5, tol=0.0)(ising_grid(5, 5, Jg, h).factor_graph())
    res.marginals[..., 1].sum().backward()
    assert Jg.grad is not None and torch.isfinite(Jg.grad).all()
    assert torch.equal(a, b)


def test_import_compiles_nothing_and_first_use_warns_nothing():
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error")
        import torch
        import hybridpgm
        from hybridpgm.infer import bp_fused, BeliefPropagation
        from hybridpgm.graphs import ising_grid
        assert bp_fused._SCRIPTED is None
        fg = ising_grid(3, 3, torch.randn(12), torch.randn(9)).factor_graph()
        with torch.no_grad():
            BeliefPropagation(num_iters=3)(fg)
        assert isinstance(bp_fused._SCRIPTED, torch.jit.ScriptFunction), type(bp_fused._SCRIPTED)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("script", [True, False])
def test_a_check_that_finds_a_nan_message_reports_zero_steps(script):
    """The sentinel :class:`BeliefPropagation` turns into a named error.  Scripted, the loop tests the margin with
    ``not (m <= 0 or m > 0)``: TorchScript's ``m != m`` is False for a NaN, and its ``math.isnan`` returned an int
    in torch 2.5 (``INTERNAL ASSERT ... expected bool`` at every scripted call with ``tol > 0``)."""
    from tests.infer.test_belief_propagation import _overflowing_triangle

    fg = _overflowing_triangle(0.5).factor_graph()
    g = fg.groups[0]
    structure = _structure(g.variables, fg.num_vars)
    edge_var, other_var, cols, offsets, pad = structure
    threshold, limit = bp_fused.dtype_limits(fg.unary.dtype)
    fn = bp_fused._compiled() if script else bp_fused.binary_forward
    # with the precision bound lifted (math.inf) the loop runs on the overflowing tables and meets the NaN
    *_, converged, it = fn(g.log_potentials, fg.unary, edge_var, other_var, cols, offsets, pad, 5, 20, False,
                           threshold, limit, 0.0, 1e-6, 10, math.inf)
    assert (converged, it) == (False, 0)
    # as run: tables beyond odds_max_spread return at once, no step run (BeliefPropagation runs the general path)
    *_, converged, it = bp_fused.run_binary_forward(g.log_potentials, fg.unary, structure, 20, False, 0.0, 1e-6, 10,
                                                    script=script)
    assert (converged, it) == (False, -1)


def test_scripting_leaves_the_warning_filters_of_the_other_threads_alone(monkeypatch):
    """Before, the first use compiled inside warnings.catch_warnings() + simplefilter("ignore", DeprecationWarning):
    the process's filters (every thread's) began with that filter while TorchScript compiled."""
    import warnings

    from tests.script_filters import filters_while_compiling

    monkeypatch.setattr(bp_fused, "_SCRIPTED", None)
    seen = filters_while_compiling(monkeypatch)
    outside = list(warnings.filters)
    fn = bp_fused._compiled()
    assert isinstance(fn, torch.jit.ScriptFunction), bp_fused._SCRIPT_ERROR
    assert seen and all(filters == outside for filters in seen)
    assert list(warnings.filters) == outside
