"""Loopy BP's general (k-ary) path under a constant added to its factor tables (found by a metamorphic audit):
the normalised messages do not depend on it, so marginals on a tree, where BP is exact, are float64's at any
constant; the Bethe log Z moves by the constants exactly."""

import pytest
import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.infer.bp_engine import BinaryPairwise
from tests.graphs.mrf_shift_cases import chain_tables, shifted_chain

#: float32 marginals: the messages are log-sums of centred entries under 10 in size, each step rounding them by a
#: few ulps of 10 (1e-6 relative to a probability of at most 1, from 8 steps of such): 1e-6; uncentred, the sums
#: formed at the tables' size and the marginals were off by 9e-5 at 4096, 1.3e-3 at 65536
TOL32 = 1e-6


def _worst(got: dict, want: dict) -> float:
    return max(float((got[v].double() - want[v]).abs().max()) for v in want)


@pytest.mark.parametrize("shift", [4096.0, 65536.0])
def test_pairwise_tables_far_from_zero_keep_the_float32_bp_marginals_of_a_chain(shift):
    """Fails before: 9.0e-5 at 4096, 1.3e-3 at 65536 (exact: 1.3e-7 at both)."""
    pair, unary = chain_tables()
    with torch.no_grad():
        want = shifted_chain(pair, unary, torch.float64).marginals("exact")
        net = shifted_chain(pair, unary, torch.float32, shift)
        assert not BinaryPairwise.applies(net.factor_graph())  # 3 states: the general path
        got = net.marginals("bp")
    assert _worst(got, want) < TOL32


def _triples(dtype: torch.dtype, shift: float, learn: bool = False) -> MarkovNet:
    """A tree of three-way factors (x0 x1 x2), (x2 x3 x4), (x4 x5 x6) over variables of 2 and 3 states (padded to 3:
    a padding entry is 0), tables multiples of 1/64 plus ``shift``, and fields."""
    g = torch.Generator().manual_seed(3)
    cards = [3, 2, 3, 2, 3, 2, 3]
    m = MarkovNet({f"x{i}": c for i, c in enumerate(cards)})
    for j in range(3):
        scope = [2 * j, 2 * j + 1, 2 * j + 2]
        t = torch.round(torch.randn(*(cards[i] for i in scope), generator=g, dtype=torch.float64) * 64) / 64
        t = (t + shift).to(dtype)
        m.add_factor(f"t{j}", [f"x{i}" for i in scope], torch.nn.Parameter(t) if learn else t)
    for i, c in enumerate(cards):
        m.add_factor(f"u{i}", [f"x{i}"], (torch.round(torch.randn(c, generator=g, dtype=torch.float64) * 64) / 64)
                     .to(dtype))
    return m


@pytest.mark.parametrize("shift", [65536.0, -65536.0])
def test_three_way_tables_far_from_zero_keep_the_float32_bp_marginals_of_a_tree(shift):
    """The k-ary update, on padded tables: the maximum is over the variables' states, not the padding's 0 (at
    -65536 that 0 would be the maximum and leave the tables where they were).  Fails before: off by 1.1e-3 at
    65536, 1.0e-3 at -65536."""
    with torch.no_grad():
        want = _triples(torch.float64, 0.0).marginals("exact")
        got = _triples(torch.float32, shift).marginals("bp")
    assert _worst(got, want) < TOL32


@pytest.mark.parametrize("shift", [65536.0, -65536.0])
def test_the_bethe_log_z_and_its_gradient_keep_the_constants(shift):
    """Guard: the Bethe log Z of a tree (its sums on centred tables, the maxima added back once:
    hybridpgm.infer.bethe) is the exact one, constants included (3 factors: 3 * shift), and its gradient, the factor
    marginals, is the unshifted model's.  Float64: log Z near 2e5 is held to 1e-9 (a few ulps of it)."""
    net, ref = _triples(torch.float64, shift, learn=True), _triples(torch.float64, 0.0, learn=True)
    got, want = net.log_partition("bp"), ref.log_partition("exact")
    assert abs(float(got.detach() - want.detach()) - 3 * shift) < 1e-9
    grads = torch.autograd.grad(got, list(net.parameters())), torch.autograd.grad(want, list(ref.parameters()))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-9, rtol=0) and b.abs().max() > 0.01
