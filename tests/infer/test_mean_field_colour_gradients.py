"""Gradients through the per-colour mean-field sweeps equal those of the full recomputation.

The forward pass is bit-identical (:mod:`tests.infer.test_mean_field_colour_cost`), but the backward graphs differ:
the full recomputation back-propagates (exact) zeros through the other colours' rows and accumulates each
gradient in another order, so the two gradients agree only up to rounding. The bound: per sweep a gradient entry
of ``q`` is a sum of at most :math:`n = d_{max} + 2` contributions (one per incident factor, the pass-through of
the kept rows, the damping term), a table entry of :math:`k_f \\le n` (one per argument). Either order of a sum
of terms :math:`t_i` is within :math:`(n - 1)\\,\\epsilon/2 \\sum_i |t_i|` of the exact sum, so the two differ by at
most :math:`(n - 1)\\,\\epsilon \\sum_i |t_i|`; taking :math:`\\sum_i |t_i|` of the order of :math:`\\max|\\nabla|` and
``K`` sweeps whose backward map does not amplify an error (both assumptions: the couplings here are
:math:`\\mathcal N(0, 1)`, and the measured difference does not grow with ``K``):

.. math::  |\\nabla_{new} - \\nabla_{old}| \\le K\\,(d_{max} + 2)\\,\\epsilon\\,\\max|\\nabla_{old}|.

Measured on these cases with ``K = 10``: at most 3.2 ulps of :math:`\\max|\\nabla|` (5 with ``K = 25``), against a
bound of 60 to 140 ulps; a wrong gradient (a missing or doubled message) is off by :math:`O(1)` relative. Guards
(pass before and after).
"""

import dataclasses

import pytest
import torch

from hybridpgm.infer import MeanField
from tests.infer.mean_field_cases import reference_mean_field, with_dtype, with_leaves
from tests.infer.mrf_gibbs_cases import batched_grid, dense_family, dense_net, graphs

_CASES = {**graphs(), "dense12_float64": with_dtype(dense_family(12).factor_graph(), torch.float64),
          "grid_batch3_float64": with_dtype(batched_grid().factor_graph(), torch.float64)}
_SWEEPS = 10


def _gradients(run, fg):
    leafy, leaves = with_leaves(fg)
    res = run(leafy)
    w = torch.randn(res.marginals.shape, generator=torch.Generator().manual_seed(1), dtype=res.marginals.dtype)
    return torch.autograd.grad(res.log_z.sum() + (res.marginals * w).sum(), leaves)


@pytest.mark.parametrize("name", list(_CASES))
@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_gradients_agree_with_the_full_recomputation_to_the_rounding_bound(name, damping):
    fg = _CASES[name]
    mf = MeanField(num_iters=_SWEEPS, damping=damping, tol=0.0)
    got = _gradients(mf, fg)
    want = _gradients(lambda f: reference_mean_field(mf, f), fg)
    ulps = _SWEEPS * (int(fg.degrees().max()) + 2)
    eps = torch.finfo(fg.unary.dtype).eps
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        bound = ulps * eps * float(b.abs().max())
        assert float((a - b).abs().max()) <= bound


def test_gradcheck_through_the_sweeps_of_a_dense_net_with_mixed_cardinalities():
    """Guard: the per-colour plans (one gather of the tables per call, split into views) back-propagate the
    derivative, checked against finite differences in float64."""
    fg = with_dtype(dense_net(4, cards=(2, 3), seed=1, dtype=torch.float64).factor_graph(), torch.float64)
    leafy, leaves = with_leaves(fg)

    def f(*tensors):
        unary, *tables = tensors
        groups = [dataclasses.replace(g, log_potentials=t) for g, t in zip(leafy.groups, tables)]
        res = MeanField(num_iters=4, damping=0.2, tol=0.0)(dataclasses.replace(leafy, unary=unary, groups=groups))
        return res.log_z, res.marginals

    assert torch.autograd.gradcheck(f, tuple(leaves))
