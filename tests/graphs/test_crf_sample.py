"""Forward-filtering backward-sampling of the linear-chain CRF on padded batches with -inf transitions.

Found by the CRF audit (audit_read_crf, finding 1): ``sample`` crashed on a valid CRF whose shorter sequence ends
in a label with every incoming transition -inf (a label that can only come first).  The backward pass draws at
every step, padding included (the draw is then discarded), and at a padding step it conditions on the last label
:math:`y_{n-1}`: its logits :math:`\\alpha_{t-1} + A_{\\cdot, y_{n-1}}` were all -inf, NaN once normalised, and
torch's ``Categorical`` raised ``ValueError`` (validation on) or ``multinomial`` a ``RuntimeError`` (off).
"""

import itertools
from contextlib import contextmanager

import pytest
import torch
from scipy import stats

from hybridpgm.graphs import LinearChainCRF

INF = float("inf")


@contextmanager
def _default_validation(on):
    """torch's global ``validate_args`` default (what the internal ``Categorical`` draws followed), restored."""
    before = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(on)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(before)


@pytest.mark.parametrize("validation", [True, False])
def test_a_short_sequence_ending_in_a_label_that_can_only_come_first_samples(validation):
    """The audit's repro: label 1 can only come first (every transition into it is -inf); the sequence of length 1
    takes 0 or 1 with probability 1/2 each.  Before: ``ValueError`` (validation on) or ``RuntimeError`` (off)."""
    transition = torch.tensor([[0.0, -INF], [0.0, -INF]])
    with _default_validation(validation):
        crf = LinearChainCRF(torch.zeros(2, 2, 2), transition, lengths=torch.tensor([2, 1]))
        torch.manual_seed(0)
        ys = crf.sample((2000,))
    assert ys.shape == (2000, 2, 2)
    assert bool((ys[:, 1, 1] == 0).all()) and bool((ys[:, 0, 1] == 0).all())  # padding 0; nothing follows as 1
    ones = int(ys[:, 1, 0].sum())
    assert stats.binomtest(ones, 2000, 0.5).pvalue > 1e-3
    assert bool(torch.isfinite(crf.log_prob(ys)).all())


def _padded_crf(seed, B=3, T=4, L=3, dtype=torch.float64):
    """A random CRF with lengths < T and -inf transitions, one label of which can only come first (its column of
    the transition is all -inf), as in the audit's failing cases; padding holds NaN."""
    g = torch.Generator().manual_seed(seed)
    unary = torch.randn(B, T, L, generator=g, dtype=dtype)
    transition = torch.randn(L, L, generator=g, dtype=dtype)
    transition[torch.rand(L, L, generator=g) < 0.3] = -INF
    transition[:, L - 1] = -INF  # label L-1 only ever first
    start, end = torch.randn(L, generator=g, dtype=dtype), torch.randn(L, generator=g, dtype=dtype)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = 1  # a sequence that may end (and start) in label L-1
    mask = torch.arange(T) < lengths[:, None]
    unary = torch.where(mask[..., None], unary, float("nan"))
    return LinearChainCRF(unary, transition, start, end, lengths=lengths)


@pytest.mark.parametrize("seed", range(4))
def test_sampled_frequencies_of_padded_crfs_with_forbidden_transitions_match_brute_force(seed):
    """Chi-square of 6000 draws (fixed seed) against the enumerated distribution of each sequence; every draw has
    positive probability and 0 at the padding.  Before: the draws raised on every one of these CRFs."""
    crf = _padded_crf(seed)
    assert bool(torch.isfinite(crf.log_partition).all())  # a valid CRF: every sequence has a finite labelling
    torch.manual_seed(seed)
    n = 6000
    ys = crf.sample((n,))
    T, L = crf.unary.shape[-2:]
    for b, length in enumerate(crf.lengths.tolist()):
        assert bool((ys[:, b, length:] == 0).all())
        labellings = list(itertools.product(range(L), repeat=length))
        padded = torch.tensor([y + (0,) * (T - length) for y in labellings])
        full = padded[:, None, :].expand(-1, crf.batch_shape[0], T)
        p = crf.log_prob(full)[:, b].exp()
        index = {y: i for i, y in enumerate(labellings)}
        counts = torch.zeros(len(labellings))
        for y in map(tuple, ys[:, b, :length].tolist()):
            counts[index[y]] += 1
        assert bool((counts[p == 0] == 0).all())  # no forbidden labelling is ever drawn
        expected = p * n
        keep = expected >= 5  # rare bins pooled into one
        obs = torch.cat([counts[keep], counts[~keep].sum().view(1)])
        exp = torch.cat([expected[keep], expected[~keep].sum().view(1)])
        obs, exp = obs[exp > 0], exp[exp > 0]
        if len(obs) > 1:
            assert stats.chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue > 1e-4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_draw_of_random_crfs_with_forbidden_scores_is_possible(dtype):
    """A guard: on 300 random CRFs (lengths < T; -inf unary, transition and end scores; a transition shared or per
    sequence) with a finite log Z, every one of 7 draws a sequence has positive probability (finite ``log_prob``)
    and 0 at the padding.  It pinned the draws of the unclamped ``Categorical`` pass bit for bit before the draws
    became Gumbel-max ones (:mod:`hybridpgm.graphs.crf_sampling`, whose exact distribution
    ``tests/graphs/test_crf_sampling.py`` checks); what it guarded, that the clamp of -inf scores draws no
    labelling of probability 0, is kept."""
    checked = 0
    for seed in range(300):
        g = torch.Generator().manual_seed(seed)
        B, T, L = (int(v) for v in torch.randint(1, 5, (3,), generator=g))
        unary = torch.randn(B, T, L, generator=g, dtype=dtype) * 3
        unary[torch.rand(B, T, L, generator=g) < 0.1] = -INF
        shared = (L, L) if seed % 2 else (B, L, L)  # one transition, or one per sequence
        transition = torch.randn(shared, generator=g, dtype=dtype)
        transition[torch.rand(shared, generator=g) < 0.3] = -INF
        start, end = torch.randn(L, generator=g, dtype=dtype), torch.randn(L, generator=g, dtype=dtype)
        end[torch.rand(L, generator=g) < 0.2] = -INF
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        crf = LinearChainCRF(unary, transition, start, end, lengths=lengths, validate_args=False)
        if not bool(torch.isfinite(crf.log_partition).all()):
            continue
        torch.manual_seed(seed)
        ys = crf.sample((7,))
        assert bool(torch.isfinite(crf.log_prob(ys)).all()), seed
        assert bool((ys[:, ~crf._mask()] == 0).all()), seed
        checked += 1
    assert checked > 150


def test_with_validation_off_a_sequence_with_no_finite_labelling_does_not_stop_the_others():
    """With validation off the values of a sequence whose every labelling meets a -inf score are undefined, but
    the others' are exact (as documented): the draw of the batch runs, and the possible sequence's samples have
    positive probability.  Before: its all -inf logits stopped the whole draw with torch's ``RuntimeError``."""
    end = torch.tensor([[0.0, 0.0], [-INF, -INF]])  # the second sequence can end in no label
    crf = LinearChainCRF(torch.zeros(2, 3, 2), torch.tensor([[0.0, -INF], [0.0, 0.0]]), end=end,
                         lengths=torch.tensor([3, 2]), validate_args=False)
    with _default_validation(False):
        torch.manual_seed(0)
        ys = crf.sample((500,))
    assert bool(torch.isfinite(crf.log_prob(ys)[:, 0]).all())
