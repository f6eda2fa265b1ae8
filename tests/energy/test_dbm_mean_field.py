"""The stopping test of :meth:`DBM.mean_field <hybridpgm.energy.DBM.mean_field>`: the rounding floor.

Found by an audit: the sweeps stopped only at an absolute ``tol``, but a ``float32`` mean-field iteration settles on
a cycle of an ulp or two (a change of ``1.2e-7`` to ``2.4e-7`` that never shrinks), so ``tol=1e-7`` ran every one
of ``steps`` sweeps.  A sweep now stops below ``max(tol, 16 * eps)``
(:mod:`hybridpgm.infer.rounding_floor`), as :class:`~hybridpgm.infer.MeanField` does.
"""

import copy

import pytest
import torch

from hybridpgm.energy import DBM


def _dbm(dtype):
    torch.manual_seed(0)
    dbm = DBM([40, 60, 60, 30], init_scale=0.5).to(dtype)
    v = (torch.rand(16, 40) < 0.5).to(dtype)
    return dbm, v


def _sweeps(dbm, v, steps, tol):
    """``(means, sweeps run)``: the sweeps counted through the layer updates (three hidden layers a sweep)."""
    calls = [0]
    layer_logits = dbm.layer_logits

    def counted(x, l):
        calls[0] += 1
        return layer_logits(x, l)

    dbm.layer_logits = counted
    try:
        mu = dbm.mean_field(v, steps=steps, tol=tol)
    finally:
        del dbm.layer_logits
    return [m.detach() for m in mu], calls[0] // 3


def test_float32_mean_field_stops_at_the_rounding_floor_below_tol():
    """``float32`` with ``tol=1e-7`` (allowed: any finite number >= 0) stops once the change is rounding, where it
    ran all 1000 sweeps, and its means are then as close to the ``float64`` fixed point as the floor allows."""
    dbm, v = _dbm(torch.float32)
    mu, sweeps = _sweeps(dbm, v, steps=1000, tol=1e-7)
    assert sweeps < 1000
    exact, _ = _sweeps(*_dbm(torch.float64), steps=3000, tol=0.0)
    for l in (1, 2, 3):
        torch.testing.assert_close(mu[l].double(), exact[l], rtol=0, atol=1e-4)


def test_tol_zero_runs_every_sweep_and_a_tol_above_the_floor_is_unchanged():
    """Guard (passes before and after the fix): ``tol=0`` runs every sweep; ``tol=1e-5``, above the ``float32``
    floor, stops where the plain ``change < tol`` test stopped (199 sweeps here) and ``float64`` likewise."""
    dbm, v = _dbm(torch.float32)
    assert _sweeps(dbm, v, steps=50, tol=0.0)[1] == 50
    assert _sweeps(dbm, v, steps=1000, tol=1e-5)[1] == 199
    dbm, v = _dbm(torch.float64)
    assert _sweeps(dbm, v, steps=1000, tol=1e-5)[1] == 199
    assert _sweeps(dbm, v, steps=1000, tol=1e-7)[1] < 1000


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_has_no_floor_and_settles_within_a_few_ulps(dtype):
    """In float16 / bfloat16, 16 eps (0.0156 / 0.125) is far above the changes of sweeps that still converge: a
    floor stopped them 1e-2 (float16) and 7e-2 (bfloat16) from the fixed point.  Without one, the default
    ``tol`` ends the sweeps at the dtype's own fixed point: within 4 eps of the float64 means (a recomputed mean
    rounds by eps/2 at most; a few such roundings)."""
    torch.manual_seed(0)
    sizes = [20, 40, 40, 10]
    dbm = DBM(sizes)
    with torch.no_grad():
        for w in dbm.weights:
            w.copy_(torch.randn_like(w) * 0.25)
        for b in dbm.biases:
            b.zero_()
    v = (torch.rand(16, 20) < 0.5).double()
    reference = [m.detach() for m in copy.deepcopy(dbm).double()._mean_field(v, steps=2000, tol=0.0)]
    half = copy.deepcopy(dbm).to(dtype)
    means = half.mean_field(v.to(dtype), steps=300)
    error = max(float((m.double() - r).abs().max()) for m, r in zip(means[1:], reference[1:]))
    assert error < 4 * torch.finfo(dtype).eps, error
