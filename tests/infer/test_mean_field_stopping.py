"""When :class:`~hybridpgm.infer.MeanField` stops: ``tol=0`` runs every sweep.

Found by an audit: the rounding floor (:mod:`hybridpgm.infer.rounding_floor`) made the stopping test
``change < max(tol, 16 * eps)``, which ``tol=0`` meets too, so mean field stopped (and claimed ``converged``) once
``q`` settled, after 8 of 100 sweeps in ``float32``, where its docstring says ``0`` runs all ``K`` sweeps (as
:class:`~hybridpgm.infer.BeliefPropagation`'s ``tol=0`` does, and each row's answer is then its own, whatever the
rest of the batch does).
"""

import pytest
import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.graphs.factor_graph import FactorGraph, FactorGroup
from hybridpgm.infer import MeanField


def _graph(dtype, rows=1):
    g = torch.Generator().manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.randn(rows, 2, 3, generator=g, dtype=torch.float64).to(dtype))
    mrf.add_factor("bc", ["b", "c"], torch.randn(rows, 3, 2, generator=g, dtype=torch.float64).to(dtype))
    return mrf.factor_graph()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tol_zero_runs_every_sweep_and_claims_nothing(dtype):
    res = MeanField(num_iters=100, tol=0.0)(_graph(dtype))
    assert res.num_iters == 100 and not res.converged


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_positive_tol_still_stops_early(dtype):
    """Guard (passes before and after): ``tol > 0`` stops once ``q`` settles, and says so."""
    res = MeanField(num_iters=100, tol=1e-6)(_graph(dtype))
    assert res.converged and res.num_iters < 100


def test_tol_zero_gives_each_row_its_answer_alone():
    """With ``tol=0`` a row's ``q`` in a batch is bit for bit its ``q`` alone, ``K`` sweeps each."""
    fg = _graph(torch.float32, rows=4)
    together = MeanField(num_iters=60, tol=0.0)(fg).marginals
    for b in range(4):
        row = FactorGraph(fg.names, fg.cardinalities, fg.unary[b:b + 1], fg.valid[b:b + 1],
                          [FactorGroup(g.variables, g.log_potentials[b:b + 1]) for g in fg.groups], fg.colors)
        alone = MeanField(num_iters=60, tol=0.0)(row).marginals
        assert torch.equal(together[b:b + 1], alone)
