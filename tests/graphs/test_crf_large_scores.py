"""LinearChainCRF in float32 with transition scores of large magnitude (1e2 .. 1e4) and near ties, against float64
on the same (float32-representable) scores.

Each step's :math:`\\alpha_{t-1}(i) + A_{ij}` rounds to ``ulp(|A|)``.  ``torch.logsumexp``'s backward weighed the
entries by ``exp(x - result)`` with ``result`` rounded as much, so a step's pairwise marginal summed to
:math:`p(y_t = j) (1 \\pm \\mathrm{ulp}(|A|))`, and :math:`\\log Z - \\mathbb E[s]` with :math:`\\mathbb E[s] \\ni
\\sum A\\, p(y_{t-1}, y_t)` lost :math:`|A| \\cdot \\mathrm{ulp}(|A|)`: the entropy of the example below was 1.63 in
float32 against 0.635 in float64 (10 to 20 nats off at :math:`|A| = 10^4`), under ``torch.func`` as well.

Allowances, as in ``test_crf_float32`` (derived there, not fitted): step ``t`` rounds four times, each by at most
:math:`\\epsilon m_t / 2` with :math:`m_t = \\max_l |\\phi_t(l)| + (\\max A - \\min A) + \\log L` (the recursions
run on the transitions relative to their largest, adding the level back exactly: ``crf_recursions``); independent errors
of either sign, so log Z is within ``steps`` = :math:`3 \\sqrt{\\sum_t (2 \\epsilon m_t)^2}` and the entropy (log Z
minus an expected score rounded as often) within twice that.  A marginal :math:`p` is a ratio of two such sums
over labellings, :math:`\\log p = \\log Z_{y_t = l} - \\log Z`, so :math:`|\\Delta \\log p| \\le 2\\,` ``steps`` and,
by the complement, :math:`|\\Delta p| \\le 2 \\min(p, 1 - p)\\,` ``steps`` :math:`\\le` ``steps``.  The sums of a
pairwise marginal are exact identities (to the rounding of O(L^2) terms of at most 1 per step).
"""

import math

import pytest
import torch
from torch.autograd import forward_ad

from hybridpgm.graphs import LinearChainCRF

EPS = torch.finfo(torch.float32).eps


def _steps(unary, transition, lengths):
    """The per-sequence allowance ``3 sqrt(sum_t (2 eps m_t)^2)`` over each sequence's steps (float64)."""
    L = unary.shape[-1]
    spread = transition.double().max() - transition.double().min()
    m = unary.double().abs().amax(-1) + spread + math.log(L)  # batch + (T,)
    inside = torch.arange(unary.shape[-2]) < lengths[..., None]
    return 3 * torch.where(inside, 2 * EPS * m, 0.0).square().sum(-1).sqrt()


def _near_ties(seed, magnitude, batch=16, T=6, L=3):
    """Transitions :math:`A_{ij} = M (c + k_j - k_i) + \\mathcal N(0, 1)`: entries up to ``4 M``, and a path's
    transition score telescopes to :math:`M ((n - 1) c + k_{y_{n-1}} - k_{y_0})` plus the noise, so the labels
    inside a sequence are near ties decided by differences of O(1) between entries of magnitude ``M``."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, 3, (L,), generator=g).double()
    c = torch.randint(0, 3, (), generator=g).double()
    A = (magnitude * (c + k[None, :] - k[:, None]) + torch.randn(L, L, generator=g, dtype=torch.float64)).float()
    unary = torch.randn(batch, T, L, generator=g)
    lengths = torch.randint(1, T + 1, (batch,), generator=g)
    return unary, A, lengths


def _close(got, want, bound):
    err = (got.double() - want).abs()
    assert (err <= bound).all(), f"error {err.max().item():.3g} over an allowance of {bound.min().item():.3g}"


def test_float32_entropy_with_near_tie_transitions_of_5000_matches_float64():
    """The audit's example: 1.6309 in float32 against 0.6354 (allowance ~7e-3)."""
    unary = torch.zeros(1, 2, 2)
    A = torch.tensor([[5000.0, 4000.0], [4999.3, 3999.3]])
    c32, c64 = LinearChainCRF(unary, A), LinearChainCRF(unary.double(), A.double())
    want = c64.entropy()
    _close(c32.entropy(), want, 2 * _steps(unary, A, c32.lengths) + EPS / 2 * want.abs())
    assert abs(c32.pairwise_marginals.sum().item() - 1) <= 4 * EPS  # one pair: 4 terms summing to 1


