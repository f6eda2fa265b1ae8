"""The forward and Viterbi recursions of the linear-chain CRF against brute-force enumeration."""

import itertools

import pytest
import torch

from hybridpgm.graphs.crf_recursions import forbidden, forward, viterbi, working


def _scores(seed, B=3, T=4, L=3):
    g = torch.Generator().manual_seed(seed)
    unary = torch.randn(B, T, L, generator=g, dtype=torch.float64)
    transition = torch.randn(L, L, generator=g, dtype=torch.float64).expand(B, L, L)
    start, end = torch.randn(B, L, generator=g, dtype=torch.float64), torch.randn(B, L, generator=g,
                                                                                dtype=torch.float64)
    return unary, transition, start, end


def _all_scores(unary, transition, start, end, n):
    """``{labelling: s(y)}`` of one sequence of length ``n``."""
    L = unary.shape[-1]
    out = {}
    for y in itertools.product(range(L), repeat=n):
        s = start[y[0]] + sum(unary[t, y[t]] for t in range(n)) + end[y[-1]]
        out[y] = s + sum(transition[y[t - 1], y[t]] for t in range(1, n))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_forward_and_viterbi_match_enumeration_with_padding_and_a_forbidden_pair(seed):
    unary, transition, start, end = _scores(seed)
    transition = transition.clone()
    transition[:, 0, 1] = float("-inf")  # label 0 never followed by 1
    unary = unary.clone()
    lengths = torch.tensor([4, 2, 1])
    unary[1, 2:] = float("nan")  # padding may hold anything
    log_z, alphas = forward(unary, transition, start, end, lengths, keep=True)
    score, path = viterbi(unary, transition, start, end, lengths)
    assert alphas.shape == (4, 3, 3)
    for b, n in enumerate(lengths.tolist()):
        table = _all_scores(unary[b], transition[b], start[b], end[b], n)
        expected = torch.stack(list(table.values())).logsumexp(0)
        torch.testing.assert_close(log_z[b], expected)
        best = max(table, key=lambda y: float(table[y]))
        torch.testing.assert_close(score[b], table[best])
        assert tuple(path[b, :n].tolist()) == best
        assert bool((path[b, n:] == best[-1]).all())  # padding repeats the last label


def test_a_sequence_with_no_finite_labelling_has_minus_inf_log_z():
    unary, transition, start, end = _scores(2, B=1, T=2, L=2)
    transition = torch.full_like(transition, float("-inf"))
    log_z, _ = forward(unary, transition, start, end, torch.tensor([2]))
    score, _ = viterbi(unary, transition, start, end, torch.tensor([2]))
    assert log_z.item() == float("-inf") and score.item() < forbidden(torch.float64) / 2


def test_working_promotes_to_at_least_float32():
    half, double = torch.zeros(2, dtype=torch.float16), torch.zeros(2, dtype=torch.float64)
    assert working(half, None)[0].dtype == torch.float32 and working(half, None)[1] is None
    assert {t.dtype for t in working(half, double)} == {torch.float64}
    assert forbidden(torch.float32) == torch.finfo(torch.float32).min / 8
