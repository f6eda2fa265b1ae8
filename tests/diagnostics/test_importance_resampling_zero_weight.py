"""Systematic resampling never picks a draw of weight zero, however close to 1 the uniform is.

Found by an audit (the uniforms that pick states, carried from the CRF sampler): the last point
``(K - 1 + u) / K`` rounds to exactly 1.0 in float64 for ``u`` within about ``K`` ulps of 1 (``u = 1 - 2**-53``,
which :func:`torch.rand` draws), and the cumulative sum was forced to 1 at the last draw, so a point at or past
the end of the last positive weight picked the last draw, of weight zero there -- against the docstring's "a zero
weight is never picked".  The uniform is patched in the test only (the largest value :func:`torch.rand` gives).
"""

import torch

from hybridpgm.diagnostics.importance_resampling import resample_indices

LARGEST = 1 - 2.0 ** -53  # the largest float64 torch.rand draws


def _with_uniform(monkeypatch, value: float):
    real = torch.rand

    def rand(*shape, **kw):
        return torch.full_like(real(*shape, **kw), value)

    monkeypatch.setattr(torch, "rand", rand)


def test_a_trailing_zero_weight_is_never_picked_at_the_largest_uniform(monkeypatch):
    """Fails before: index 2 (weight 0) was picked in both columns."""
    lw = torch.tensor([[0.0, 0.3], [0.0, -0.2], [float("-inf"), float("-inf")]])
    _with_uniform(monkeypatch, LARGEST)
    idx = resample_indices(lw, "systematic")
    assert idx.tolist() == [[0, 0], [1, 1], [1, 1]]  # K * w = 1.5, 1.5 (and 1.72, 1.28): the last point in draw 1


def test_zero_weights_in_the_middle_and_at_the_end_at_both_ends_of_the_uniform(monkeypatch):
    """Guard (passes before too: with ``K = 7`` torch's division leaves the last point below 1.0): zero weights
    between and after positive ones, at both ends of the uniform's range."""
    lw = torch.log(torch.tensor([0.0, 0.2, 0.0, 0.5, 0.3, 0.0, 0.0], dtype=torch.float64))
    for u in (0.0, LARGEST):
        _with_uniform(monkeypatch, u)
        idx = resample_indices(lw, "systematic")
        assert bool(torch.isfinite(lw[idx]).all()), (u, idx.tolist())


def test_seeded_picks_are_unchanged_where_the_last_weight_is_positive():
    """Guard: the fix only moves a point that landed on a trailing zero weight (the old rule, computed here)."""
    g = torch.Generator().manual_seed(3)
    lw = torch.randn(50, 40, generator=g, dtype=torch.float64)
    lw[torch.rand(50, 40, generator=g) < 0.3] = float("-inf")
    lw[-1] = torch.randn(40, generator=g, dtype=torch.float64)  # every last weight positive
    idx = resample_indices(lw, "systematic", generator=torch.Generator().manual_seed(0))
    u = torch.rand(40, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cdf = torch.softmax(lw, 0).T.cumsum(1)
    cdf[:, -1] = 1.0
    old = torch.searchsorted(cdf, (torch.arange(50, dtype=torch.float64) + u) / 50, right=True).clamp(max=49).T
    assert torch.equal(idx, old)