@pytest.mark.parametrize("magnitude", [1e2, 1e3, 1e4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_queries_of_large_near_tie_transitions_match_float64(magnitude, seed):
    """Entropy, marginals, pairwise counts and log Z against float64; the float32 entropy was up to 0.15 nats off
    at M = 1e3 and 19 at 1e4, over allowances of ~1e-2 and ~1e-1."""
    unary, A, lengths = _near_ties(seed, magnitude)
    c32 = LinearChainCRF(unary, A, lengths=lengths)
    c64 = LinearChainCRF(unary.double(), A.double(), lengths=lengths)
    steps = _steps(unary, A, lengths)
    H = c64.entropy()
    _close(c32.entropy(), H, 2 * steps + EPS / 2 * H.abs())
    log_z = c64.log_partition
    _close(c32.log_partition, log_z, steps + EPS / 2 * log_z.abs())
    _close(c32.marginals, c64.marginals, steps[:, None, None])
    _close(c32.pairwise_marginals, c64.pairwise_marginals, (lengths - 1)[:, None, None] * steps[:, None, None])


@pytest.mark.parametrize("magnitude", [1e3, 1e4])
def test_float32_pairwise_marginals_sum_to_the_marginals_of_both_their_labels(magnitude):
    """Summed over the steps, the pairwise marginals' total is ``n - 1``, their column sums the marginals of
    steps ``1 .. n-1`` and their row sums those of steps ``0 .. n-2``: identities, up to the rounding of sums of
    at most ``T L^2`` terms below 1 (``T L^2 eps``).  They were off by ~ulp(|A|), 6e-5 .. 9e-4."""
    unary, A, lengths = _near_ties(3, magnitude)
    crf = LinearChainCRF(unary, A, lengths=lengths)
    T, L = unary.shape[-2:]
    tol = T * L * L * EPS
    pairs, marginals = crf.pairwise_marginals, crf.marginals
    inside = torch.arange(T) < lengths[:, None]
    last = torch.nn.functional.one_hot(lengths - 1, T).bool()
    torch.testing.assert_close(pairs.sum((-1, -2)), (lengths - 1).float(), rtol=0, atol=tol)
    torch.testing.assert_close(pairs.sum(-2), marginals[:, 1:].sum(-2), rtol=0, atol=tol)
    torch.testing.assert_close(pairs.sum(-1), (marginals * (inside & ~last)[..., None]).sum(-2), rtol=0, atol=tol)


@pytest.mark.parametrize("magnitude", [1e3, 1e4])
def test_float32_entropy_under_forward_mode_ad_with_large_near_tie_transitions_matches_float64(magnitude):
    """Under forward-mode AD (and ``torch.func``) the marginals come from the explicit recursion of
    ``crf_forward_backward``, whose softmax over all pairs of ``alpha + A + phi + beta`` rounded to ulp(|A|): its
    pairwise marginals disagreed with the marginals by that much and the entropy was 0.06 .. 24 nats off."""
    unary, A, lengths = _near_ties(4, magnitude)
    want = LinearChainCRF(unary.double(), A.double(), lengths=lengths).entropy()
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(unary, torch.ones_like(unary))
        got = forward_ad.unpack_dual(LinearChainCRF(dual, A, lengths=lengths).entropy()).primal
    _close(got, want, 2 * _steps(unary, A, lengths) + EPS / 2 * want.abs())


def test_float32_queries_are_those_of_the_scores_relative_to_a_large_common_level():
    """Transitions :math:`M + \\mathcal N(0, 1)` at :math:`M = 10^4`: every path's score is
    :math:`(n - 1) M` plus O(1) terms, so log_prob, the marginals and the entropy are those of the O(1) scores.
    The recursions take each column's largest transition score out first (exactly: entries within a factor 2 of
    it subtract exactly) and add :math:`(n - 1) \\max_j c_j` back in float64, so they round at the O(1)
    magnitudes, and the allowance uses the spread of the transitions, not their level (about 3e-5 here); rounded
    at ``ulp(1e4)`` the float32 marginals were ~3e-4 off and log_prob ~1e-3."""
    g = torch.Generator().manual_seed(5)
    M, batch, T, L = 1e4, 8, 6, 4
    noise = torch.randn(L, L, generator=g)
    A = M + noise
    unary = torch.randn(batch, T, L, generator=g)
    lengths = torch.randint(1, T + 1, (batch,), generator=g)
    c32 = LinearChainCRF(unary, A, lengths=lengths)
    c64 = LinearChainCRF(unary.double(), A.double(), lengths=lengths)
    steps = _steps(unary, A, lengths)  # the spread of A, ~4, not its level 1e4
    _close(c32.marginals, c64.marginals, steps[:, None, None])
    y = c64.argmax()
    want = c64.log_prob(y)
    _close(c32.log_prob(y), want, steps + EPS / 2 * want.abs())
    H = c64.entropy()
    _close(c32.entropy(), H, 2 * steps + EPS / 2 * H.abs())
