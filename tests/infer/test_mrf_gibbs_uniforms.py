"""Chromatic Gibbs draws the uniforms of each colour's variables only.

Found by an audit: every colour step drew the ``[N, B, V, C]`` uniforms of all variables and kept its own
variables' (so that a seed gave the chains of the earlier full recomputation): ``#colours x N B V C`` draws per
sweep, ``V`` times the ones used on a fully connected net, about a tenth of a dense sweep's time.  Now a colour
draws ``[N, B, V_c, C]``: ``N B V C`` per sweep.  The chains for a seed change (the docs promise reproducibility
within a version only); :mod:`tests.infer.test_mrf_gibbs_colour_cost` checks them against an independent full
recomputation with the new draw order, and the statistical tests against exact distributions are unchanged.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hybridpgm.infer import ChromaticGibbs
from tests.infer.mrf_gibbs_cases import batched_grid, dense_family, dense_net


class _Draws(TorchDispatchMode):
    """Counts the uniforms drawn (elements of ``rand`` / ``uniform_`` outputs)."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ in ("rand", "uniform", "uniform_"):
            self.elements += out.numel()
        return out


def _draws_per_sweep(fg, num_chains: int) -> float:
    counts = []
    for sweeps in (1, 3):
        with _Draws() as mode:
            ChromaticGibbs(num_sweeps=sweeps)(fg, num_chains, generator=torch.Generator().manual_seed(0))
        counts.append(mode.elements)
    return (counts[1] - counts[0]) / 2


@pytest.mark.parametrize("make", [lambda: dense_family(12).factor_graph(), lambda: batched_grid().factor_graph(),
                                  lambda: dense_net(7, cards=(2, 3, 4), seed=2, triples=True).factor_graph()])
def test_a_sweep_draws_one_uniform_per_variable_state_and_chain(make):
    """Fails before: 12 (dense, 12 colours), 2 (grid) and 7 (mixed) times ``N B V C``."""
    fg = make()
    assert _draws_per_sweep(fg, 5) == 5 * fg.batch_size * fg.num_vars * fg.num_states


def test_the_same_generator_gives_the_same_chains_and_another_seed_other_chains():
    """Guard: what the docs promise for a seed (reproducible within a version)."""
    fg = dense_net(6, cards=(2, 3), seed=1).factor_graph()
    run = ChromaticGibbs(num_sweeps=4, thin=1)
    a, b, c = (run(fg, 16, return_trace=True, generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
