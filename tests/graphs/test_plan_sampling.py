"""Backward sampling along a contraction plan: every draw's probability is the brute-force joint, the
frequencies follow it, and chunking the samples changes nothing."""

import itertools
import math

import pytest
import torch
from scipy import stats

from hybridpgm.graphs import plan_sampling
from hybridpgm.graphs.contraction import AbsorbingPlan, ContractionPlan
from hybridpgm.graphs.plan_sampling import sample_plan

N = "rows"
SIZES = {N: 2, "a": 2, "b": 3, "c": 2, "d": 3, "e": 2}
#: a loop a-b-c-a, a three-way factor (b, c, d), a leaf e, a factor without the row dim (broadcast), and a
#: single-variable operand
DIMS = [(N, "a", "b"), (N, "b", "c"), (N, "c", "a"), (N, "b", "c", "d"), ("d", "e"), (N, "e"), ("a",)]
VARS = ["a", "b", "c", "d", "e"]


def _plan(kind: str):
    """The plan of DIMS: plain, or absorbing the leaf e, then d (a per-row vector once e is gone), first: their
    groups' steps are sampled last."""
    if kind == "plain":
        return ContractionPlan(DIMS, (N,), SIZES)
    plan = AbsorbingPlan(DIMS, (N,), SIZES, batch_dim=N)
    assert len(plan.groups) == 2 and len(plan.steps) == len(plan.main.steps) + 2
    return plan


def _operands(seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*(SIZES[d] for d in ds), generator=g, dtype=torch.float64) for ds in DIMS]


def _brute_log_joint(ops: list) -> torch.Tensor:
    """``[R, |a|, |b|, |c|, |d|, |e|]`` log p(x), normalised per row."""
    order = [N] + VARS
    score = sum(t.permute(sorted(range(len(ds)), key=lambda i: order.index(ds[i])))
                .reshape([SIZES[d] if d in ds else 1 for d in order]) for t, ds in zip(ops, DIMS))
    return score - score.flatten(1).logsumexp(1).reshape(-1, 1, 1, 1, 1, 1)


@pytest.mark.parametrize("kind", ["plain", "absorbing"])
@pytest.mark.parametrize("space", ["log", "prob"])
def test_each_drawn_sample_has_its_brute_force_probability(space, kind):
    ops = _operands(0)
    plan = _plan(kind)
    given = [t.exp() for t in ops] if space == "prob" else ops
    x, log_z, log_p, ok = sample_plan(plan, given, VARS, 500, torch.Generator().manual_seed(1), with_log_prob=True,
                                      space=space)
    assert bool(ok.all())
    joint = _brute_log_joint(ops)
    assert x.shape == (500, 2, 5) and log_p.shape == (500, 2)
    rows = torch.arange(2).expand(500, 2)
    want = joint[(rows,) + tuple(x[..., i] for i in range(5))]
    assert torch.allclose(log_p, want, atol=1e-12)
    assert torch.allclose(log_z, plan(ops, "log"), atol=1e-12)
    assert all(bool((x[..., i] < SIZES[v]).all()) for i, v in enumerate(VARS))


@pytest.mark.parametrize("kind", ["plain", "absorbing"])
def test_frequencies_follow_the_joint(kind):
    """Chi-square goodness of fit of 60,000 draws per row over all 144 joint states (a fixed seed: the test is
    deterministic; a wrong conditional gives a statistic in the thousands)."""
    ops = _operands(2)
    n = 60_000
    x, *_ = sample_plan(_plan(kind), ops, VARS, n, torch.Generator().manual_seed(3))
    p = _brute_log_joint(ops).exp().flatten(1)  # [R, 144]
    strides = torch.tensor([math.prod(SIZES[v] for v in VARS[i + 1:]) for i in range(5)])
    flat = (x * strides).sum(-1)  # [n, R]
    for r in range(2):
        counts = torch.bincount(flat[:, r], minlength=p.shape[1]).double()
        assert stats.chisquare(counts.numpy(), (n * p[r]).numpy()).pvalue > 1e-4


