"""MeanField writes each colour's rows of ``q`` in place instead of copying the whole ``q`` per colour.

Found by an audit: after the per-colour fields, every colour step still made a new ``[B, V, C]`` tensor (the
out-of-place ``index_copy``): :math:`O(B V C)` per colour, :math:`O(B V^2 C)` per sweep on a fully connected net
(``V`` colours), and a fixed cost per colour on small grids.  Now a colour writes its ``[B, V_c, C]`` rows in place
and a sweep makes a fixed number of ``q``-sized tensors (the copy kept for the change and the change itself),
whatever the number of colours.  The results stay bit-identical (:mod:`tests.infer.test_mean_field_colour_cost`),
and the gradients too (:mod:`tests.infer.test_mean_field_colour_gradients`).
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hybridpgm.infer import MeanField
from tests.infer.mean_field_cases import reference_mean_field, with_leaves
from tests.infer.mrf_gibbs_cases import batched_grid, dense_family


class _FullSizeOutputs(TorchDispatchMode):
    """Counts the new tensors of ``q``'s shape ``[B, V, C]`` that ops return: not in-place ops (whose names end in
    ``_``) nor views (``detach``), which return an argument's storage."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.overloadpacket.__name__.endswith("_"):
            inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
            for o in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(o, torch.Tensor) and tuple(o.shape) == self.shape \
                        and o.untyped_storage().data_ptr() not in inputs:
                    self.count += 1
        return out


def _full_size_tensors_per_sweep(fg, damping=0.0) -> float:
    counts = []
    for sweeps in (1, 3):
        with torch.no_grad(), _FullSizeOutputs(fg.unary.shape) as mode:
            MeanField(num_iters=sweeps, damping=damping, tol=0.0)(fg)
        counts.append(mode.count)
    return (counts[1] - counts[0]) / 2


@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_a_sweep_makes_a_fixed_number_of_q_sized_tensors_whatever_the_colours(damping):
    """Fails before: 2 + V per sweep on the dense nets (one copy of ``q`` per colour: 10, 18, 34) and 4 on the
    grid; then 3 on all of them (the copy for the change, the difference, its absolute value); now none with
    ``tol=0``, which computes no change (the first sweep copies ``q``, and with ``tol > 0`` each checked sweep)."""
    counts = [_full_size_tensors_per_sweep(dense_family(v).factor_graph(), damping) for v in (8, 16, 32)]
    counts.append(_full_size_tensors_per_sweep(batched_grid().factor_graph(), damping))
    assert counts == [0, 0, 0, 0], counts


def test_in_place_writes_keep_the_gradients_of_the_copies():
    """Guard (passes before and after): with the in-place writes, the gradient into the potentials through the
    sweeps, with damping, equals the full recomputation's to a few ulps (the same backward formulas)."""
    fg = dense_family(6).factor_graph()
    mf = MeanField(num_iters=5, damping=0.3, tol=0.0)
    grads = []
    for run in (mf, lambda f: reference_mean_field(mf, f)):
        leafy, leaves = with_leaves(fg)
        res = run(leafy)
        grads.append(torch.autograd.grad(res.log_z.sum() + res.marginals[..., 0].sum(), leaves))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=64 * torch.finfo(a.dtype).eps * float(b.abs().max()))


def test_mean_field_under_forward_mode_ad_equals_finite_differences():
    """Guard: a dual tensor outside any torch.func transform is written in place too; its tangent is the
    directional derivative (float64 central differences)."""
    import dataclasses

    import torch.autograd.forward_ad as fwAD

    fg = dense_family(5).factor_graph()
    fg = dataclasses.replace(fg, unary=fg.unary.double(),
                             groups=[dataclasses.replace(g, log_potentials=g.log_potentials.double())
                                     for g in fg.groups])
    direction = torch.randn(fg.groups[0].log_potentials.shape, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)
    mf = MeanField(num_iters=6, damping=0.2, tol=0.0)

    def at(t):
        return mf(dataclasses.replace(fg, groups=[dataclasses.replace(fg.groups[0], log_potentials=t)])).log_z

    table = fg.groups[0].log_potentials
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(at(fwAD.make_dual(table, direction))).tangent
    h = 1e-6
    numeric = (at(table + h * direction) - at(table - h * direction)) / (2 * h)
    torch.testing.assert_close(tangent, numeric, rtol=1e-6, atol=1e-8)
