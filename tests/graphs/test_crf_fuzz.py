"""A :class:`~hybridpgm.graphs.LinearChainCRF` on seeded random potentials against enumeration of all ``L**T``
labellings (float64, 1e-9).

Every case is drawn from ``random.Random(seed)`` and a ``torch.Generator`` seeded from it; failures name the seed.
T of 1-5, L of 1-4, B of 1-3 (``L**T <= 800``), scales 0.5-10, ``-inf`` in transitions, unary and start,
integer-valued scores (Viterbi ties), lengths including 0 (int64 and int32), start/end left out, transitions
expanded to ``[B, L, L]``, non-contiguous unary. Checked: log Z (``-inf`` where no labelling is possible),
marginals, ``argmax`` (its score reaches the maximum; padding 0), ``log_prob`` of random labellings (``-inf``
included) and ``entropy``. This is the FUZZ audit's ``fuzz_crf.py`` (session 41) with float64 potentials only;
``pytest -m slow`` runs its case count.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from hybridpgm.graphs import LinearChainCRF

DT = torch.float64
TOL = 1e-9
NINF = float("-inf")


def score(y, u, A, start, end) -> torch.Tensor:
    """The score of labelling ``y`` (its length is the sequence's) under unary ``u`` [T, L]."""
    if not y:
        return torch.tensor(0.0, dtype=DT)
    v = start[y[0]] + u[0, y[0]]
    for t in range(1, len(y)):
        v = v + A[y[t - 1], y[t]] + u[t, y[t]]
    return v + end[y[-1]]


def random_crf(rng: random.Random, g: torch.Generator):
    """``(float64 potentials u [B, T, L], A, start, end, lengths, keyword arguments of the CRF)``."""
    T, L, B = rng.randint(1, 5), rng.randint(1, 4), rng.randint(1, 3)
    while L ** T > 800:
        T -= 1
    sc = rng.choice([0.5, 2.0, 10.0])
    u, A = torch.randn(B, T, L, generator=g, dtype=DT) * sc, torch.randn(L, L, generator=g, dtype=DT) * sc
    start, end = torch.randn(L, generator=g, dtype=DT) * sc, torch.randn(L, generator=g, dtype=DT) * sc
    if rng.random() < 0.5:
        A = A.masked_fill(torch.rand(L, L, generator=g) < 0.3, NINF)
    if rng.random() < 0.3:
        u = u.masked_fill(torch.rand(B, T, L, generator=g) < 0.2, NINF)
    if rng.random() < 0.3:
        start = start.masked_fill(torch.rand(L, generator=g) < 0.3, NINF)
    if rng.random() < 0.2:  # integer scores: ties
        u, A, start, end = u.round(), A.round(), start.round(), end.round()
    kwargs = {}
    if rng.random() < 0.3:
        start = torch.zeros(L, dtype=DT)
    else:
        kwargs["start"] = start
    if rng.random() < 0.3:
        end = torch.zeros(L, dtype=DT)
    else:
        kwargs["end"] = end
    lengths = torch.full((B,), T)
    if rng.random() < 0.6:
        lengths = torch.tensor([rng.randint(0, T) for _ in range(B)])
        kwargs["lengths"] = lengths if rng.random() < 0.7 else lengths.to(torch.int32)
    return u, A, start, end, lengths, kwargs


def close(a: float, b: float) -> bool:
    return a == b if b in (NINF, float("inf")) else abs(a - b) <= TOL * (1 + abs(b))


def check_case(seed: int) -> list[str]:
    """Every mismatch of one random CRF against enumeration, each naming ``seed`` (empty: all agree)."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    u, A, start, end, lengths, kwargs = random_crf(rng, g)
    B, T, L = u.shape
    tag = f"seed {seed} (B={B}, T={T}, L={L}, arguments {sorted(kwargs)}, lengths {lengths.tolist()})"
    labellings = [list(itertools.product(range(L), repeat=int(n))) for n in lengths]
    scores = [torch.stack([score(y, u[b], A, start, end) for y in labellings[b]]) for b in range(B)]
    want_lz = [torch.logsumexp(s, 0) for s in scores]
    possible = all(bool(torch.isfinite(z)) for z in want_lz)
    transition = A.expand(B, L, L) if rng.random() < 0.3 else A
    unary = u.transpose(1, 2).contiguous().transpose(1, 2) if rng.random() < 0.3 else u
    crf = LinearChainCRF(unary, transition, validate_args=True if possible else None, **kwargs)
    fails = [f"{tag} row {b}: log Z {z} != {w.item()}"
             for b, (z, w) in enumerate(zip(crf.log_partition.tolist(), want_lz)) if not close(z, w.item())]
    if not possible:
        return fails
    marginals, best = crf.marginals, crf.argmax()
    ys = torch.randint(L, (B, T), generator=g)
    log_prob, entropy = crf.log_prob(ys), crf.entropy()
    for b in range(B):
        n, p = int(lengths[b]), (scores[b] - want_lz[b]).exp()
        m = torch.zeros(T, L, dtype=DT)
        for y, py in zip(labellings[b], p):
            m[torch.arange(n), list(y)] += py
        if not ((marginals[b] - m).abs() <= TOL).all():
            fails.append(f"{tag} row {b}: marginals off by {(marginals[b] - m).abs().max().item()}")
        y = tuple(int(x) for x in best[b, :n])
        if not score(y, u[b], A, start, end) >= scores[b].max() - TOL * (1 + scores[b].max().abs()):
            fails.append(f"{tag} row {b}: argmax {y} is not a best labelling")
        if bool((best[b, n:] != 0).any()):
            fails.append(f"{tag} row {b}: argmax padding {best[b].tolist()}")
        want = (score(tuple(int(x) for x in ys[b, :n]), u[b], A, start, end) - want_lz[b]).item()
        if not close(log_prob[b].item(), want):
            fails.append(f"{tag} row {b}: log_prob of {ys[b].tolist()} {log_prob[b].item()} != {want}")
        h = -(p * torch.where(p > 0, scores[b] - want_lz[b], torch.zeros_like(p))).sum().item()
        if not close(entropy[b].item(), h):
            fails.append(f"{tag} row {b}: entropy {entropy[b].item()} != {h}")
    return fails


@pytest.mark.parametrize("seed", range(40))
def test_matches_enumeration(seed):
    fails = check_case(seed)
    assert not fails, "\n".join(fails[:5])


@pytest.mark.slow
@pytest.mark.parametrize("start", range(0, 2200, 275))
def test_matches_enumeration_many(start):
    fails = [f for seed in range(10_000 + start, 10_275 + start) for f in check_case(seed)]
    assert not fails, "\n".join(fails[:5])