def test_chunked_samples_equal_one_piece(monkeypatch):
    ops = _operands(4)
    plan = ContractionPlan(DIMS, (N,), SIZES)
    whole = sample_plan(plan, ops, VARS, 300, torch.Generator().manual_seed(5), with_log_prob=True)
    monkeypatch.setattr(plan_sampling, "CHUNK_ELEMENTS", 40)  # 40 // (2 rows * |K|): 1-10 samples at a time
    chunked = sample_plan(plan, ops, VARS, 300, torch.Generator().manual_seed(5), with_log_prob=True)
    assert torch.equal(whole[0], chunked[0]) and torch.allclose(whole[2], chunked[2], atol=1e-12)


def test_a_plan_without_a_batch_dim_and_ruled_out_states():
    """No row dim: one row of samples.  ``-inf`` entries are never drawn."""
    sizes = {"a": 3, "b": 2}
    g = torch.Generator().manual_seed(6)
    ops = [torch.randn(3, 2, generator=g, dtype=torch.float64), torch.tensor([0.0, -math.inf, 0.5]).double()]
    ops[0][2, 1] = -math.inf
    plan = ContractionPlan([("a", "b"), ("a",)], (), sizes)
    x, log_z, log_p, ok = sample_plan(plan, ops, ["b", "a"], 2000, torch.Generator().manual_seed(7), with_log_prob=True)
    assert x.shape == (2000, 1, 2) and log_z.shape == (1,)
    assert not bool((x[..., 1] == 1).any()) and not bool(((x[..., 1] == 2) & (x[..., 0] == 1)).any())
    score = ops[0] + ops[1][:, None]
    assert torch.allclose(log_p, score[x[..., 1], x[..., 0]] - score.logsumexp((0, 1)), atol=1e-12)
    seen = {tuple(s) for s in x[:, 0].tolist()}
    assert seen == {(b, a) for a, b in itertools.product(range(3), range(2)) if score[a, b] > -math.inf}


def test_the_sampled_dims_must_be_named_once_each():
    plan = ContractionPlan(DIMS, (N,), SIZES)
    with pytest.raises(ValueError, match="must name every sampled dim once"):
        sample_plan(plan, _operands(0), VARS[:-1], 2)
    with pytest.raises(ValueError, match="must name every sampled dim once"):
        sample_plan(plan, _operands(0), VARS + ["a"], 2)
    with pytest.raises(ValueError, match="one batch dim or none"):
        sample_plan(ContractionPlan(DIMS, (N, "a"), SIZES), _operands(0), VARS[1:], 2)


def test_rows_that_underflow_in_probability_space_are_flagged():
    """Row 1's a-b table is scaled by e^-800 (zero in float64): its contraction underflows, so it comes back not
    ``ok``; row 0 keeps exact samples.  In log space both rows are fine."""
    ops = _operands(6)
    ops[0] = ops[0].clone()
    ops[0][1] -= 800.0
    plan = ContractionPlan(DIMS, (N,), SIZES)
    _, log_z, log_p, ok = sample_plan(plan, [t.exp() for t in ops], VARS, 50, torch.Generator().manual_seed(8),
                                      with_log_prob=True, space="prob")
    assert ok.tolist() == [True, False] and log_z[1] == -math.inf
    x, _, log_p, ok = sample_plan(plan, ops, VARS, 50, torch.Generator().manual_seed(8), with_log_prob=True)
    assert ok.tolist() == [True, True]
    rows = torch.arange(2).expand(50, 2)
    want = _brute_log_joint(ops)[(rows,) + tuple(x[..., i] for i in range(5))]
    assert torch.allclose(log_p, want, atol=1e-9)
    with pytest.raises(ValueError, match="space must be"):
        sample_plan(plan, ops, VARS, 2, space="max")


def test_no_rows_give_empty_samples():
    ops = [t[:0] if ds[0] == N else t for t, ds in zip(_operands(7), DIMS)]
    x, log_z, log_p, ok = sample_plan(ContractionPlan(DIMS, (N,), SIZES), ops, VARS, 5, with_log_prob=True)
    assert x.shape == (5, 0, 5) and log_z.shape == (0,) and log_p.shape == (5, 0) and ok.shape == (0,)
