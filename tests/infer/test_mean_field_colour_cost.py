"""MeanField computes each colour's field from the factors touching that colour only.

Found by an audit: every colour step recomputed the mean-field logits of all ``V`` variables from every factor and
kept the colour's rows, so a sweep contracted each factor ``#colours x k`` times: ``O(V^3)`` per sweep on a fully
connected pairwise net (``V`` colours, ``V^2 / 2`` factors). The answers must stay the same, bit for bit, as the
full recomputation (:func:`tests.infer.mean_field_cases.reference_mean_field`).
"""

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hybridpgm.infer import MeanField
from tests.graphs.largest_tensor import LargestTensor
from tests.infer.mean_field_cases import reference_mean_field, with_dtype
from tests.infer.mrf_gibbs_cases import batched_grid, dense_family, dense_net, graphs

#: ops that only move or copy entries; what they return from a table is a copy of it, tracked in turn
_MOVES = {"index", "index_select", "split", "split_with_sizes", "slice", "select", "narrow", "unbind", "view",
          "_unsafe_view", "reshape", "permute", "transpose", "t", "unsqueeze", "squeeze", "expand", "clone",
          "alias", "detach", "as_strided", "_to_copy"}


#: ops whose output is a table less a constant (:func:`~hybridpgm.graphs.mrf_centring.centred`, once per call):
#: the table the sweeps read, tracked as a copy is
_SHIFTS = {"sub"}


class _TableReads(TorchDispatchMode):
    """Sums the elements of the factor tables (or of moved or shifted copies of them) that enter arithmetic ops.

    Copies are tracked by storage and kept alive, so that no later tensor reuses their memory."""

    def __init__(self, tables):
        super().__init__()
        self.ptrs = {t.untyped_storage().data_ptr() for t in tables}
        self.kept = []
        self.elements = 0

    def _tracked(self, a) -> bool:
        return isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() in self.ptrs

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tracked = [a for a in args if self._tracked(a)]
        name = func.overloadpacket.__name__
        if tracked and (name in _MOVES or name in _SHIFTS and self._tracked(args[0])):
            for o in out if isinstance(out, (tuple, list)) else (out,):
                self.ptrs.add(o.untyped_storage().data_ptr())
                self.kept.append(o)
        else:
            self.elements += sum(a.numel() for a in tracked)
        return out


def _table_reads_per_sweep(fg) -> int:
    counts = []
    for sweeps in (1, 3):
        with torch.no_grad(), _TableReads([g.log_potentials for g in fg.groups]) as mode:
            MeanField(num_iters=sweeps, tol=0.0)(fg)
        counts.append(mode.elements)
    return (counts[1] - counts[0]) // 2


def _incidence_entries(fg) -> int:
    """``B sum_f k_f C^k_f``: each factor's table contracted once per argument."""
    return fg.batch_size * sum(g.log_potentials[0].numel() * g.arity for g in fg.groups)


@pytest.mark.parametrize("num_vars", [6, 12, 24])
def test_a_sweep_of_a_dense_net_contracts_each_table_once_per_argument(num_vars):
    """Fails before: ``num_vars`` colours each contracted all ``V (V - 1) / 2`` tables (6x, 12x, 24x the count)."""
    fg = dense_family(num_vars).factor_graph()
    assert int(fg.colors.max()) + 1 == num_vars
    assert _table_reads_per_sweep(fg) == _incidence_entries(fg)


def test_table_reads_grow_linearly_with_the_factors_of_dense_nets():
    """Fails before: the reads per factor grew with the number of colours (ratios 2, 4 instead of 1)."""
    per_factor = []
    for num_vars in (8, 16, 32):
        fg = dense_family(num_vars).factor_graph()
        per_factor.append(_table_reads_per_sweep(fg) / fg.groups[0].variables.shape[0])
    assert per_factor[0] == per_factor[1] == per_factor[2] == 8  # k C^k = 2 * 2^2


@pytest.mark.parametrize("make", [lambda: batched_grid().factor_graph(),
                                  lambda: dense_net(7, cards=(2, 3, 4), seed=2, triples=True).factor_graph()])
def test_grids_and_mixed_arities_contract_each_table_once_per_argument(make):
    """Fails before: the grid (2 colours) read twice its incidences, the mixed net (7 colours) 7 times."""
    fg = make()
    assert _table_reads_per_sweep(fg) == _incidence_entries(fg)


def _elements_per_sweep_and_factor(fg) -> float:
    counts = []
    for sweeps in (1, 3):
        pots = [g.log_potentials.detach().clone().requires_grad_() for g in fg.groups]
        leaf = dataclasses.replace(fg, groups=[dataclasses.replace(g, log_potentials=p)
                                               for g, p in zip(fg.groups, pots)])
        with LargestTensor() as mode:
            MeanField(num_iters=sweeps, tol=0.0)(leaf).log_z.sum().backward()
        counts.append(mode.elements)
    return (counts[1] - counts[0]) / 2 / sum(g.variables.shape[0] for g in fg.groups)


def test_forward_and_backward_work_per_factor_stays_flat_on_dense_nets():
    """Fails before: 1451, 2821, 5571 elements per factor and sweep at V = 8, 16, 32 (the full recomputation's
    forward and backward per colour; a gather of the tables per sweep would back-propagate a table-sized tensor per
    colour too). Now about 210 each: the per-colour copy of ``q``, ``O(V C)``, is linear in the ``V^2 / 2``
    factors too."""
    per_factor = [_elements_per_sweep_and_factor(dense_family(v).factor_graph()) for v in (8, 16, 32)]
    assert max(per_factor) <= 1.25 * min(per_factor), per_factor


_CASES = {**graphs(), "dense12_float64": with_dtype(dense_family(12).factor_graph(), torch.float64),
          "grid_batch3_float64": with_dtype(batched_grid().factor_graph(), torch.float64)}


@pytest.mark.parametrize("name", list(_CASES))
@pytest.mark.parametrize("damping, tol", [(0.0, 0.0), (0.3, 0.0), (0.0, 1e-6), (0.5, 1e-4)])
def test_results_are_bit_identical_to_the_full_recomputation(name, damping, tol):
    """Guard (passes before and after): marginals, bound, ``converged`` and sweeps equal the full recomputation's
    bit for bit, on grids, dense nets, mixed cardinalities with arity-3 factors, evidence, batches, float32 and
    float64, ``colors=None`` (one Jacobi block), an all-zero colouring and unused colour ids; the same factor
    contractions and the same summation order give the same roundings, so no tolerance is needed."""
    fg = _CASES[name]
    mf = MeanField(num_iters=25, damping=damping, tol=tol)
    got, want = mf(fg), reference_mean_field(mf, fg)
    assert torch.equal(got.marginals, want.marginals) and torch.equal(got.log_z, want.log_z)
    assert (got.converged, got.num_iters) == (want.converged, want.num_iters)
    init = torch.rand(fg.unary.shape, generator=torch.Generator().manual_seed(3), dtype=fg.unary.dtype)
    got, want = mf(fg, init=init), reference_mean_field(mf, fg, init=init)
    assert torch.equal(got.marginals, want.marginals) and torch.equal(got.log_z, want.log_z)
