"""The exact entropy of an MRF under a constant added to its tables (found by a metamorphic audit): H is the
same in exact arithmetic, and float32 gives it to float32's rounding of the centred tables' size at any constant."""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import MarkovNet
from tests.graphs.mrf_shift_cases import chain_tables, shifted_chain

#: the float32 error allowed: H = log Z̃ - E[s̃] of the centred tables, both under 30 in size on this chain (checked
#: below), each rounded to a few float32 ulps of 30 (2e-6); the uncentred difference was off by 1.7e-3 at 4096
#: and kept no digit at 65536 (it raised)
TOL32 = 1e-5


@pytest.mark.parametrize("shift", [4096.0, 65536.0])
def test_a_constant_on_every_pairwise_table_leaves_the_float32_entropy_as_float64s(shift):
    """Fails before: 1.7e-3 nats off at 4096; ModelSpecError "keeps no significant digit" at 65536 (H = 5.0)."""
    pair, unary = chain_tables()
    with torch.no_grad():
        want = shifted_chain(pair, unary, torch.float64).distribution().entropy()
        got = shifted_chain(pair, unary, torch.float32, shift).distribution().entropy()
        log_z = shifted_chain(pair, unary, torch.float64).log_partition()
    assert float(log_z.abs()) < 30 and 4.0 < float(want) < 6.0
    assert got.dtype == torch.float32
    assert abs(float(got.double() - want)) < TOL32


def test_the_entropy_gradient_at_a_large_constant_is_the_float64_one_at_zero():
    """dH/dθ (a second derivative of log Z) does not see the constant either: float32 tables near 65536 give
    float64's gradient at 0 to float32 rounding (fails before: the entropy raised there)."""
    pair, unary = chain_tables()
    ref = shifted_chain(pair, unary, torch.float64, learn=True)
    want = torch.autograd.grad(ref.distribution().entropy(), list(ref.parameters()))
    net = shifted_chain(pair, unary, torch.float32, 65536.0, learn=True)
    got = torch.autograd.grad(net.distribution().entropy(), list(net.parameters()))
    assert len(got) == len(pair) == 7
    for a, b in zip(got, want):
        # dH/dθ_f(x) = -p(x_f)(s-terms of size |log p| < 10): float32 rounding of those, 1e-5 with room
        assert torch.allclose(a.double(), b, atol=1e-5, rtol=0) and b.abs().max() > 0.01


def test_a_huge_penalty_one_table_puts_on_all_its_states_is_centred_away():
    """A factor of -1e30 on every state (a constant) leaves H that of the model without it; before, log Z = -1e30
    made the float32 entropy raise "keeps no significant digit"."""
    def net(dtype, constant):
        m = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.tensor([[0.25, -0.5, 1.0],
                                                                                  [0.0, 0.75, -1.25]], dtype=dtype))
        if constant:
            m.add_factor("k", ["b", "a"], torch.full((3, 2), -1e30, dtype=dtype))
        return m

    want = net(torch.float64, False).distribution().entropy()
    got = net(torch.float32, True).distribution().entropy()
    assert abs(float(got.double() - want)) < 1e-6  # log Z̃ about 2: a few float32 ulps of 2


def test_penalties_no_assignment_escapes_still_keep_no_digit():
    """Guard (passes before and after): three pairwise factors a = b, b = c, a != c, each -1e30 where broken
    (float32), cannot all hold, and no table pays -1e30 on all its states: every assignment pays at least one, so
    log Z stays near -1e30 after the centring and H = log Z - E[score] keeps no digit: it raises, naming the model."""
    P = -1e30
    eq = torch.tensor([[0.0, P], [P, 0.0]])
    ne = torch.tensor([[P, 0.0], [0.0, P]])
    m = (MarkovNet({"a": 2, "b": 2, "c": 2}).add_factor("ab", ["a", "b"], eq).add_factor("bc", ["b", "c"], eq)
         .add_factor("ac", ["a", "c"], ne))
    with pytest.raises(ModelSpecError, match=r"exact entropy: model\(s\) \[0\] have log Z = -1e\+30 .*no "
                                             r"significant digit"):
        m.distribution().entropy()
