"""ChromaticGibbs computes each colour's conditionals from the factors touching that colour only.

Before, every colour step recomputed the conditionals of all ``V`` variables from every factor and kept the
colour's: a sweep gathered ``#colours x`` the factor entries it needs, ``O(V^3)`` on a fully connected net
(``V`` colours, ``V^2 / 2`` factors). The chains must equal, bit for bit for a seed, those of an independent full
recomputation with the same draw order (:func:`tests.infer.mrf_gibbs_cases.reference_trace`: since the colour
steps draw their own variables' uniforms only, :mod:`tests.infer.test_mrf_gibbs_uniforms`, that is the new order,
so the equality tests below fail on the code that drew every variable's).
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hybridpgm.infer import ChromaticGibbs
from tests.infer.mrf_gibbs_cases import batched_grid, dense_family, dense_net, graphs, reference_trace


class _TableReads(TorchDispatchMode):
    """Sums the output elements of every op that reads one of ``tables`` (matched by storage)."""

    def __init__(self, tables):
        super().__init__()
        self.ptrs = {t.untyped_storage().data_ptr() for t in tables}
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        reads = any(isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() in self.ptrs for a in args)
        if reads and isinstance(out, torch.Tensor):
            self.elements += out.numel()
        return out


def _table_elements_per_sweep(fg, num_chains: int) -> int:
    counts = []
    for sweeps in (1, 3):
        with _TableReads([g.log_potentials for g in fg.groups]) as mode:
            ChromaticGibbs(num_sweeps=sweeps)(fg, num_chains, generator=torch.Generator().manual_seed(0))
        counts.append(mode.elements)
    return (counts[1] - counts[0]) // 2


def _incidence_entries(fg, num_chains: int) -> int:
    """``N B sum_f k_f C``: one ``C``-vector message per chain, model and factor-variable incidence."""
    return num_chains * fg.batch_size * sum(g.variables.numel() for g in fg.groups) * fg.num_states


@pytest.mark.parametrize("num_vars", [6, 12, 24])
def test_a_sweep_of_a_dense_net_reads_each_incidence_once(num_vars):
    """Fails before: ``num_vars`` colours each read all ``V (V - 1)`` incidences (6x, 12x, 24x the count)."""
    fg = dense_family(num_vars).factor_graph()
    assert int(fg.colors.max()) + 1 == num_vars
    assert _table_elements_per_sweep(fg, 3) == _incidence_entries(fg, 3)


def test_table_reads_grow_linearly_with_the_factors_of_dense_nets():
    """Fails before: the reads per factor grew with the number of colours (ratios 2, 4 instead of 1)."""
    per_factor = []
    for num_vars in (8, 16, 32):
        fg = dense_family(num_vars).factor_graph()
        per_factor.append(_table_elements_per_sweep(fg, 2) / fg.groups[0].variables.shape[0])
    assert per_factor[0] == per_factor[1] == per_factor[2]


@pytest.mark.parametrize("make", [lambda: batched_grid().factor_graph(),
                                  lambda: dense_net(7, cards=(2, 3, 4), seed=2, triples=True).factor_graph()])
def test_grids_and_mixed_arities_read_each_incidence_once(make):
    """Fails before on the mixed net (7 colours); the grid (2 colours) read twice its incidences."""
    fg = make()
    assert _table_elements_per_sweep(fg, 4) == _incidence_entries(fg, 4)


@pytest.mark.parametrize("name", list(graphs()))
@pytest.mark.parametrize("num_chains", [0, 1, 5])
def test_chains_are_bit_identical_to_the_full_recomputation(name, num_chains):
    """Every sweep's state equals the full recomputation's for the same seed and draw order,
    on grids, dense nets, mixed cardinalities with arity-3 factors, evidence, batches, float64, ``colors=None``,
    an all-zero colouring and unused colour ids."""
    fg = graphs()[name]
    want = reference_trace(fg, num_chains, 4, torch.Generator().manual_seed(7))
    got = ChromaticGibbs(num_sweeps=4)(fg, num_chains, return_trace=True, generator=torch.Generator().manual_seed(7))
    assert got.dtype == torch.long and torch.equal(got, want)


def test_a_given_init_gives_the_same_chains_and_is_not_changed():
    """Guard: with ``init`` the chains equal the full recomputation's, and ``init`` itself is left alone."""
    fg = graphs()["mixed_cards_evidence_batch3"]
    init = ChromaticGibbs(num_sweeps=1)(fg, 4, generator=torch.Generator().manual_seed(3)).to(torch.int32)
    kept = init.clone()
    want = reference_trace(fg, 4, 3, torch.Generator().manual_seed(5), init=init)
    got = ChromaticGibbs(num_sweeps=3)(fg, 4, init=init, return_trace=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(got, want) and torch.equal(init, kept)


def test_the_trace_holds_each_kept_sweep_not_a_view_of_the_running_state():
    """Guard: the state is updated in place now; kept sweeps must not change afterwards."""
    fg = dense_family(10).factor_graph()
    trace = ChromaticGibbs(num_sweeps=6)(fg, 8, return_trace=True, generator=torch.Generator().manual_seed(2))
    want = reference_trace(fg, 8, 6, torch.Generator().manual_seed(2))
    assert torch.equal(trace, want) and not torch.equal(trace[0], trace[-1])
