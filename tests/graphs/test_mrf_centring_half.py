"""Half-precision tables less their maxima (hybridpgm.graphs.mrf_centring, audit NUMERIC finding 1): a float16 or
bfloat16 table whose entries share a sign is centred in float32 and rounded once back, so that a constant on a table
no longer moves BP's or mean field's marginals; a table straddling 0 is left as it is (centring would round its
entries at up to twice their size).  Before, every half-precision table was left as it was."""

import warnings

import pytest
import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.graphs.mrf_centring import centred

HALF = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", HALF)
def test_a_table_of_one_sign_is_centred_in_float32_and_rounded_once(dtype):
    """Fails before: the table came back as it was, m = 0."""
    t = torch.tensor([[300.0, 1.0, 257.0], [-3.0, -40.5, -1000.0]], dtype=dtype)
    c, m = centred(t, 1)
    assert torch.equal(m, torch.tensor([300.0, -3.0], dtype=dtype))
    assert c.dtype == dtype and torch.equal(c, (t.float() - m.float()[:, None]).to(dtype))
    assert float(c.amax()) == 0.0


@pytest.mark.parametrize("dtype", HALF)
def test_the_maximum_and_the_sign_test_are_over_the_allowed_finite_entries(dtype):
    """A ruled-out entry (states False) and -inf enter neither the maximum nor the sign test: -inf stays -inf, the
    ruled-out entry moves with the others.  Fails before: nothing was centred."""
    t = torch.tensor([[[float("-inf"), -5.0], [7.0, -2.0]]], dtype=dtype)
    states = torch.tensor([[[True, True], [False, True]]])
    c, m = centred(t, 2, states)
    assert torch.equal(m, torch.tensor([-2.0], dtype=dtype))
    assert torch.equal(c, torch.tensor([[[float("-inf"), -3.0], [9.0, 0.0]]], dtype=dtype))


def test_a_float16_entry_taken_past_the_range_stays_finite_with_the_tables_gradient():
    """The entries the maximum is over stay in range (one sign); an entry it is not over (a state the evidence rules
    out, padding) may not: here -65504 less a maximum of 2000 is kept at finfo.min, and 30000 less -40000 at
    finfo.max (a finite entry stays finite, never inf, which a zero probability would make NaN); the gradient,
    forward and backward, is the identity's on every entry (the maxima and the clamp are constants).  Fails before:
    nothing was centred."""
    info = torch.finfo(torch.float16)
    t = torch.tensor([[1000.0, 2000.0, info.min], [30000.0, -40000.0, -40001.0]], dtype=torch.float16,
                     requires_grad=True)
    states = torch.tensor([[True, True, False], [False, True, True]])
    c, m = centred(t, 1, states)
    assert torch.equal(m, torch.tensor([2000.0, -40000.0], dtype=torch.float16))
    assert torch.equal(c.detach(), torch.tensor([[-1000.0, 0.0, info.min], [info.max, 0.0, 0.0]],
                                                dtype=torch.float16))
    (grad,) = torch.autograd.grad(c, t, torch.arange(6.0).reshape(2, 3).to(torch.float16))
    assert torch.equal(grad, torch.arange(6.0).reshape(2, 3).to(torch.float16))
    tangent = torch.ones_like(t.detach())
    _, out = torch.func.jvp(lambda x: centred(x, 1, states)[0], (t.detach(),), (tangent,))
    assert torch.equal(out, tangent)


def _chain(dtype: torch.dtype, const: float) -> MarkovNet:
    """The audit's chain: 4 three-state variables, pairwise tables multiples of 1/2 plus ``const`` (exact in
    float16 at 1000 and in bfloat16 at 64: the same model with and without it)."""
    g = torch.Generator().manual_seed(0)
    m = MarkovNet({f"x{i}": 3 for i in range(4)})
    for i in range(3):
        t = torch.round(torch.randn(3, 3, generator=g, dtype=torch.float64) * 2) / 2
        table = (t + const).to(dtype)
        assert torch.equal(table.double() - const, t)
        m.add_factor(f"f{i}", [f"x{i}", f"x{i + 1}"], table)
    return m


@pytest.mark.parametrize("method", ["bp", "mean_field"])
@pytest.mark.parametrize("dtype, const", [(torch.float16, 1000.0), (torch.bfloat16, 64.0)])
def test_a_constant_on_the_tables_leaves_half_precision_marginals_to_a_few_epsilon(method, dtype, const):
    """BP (exact on this chain) and mean field in half precision are within 4 bfloat16 epsilons (3.1e-2; the
    float16 and bfloat16 runs without the constant are within 2e-3) of float64's answer for the tables without the
    constant, and within 6e-3 of the half-precision answer without it.  Fails before: BP off by 0.10 (float16) and
    0.14 (bfloat16), mean field by 0.19 and 0.20."""
    want = _chain(torch.float64, 0.0).marginals(method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a half-precision BP may warn that it has not converged
        got = _chain(dtype, const).marginals(method)
        plain = _chain(dtype, 0.0).marginals(method)
    eps = torch.finfo(torch.bfloat16).eps
    assert max(float((got[v].double() - want[v]).abs().max()) for v in want) < 4 * eps
    assert max(float((got[v].double() - plain[v].double()).abs().max()) for v in want) < 6e-3
