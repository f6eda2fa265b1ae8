"""Mean field under constants added to the factor and unary tables (audit NUMERIC, finding 2): a constant changes
no mean-field update, so the marginals are those of the tables without it and the bound moves by exactly the
constants.  Before, :class:`~hybridpgm.infer.MeanField` swept the tables as given: its fields
:math:`\\theta_v + \\sum_f \\mathbb E_q[\\theta_f]` were formed at the constants' size, and float32 marginals were off
by 1.1e-3 at a constant of 65536 (5.2e-2 at :math:`2^{20}`), while BP on the same tables was within 6e-8.

Now the sweeps run on the tables less their maxima (:func:`~hybridpgm.graphs.mrf_centring.centred_graph`) and the
maxima are added to the bound once.  The tables of :mod:`tests.infer.bp_shift_cases` are multiples of 1/64 that stay
exact in float32 with a constant of :math:`2^{16}`, so their centred tables are the centred tables without the
constants, bit for bit: the marginals and the gradients are the float32 ones of the tables without constants,
exactly, and the bound is theirs plus the constants, to the rounding of a number of the constants' size.
"""

import pytest
import torch

from hybridpgm.infer import MeanField
from tests.infer.bp_shift_cases import KINDS, constants, shape_of, shifted_net

#: a fixed number of sweeps, so that every run makes the same updates
MF = {"num_iters": 30, "tol": 0.0}
EPS32 = torch.finfo(torch.float32).eps


def _shifts(kind: str, c: float, pattern: str) -> tuple[list, list]:
    cards, edges = shape_of(kind)
    return constants(len(cards), c, pattern), constants(len(edges), -c if pattern == "alternating" else c, pattern)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("c, pattern", [(65536.0, "same"), (65536.0, "alternating"), (-4096.0, "same")])
def test_constants_on_the_tables_leave_the_float32_marginals_bit_for_bit(kind, c, pattern):
    """Fails before: the marginals were off by 1.1e-3 to 1.0e-2 at 65536 (7e-5 to 4e-4 at -4096) from the float32
    marginals of the tables without constants."""
    unary_c, pair_c = _shifts(kind, c, pattern)
    with torch.no_grad():
        want = shifted_net(kind, torch.float32)[0].marginals("mean_field", **MF)
        got = shifted_net(kind, torch.float32, unary_c, pair_c)[0].marginals("mean_field", **MF)
    for v in want:
        assert torch.equal(got[v], want[v]), v


@pytest.mark.parametrize("kind", KINDS)
def test_the_bound_moves_by_the_constants_and_its_gradient_does_not(kind):
    """The bound less the constants is the bound without them to 4 float32 epsilons of its size (the rounding of
    one sum of the constants' size); its gradient with respect to every table is the one without constants, bit for
    bit (the maxima are constants).  Fails before: the bound off by 7e-3 to 1e-1 at 65536, and the gradient."""
    unary_c, pair_c = _shifts(kind, 65536.0, "alternating")
    net, unaries, pairs = shifted_net(kind, torch.float32, unary_c, pair_c, learn=True)
    ref, ref_unaries, ref_pairs = shifted_net(kind, torch.float32, learn=True)
    got, want = net.log_partition("mean_field", **MF), ref.log_partition("mean_field", **MF)
    total = sum(unary_c) + sum(pair_c)
    size = max(1.0, abs(float(want.detach())) + abs(total))
    assert abs(float(got.detach()) - total - float(want.detach())) <= 4 * EPS32 * size
    grads = torch.autograd.grad(got, unaries + pairs), torch.autograd.grad(want, ref_unaries + ref_pairs)
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_elbo_of_a_given_q_moves_by_the_constants():
    """MeanField.elbo of any q on tables with constants of alternating sign (summing to 0, their maxima exactly
    too) is the one without them, to 4 float32 epsilons of its own size: no sum is formed at the constants' size
    (fails before: 6.7e-3 off on the 4x4 grid at 65536, where 4 epsilons are 5.6e-6)."""
    unary_c, pair_c = _shifts("grid", 65536.0, "alternating")
    assert sum(unary_c) == 0 and sum(pair_c) == 0
    fg = shifted_net("grid", torch.float32, unary_c, pair_c)[0].factor_graph()
    ref = shifted_net("grid", torch.float32)[0].factor_graph()
    q = torch.softmax(torch.randn(ref.unary.shape, generator=torch.Generator().manual_seed(2)), -1)
    want = float(MeanField.elbo(ref, q))
    assert abs(float(MeanField.elbo(fg, q)) - want) <= 4 * EPS32 * max(1.0, abs(want))


def test_the_audit_chain_at_two_to_the_twenty():
    """The audit's reproducer: a 4-variable 3-state chain, tables multiples of 1/2 plus 2**20 (exact in float32):
    the float32 marginals are the float64 ones of the tables without the constant (fails before: 5.2e-2 off)."""
    g = torch.Generator().manual_seed(0)
    tabs = [torch.round(torch.randn(3, 3, generator=g, dtype=torch.float64) * 2) / 2 for _ in range(3)]

    def chain(dtype, const):
        from hybridpgm.graphs import MarkovNet
        m = MarkovNet({f"x{i}": 3 for i in range(4)})
        for i, t in enumerate(tabs):
            m.add_factor(f"f{i}", [f"x{i}", f"x{i + 1}"], (t + const).to(dtype))
        return m

    want = chain(torch.float64, 0.0).marginals("mean_field")
    got = chain(torch.float32, 2.0 ** 20).marginals("mean_field")
    assert max(float((got[v].double() - want[v]).abs().max()) for v in want) < 1e-6
