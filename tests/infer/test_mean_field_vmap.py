"""MeanField under torch.func.vmap (hybridpgm/infer/mean_field.py, hybridpgm/infer/vmap_rows.py): a vmap over models
is answered as the batch of them, and a NaN or a bad init in one row is the named error.

Carried audit item: the final NaN test (``tol=0``) and the convergence read (``tol>0``) read a batched tensor on the
host, and torch raised its raw RuntimeError ("data-dependent control flow", ".item()")."""

import dataclasses

import pytest
import torch

from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.graphs.factor_graph import FactorGraph, FactorGroup
from hybridpgm.infer import MeanField
from tests.infer.test_mean_field_host_reads import _chain_with_an_impossible_end

J = torch.tensor([[[[0.3, -0.2], [0.1, 0.4]]] * 4], dtype=torch.float64)  # [1, F=4, 2, 2]
EDGES = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0]])
UNARY = torch.randn(3, 1, 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # 3 models


def _graph(unary: torch.Tensor) -> FactorGraph:
    return FactorGraph(names=list("abcd"), cardinalities=torch.full((4,), 2), unary=unary,
                       valid=torch.ones(unary.shape[0], 4, 2, dtype=torch.bool), groups=[FactorGroup(EDGES, J)],
                       colors=torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("kwargs", [dict(tol=0.0), dict(tol=1e-6), dict(tol=1e-9, check_every=1)])
def test_a_vmap_over_models_is_their_batch(kwargs):
    """Fails on the old code: torch's RuntimeError at the NaN test (tol=0) or the convergence read (tol>0)."""
    mf = MeanField(num_iters=40, **kwargs)
    log_z, marginals = torch.func.vmap(lambda u: (lambda r: (r.log_z, r.marginals))(mf(_graph(u))))(UNARY)
    batch = mf(_graph(UNARY[:, 0]))  # the 3 models as one batch: the sweeps stop once every model passes
    torch.testing.assert_close(log_z[:, 0], batch.log_z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(marginals[:, 0], batch.marginals, rtol=1e-12, atol=1e-12)


def test_per_model_gradients_under_vmap_of_grad():
    mf = MeanField(num_iters=30, tol=0.0)
    got = torch.func.vmap(torch.func.grad(lambda u: mf(_graph(u)).log_z.sum()))(UNARY)
    for i in range(3):
        u = UNARY[i].clone().requires_grad_()
        (want,) = torch.autograd.grad(mf(_graph(u)).log_z.sum(), u)
        torch.testing.assert_close(got[i], want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("tol", [0.0, 1e-6])
def test_a_row_left_with_no_finite_field_is_named(tol):
    """Fails on the old code: torch's RuntimeError; now the variable whose update first gave a NaN, and its row."""
    fg = _chain_with_an_impossible_end()

    def run(scale):
        groups = [dataclasses.replace(g, log_potentials=g.log_potentials * scale) for g in fg.groups]
        return MeanField(num_iters=12, tol=tol)(dataclasses.replace(fg, groups=groups)).log_z

    assert torch.isfinite(torch.func.vmap(run)(torch.zeros(2))).all()
    with pytest.raises(ModelSpecError, match=r"update of variable 'z' \(model 0, row 1 of the vmap\)"):
        torch.func.vmap(run)(torch.tensor([0.0, 1.0, 0.0]))


def test_a_bad_init_in_one_row_is_named():
    mf = MeanField(num_iters=5, tol=0.0)
    init = torch.full((3, 1, 4, 2), 0.5, dtype=torch.float64)
    init[2, 0, 1] = torch.tensor([-1.0, 1.0])
    with pytest.raises(DataError, match=r"init for variable 'b' \(model 0, row 2 of the vmap\) holds \[-1.0, 1.0\]"):
        torch.func.vmap(lambda u, q: mf(_graph(u), init=q).log_z)(UNARY, init)
    fine = torch.func.vmap(lambda u, q: mf(_graph(u), init=q).log_z)(UNARY, init.abs())
    torch.testing.assert_close(fine[:, 0], mf(_graph(UNARY[:, 0]), init=init.abs()[:, 0]).log_z)


@pytest.mark.parametrize("tol", [0.0, 1e-6])
def test_a_row_with_no_finite_field_is_named_under_nested_transforms(tol):
    """Before: torch's raw RuntimeError "accessing `data` under vmap transform is not allowed" (the rows were read
    with torch.func disabled around a wrapper's detach) under a vmap of a vmap and a vmap of a jvp."""
    fg = _chain_with_an_impossible_end()

    def run(scale):
        groups = [dataclasses.replace(g, log_potentials=g.log_potentials * scale) for g in fg.groups]
        return MeanField(num_iters=12, tol=tol)(dataclasses.replace(fg, groups=groups)).log_z

    with pytest.raises(ModelSpecError, match=r"update of variable 'z' \(model 0, row 1 of the vmap\)"):
        torch.func.vmap(torch.func.vmap(run))(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ModelSpecError, match=r"update of variable 'z' \(model 0, row 1 of the vmap\)"):
        torch.func.vmap(lambda s: torch.func.jvp(run, (s,), (torch.ones(()),)))(torch.tensor([0.0, 1.0]))


def test_a_bad_init_is_named_under_a_vmap_of_a_vmap():
    mf = MeanField(num_iters=5, tol=0.0)
    init = torch.full((3, 1, 4, 2), 0.5, dtype=torch.float64)
    init[2, 0, 1] = torch.tensor([-1.0, 3.0])
    with pytest.raises(DataError, match=r"init for variable 'b' \(model 0, row 2 of the vmap\) holds \[-1.0, 3.0\]"):
        torch.func.vmap(lambda q: torch.func.vmap(lambda u: mf(_graph(u), init=q).log_z)(UNARY))(init)
