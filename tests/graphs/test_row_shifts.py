"""Renormalised log-space and max-sum steps (:mod:`hybridpgm.graphs.row_shifts`): the same contraction and the
same gradients, every step peaking at 0, the maxima kept in float64."""

import pytest
import torch

from hybridpgm.graphs.contraction import AbsorbingPlan, ContractionPlan
from hybridpgm.graphs.row_shifts import RowShifts

N = "rows"
SIZES = {N: 3, "a": 2, "b": 3, "c": 2, "d": 3, "e": 2}
#: a loop a-b-c-a, a three-way factor, a leaf e, a factor without the row dim (broadcast), a lone unary
DIMS = [(N, "a", "b"), (N, "b", "c"), (N, "c", "a"), (N, "b", "c", "d"), ("d", "e"), (N, "e"), ("a",)]


def _operands(seed: int, dtype=torch.float64, scale: float = 1.0) -> list:
    g = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(*(SIZES[d] for d in ds), generator=g, dtype=torch.float64)).to(dtype)
            .requires_grad_() for ds in DIMS]


@pytest.mark.parametrize("semiring", ["log", "max"])
@pytest.mark.parametrize("kind", ["plain", "absorbing"])
def test_the_renormalised_contraction_and_its_gradients_are_the_plain_ones(semiring, kind):
    """Value plus the kept maxima equals the plain contraction, the value itself is 0 (the last step is less its
    own maximum), and the gradients (marginals, the MAP's back-tracking) are the same to rounding."""
    plan = ContractionPlan(DIMS, (N,), SIZES) if kind == "plain" else AbsorbingPlan(DIMS, (N,), SIZES, batch_dim=N)
    ops = _operands(0)
    want = plan(ops, semiring)
    with RowShifts(plan) as rows:
        value = plan(ops, semiring)
    got = rows.added(value)
    assert torch.equal(value.detach(), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
    for a, b in zip(torch.autograd.grad(got.sum(), ops), torch.autograd.grad(want.sum(), ops)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


def test_rows_without_a_finite_entry_stay_impossible_and_other_plans_are_left_alone():
    """A row whose every entry is -inf contracts to -inf (its maximum is taken as 0, not -inf: no NaN), and a
    step of a plan other than the scope's is not shifted."""
    plan = ContractionPlan(DIMS, (N,), SIZES)
    ops = [t.detach().clone() for t in _operands(2)]
    ops[0][1] = -torch.inf
    other = ContractionPlan([(N, "a"), (N, "a")], (N,), {N: 3, "a": 2})
    pair = [torch.full((3, 2), 50.0, dtype=torch.float64)] * 2
    with RowShifts(plan) as rows:
        got = rows.added(plan(ops, "log"))
        elsewhere = other(pair, "log")
    assert got[1] == -torch.inf and torch.isfinite(got[[0, 2]]).all()
    torch.testing.assert_close(got, plan(ops, "log"), rtol=1e-14, atol=0)
    torch.testing.assert_close(elsewhere, torch.full((3,), 100 + torch.log(torch.tensor(2.0)).item(),
                                                     dtype=torch.float64))


def test_a_plan_with_more_than_one_output_dim_is_refused():
    with pytest.raises(ValueError, match="one row dim"):
        RowShifts(ContractionPlan(DIMS, (N, "a"), SIZES))
