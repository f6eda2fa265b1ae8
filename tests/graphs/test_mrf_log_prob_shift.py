"""``MarkovNet.log_prob`` and ``distribution().log_prob`` under a constant added to the pairwise tables (found by a
metamorphic audit): :math:`\\log p(x) = s(x) - \\log Z` is the same in exact arithmetic, and float32 keeps it at any
constant, since both terms are taken of the tables less their maxima."""

import pytest
import torch

from tests.graphs.mrf_shift_cases import chain_tables, shifted_chain

#: the centred score is exact (sums of multiples of 1/64 under 2^17 in size) and the centred log Z̃, under 16 in
#: size on this chain (checked below), is rounded to a few float32 ulps of 16 (2e-6); uncentred, the difference
#: formed at 7 * 65536 and was off by 2.3e-4 at 4096, 2.4e-2 to 7.1e-2 at 65536
TOL32 = 2e-6


def _values(n: int = 8, rows: int = 5) -> dict:
    g = torch.Generator().manual_seed(2)
    return {f"x{i}": torch.randint(0, 3, (rows,), generator=g) for i in range(n)}


@pytest.mark.parametrize("method", ["exact", "bp"])
@pytest.mark.parametrize("shift", [4096.0, 65536.0])
def test_markov_net_log_prob_in_float32_ignores_a_constant_on_the_tables(shift, method):
    """Fails before: 2.3e-4 (exact) and 1.7e-3 (BP, exact on a chain) at 4096, 7.1e-2 and 1.0e-1 at 65536."""
    pair, unary = chain_tables()
    x = _values()
    with torch.no_grad():
        ref = shifted_chain(pair, unary, torch.float64)
        want = ref.log_prob(x)
        got = shifted_chain(pair, unary, torch.float32, shift).log_prob(x, method=method)
        assert float(ref.log_partition().abs()) < 16
    assert got.dtype == torch.float32 and got.shape == (5,)
    assert float((got.double() - want).abs().max()) < TOL32


@pytest.mark.parametrize("shift", [4096.0, 65536.0])
def test_distribution_log_prob_in_float32_ignores_a_constant_on_the_tables(shift):
    """Fails before: 2.3e-4 at 4096, 2.4e-2 at 65536.  The distribution's log Z itself keeps the constants."""
    pair, unary = chain_tables()
    x = torch.stack(list(_values().values()), -1)  # [5, V]
    with torch.no_grad():
        ref = shifted_chain(pair, unary, torch.float64).distribution()
        d = shifted_chain(pair, unary, torch.float32, shift).distribution()
        got = d.log_prob(x)
        assert float((d.log_partition.double() - ref.log_partition - 7 * shift).abs()) < 7 * shift * 2 ** -22
    assert float((got.double() - ref.log_prob(x)).abs().max()) < TOL32


def test_the_log_prob_gradient_at_a_large_constant_is_the_float64_one_at_zero():
    """Guard (passes before and after): the offsets are held constant, so d log p(x) / dθ (indicator less
    marginal) is float64's at 0, for both entry points."""
    pair, unary = chain_tables()
    x = _values(rows=1)
    xs = torch.stack(list(x.values()), -1)
    ref = shifted_chain(pair, unary, torch.float64, learn=True)
    net = shifted_chain(pair, unary, torch.float32, 65536.0, learn=True)
    for lp in (lambda m: m.log_prob(x).sum(), lambda m: m.distribution().log_prob(xs).sum()):
        want = torch.autograd.grad(lp(ref), list(ref.parameters()))
        got = torch.autograd.grad(lp(net), list(net.parameters()))
        for a, b in zip(got, want):
            assert torch.allclose(a.double(), b, atol=1e-6, rtol=0) and b.abs().max() > 0.1
