"""Seeded random MarkovNets checked against brute-force enumeration of the log-joint in float64.

Shared by :mod:`tests.infer.test_exact_fuzz_markov_net`. Every case is drawn from ``random.Random(seed)`` and a
``torch.Generator`` seeded from it (the global RNGs are not touched); each failure message names the seed.

A net has 1-6 variables with names of 1-3 letters and cardinality 1-4, and either random factors (arity 1-3,
any scope) or a random factor *tree* (pairwise and triple factors, some unary ones; at least one factor: a net
without any answers in torch's default dtype); scopes in random order.
:func:`check_case`: unbatched tables of scale 0.3-20 with ``-1000`` "forbidden" entries, all-zero tables and
non-contiguous tables; exact log Z, marginals and MAP, the same with a batch of mixed int/float evidence, and on
trees BP log Z (Bethe), marginals and max-product MAP. :func:`check_batched_case`: batched tables ``[B, ...]``,
families added with ``add_factors`` (stacked or one shared ``F=1`` table), scale-300 or tied ({-1, 0, 1})
potentials, evidence of shape ``[B]`` (strided, float with NaN = unobserved); exact log Z, exact/auto/(trees) bp
MAP, and the mean-field value never above log Z.

This is the FUZZ audit's ``fuzz_mrf.py`` and ``fuzz_mrf2.py`` (session 41) with float64 tables only and without
the sample-frequency checks.
"""

from __future__ import annotations

import random
import string

import torch

from hybridpgm.graphs import MarkovNet
from tests.infer.bn_fuzz_cases import close  # noqa: F401  (re-exported for the MarkovNet tests)

DT = torch.float64
TOL = 1e-9
BP = {"num_iters": 60, "tol": 0}


def make(rng: random.Random, g: torch.Generator, tree: bool):
    """``(names, cards, scopes, float64 log-potentials)`` of a random net."""
    n = rng.randint(1, 6)
    names: list = []
    while len(names) < n:
        s = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 3)))
        if s not in names:
            names.append(s)
    cards = {v: rng.randint(1, 4) for v in names}
    scopes = []
    if tree:
        i = 1
        while i < n:
            if i + 1 < n and rng.random() < 0.3:
                scopes.append([names[i], names[i + 1], names[rng.randrange(i)]])
                i += 2
            else:
                scopes.append([names[i], names[rng.randrange(i)]])
                i += 1
        scopes += [[v] for v in names if rng.random() < 0.5]
    else:
        scopes = [rng.sample(names, rng.randint(1, min(3, n))) for _ in range(rng.randint(1, 7))]
    # a net without factors answers in torch's default dtype (nothing says float64) and has no batch shape
    scopes = scopes or [[names[0]]]
    for s in scopes:
        rng.shuffle(s)
    scale = rng.choice([0.3, 1.0, 3.0, 20.0])
    pots = []
    for s in scopes:
        t = torch.randn([cards[v] for v in s], generator=g, dtype=DT) * scale
        if rng.random() < 0.2:
            t = t.masked_fill(torch.rand(t.shape, generator=g) < 0.3, -1000.0)
        if rng.random() < 0.1:
            t = torch.zeros_like(t)
        pots.append(t)
    return names, cards, scopes, pots


def log_joint(names: list, cards: dict, scopes: list, pots: list) -> torch.Tensor:
    """The unnormalised log-joint ``[c_1, ..., c_n]`` in ``names`` order."""
    out = torch.zeros([cards[v] for v in names], dtype=DT)
    for s, p in zip(scopes, pots):
        order = sorted(range(len(s)), key=lambda j: names.index(s[j]))
        shape = [1] * len(names)
        for j in order:
            shape[names.index(s[j])] = cards[s[j]]
        out = out + p.permute(order).reshape(shape)
    return out


def marginals(L: torch.Tensor) -> list:
    """Every one-variable marginal of ``exp(L)``, normalised."""
    P = (L - torch.logsumexp(L.reshape(-1), 0)).exp()
    return [P.sum(dim=[j for j in range(L.dim()) if j != i]) if L.dim() > 1 else P for i in range(L.dim())]


def clamped(L: torch.Tensor, names: list, observed: dict) -> torch.Tensor:
    """``L`` with ``-inf`` wherever a variable differs from its observed value (``observed``: name -> int)."""
    out = L.clone()
    for v, k in observed.items():
        i = names.index(v)
        keep = torch.zeros(L.shape[i], dtype=torch.bool)
        keep[k] = True
        shape = [1] * L.dim()
        shape[i] = -1
        out = out.masked_fill(~keep.view(shape), float("-inf"))
    return out


def check_map(assignment: dict, names: list, Ls: list, fails: list, tag: str) -> None:
    """Each row's assignment reaches its row's maximum (ties allowed)."""
    for r, L in enumerate(Ls):
        at = tuple(int(assignment[v].reshape(-1)[r] if assignment[v].dim() else assignment[v]) for v in names)
        if L[at] < L.max() - TOL * (1 + L.max().abs()):
            fails.append(f"{tag} row {r}: MAP {at} scores {L[at].item()} < max {L.max().item()}")


def check_case(seed: int) -> list[str]:
    """Mismatches of one unbatched random net against enumeration (empty: all agree)."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    tree = rng.random() < 0.5
    names, cards, scopes, pots = make(rng, g, tree)
    tag = f"seed {seed} ({'tree' if tree else 'graph'}, scopes {scopes}, cards {cards})"
    mrf = MarkovNet(dict(cards))
    for i, (s, p) in enumerate(zip(scopes, pots)):
        mrf.add_factor(f"f{i}", s, p.mT.contiguous().mT if p.dim() >= 2 and rng.random() < 0.2 else p)
    L = log_joint(names, cards, scopes, pots)
    lz, want = torch.logsumexp(L.reshape(-1), 0), marginals(L)
    fails: list[str] = []
    methods = [("exact", {}), ("bp", BP)] if tree else [("exact", {})]
    for method, kw in methods:
        got = mrf.log_partition(method, **kw)
        if not close(got, lz):
            fails.append(f"{tag}: {method} log Z {got.item()} != {lz.item()}")
        m = mrf.marginals(method, **kw)
        fails += [f"{tag}: {method} marginal of {v!r} {m[v].tolist()} != {want[i].tolist()}"
                  for i, v in enumerate(names) if not close(m[v], want[i])]
        check_map(mrf.map_assignment(method=method, **kw), names, [L], fails, f"{tag} {method}")
    N = rng.randint(1, 5)
    ev = {v: torch.tensor([rng.randrange(-1, cards[v]) for _ in range(N)]) for v in names if rng.random() < 0.5}
    ev = {v: t.double() if rng.random() < 0.3 else t for v, t in ev.items()}
    if not ev:
        return fails
    Ls = [clamped(L, names, {v: int(t[r]) for v, t in ev.items() if t[r] >= 0}) for r in range(N)]
    want_lz = torch.stack([torch.logsumexp(x.reshape(-1), 0) for x in Ls])
    tag += f" evidence {ev}"
    got = mrf.log_partition("exact", evidence=ev)
    if not close(got, want_lz):
        fails.append(f"{tag}: log Z {got.tolist()} != {want_lz.tolist()}")
    m = mrf.marginals("exact", evidence=ev)
    for r, x in enumerate(Ls):
        fails += [f"{tag} row {r}: marginal of {v!r} {m[v][r].tolist()} != {w.tolist()}"
                  for v, w in zip(names, marginals(x)) if not close(m[v][r], w)]
    check_map(mrf.map_assignment(ev, method="exact"), names, Ls, fails, f"{tag} exact")
    if tree:
        got = mrf.log_partition("bp", evidence=ev, **BP)
        if not close(got, want_lz):
            fails.append(f"{tag}: bp log Z {got.tolist()} != {want_lz.tolist()}")
    return fails


def check_batched_case(seed: int) -> list[str]:
    """Mismatches of one net with batched tables and families against enumeration (empty: all agree)."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    tree = rng.random() < 0.5
    names, cards, scopes, pots = make(rng, g, tree)
    B, big, tie = rng.randint(1, 3), rng.random() < 0.2, rng.random() < 0.2
    bpots = [torch.randn((B, *[cards[v] for v in s]), generator=g, dtype=DT) * (300.0 if big else 2.0) for s in scopes]
    bpots = [x.round().clamp(-1, 1) if tie else x for x in bpots]
    mrf, used, families = MarkovNet(dict(cards)), [False] * len(scopes), []
    for i, s in enumerate(scopes):
        if used[i]:
            continue
        shape = [cards[v] for v in s]
        same = [j for j in range(i, len(scopes)) if not used[j] and [cards[v] for v in scopes[j]] == shape]
        same = same if len(same) > 1 and rng.random() < 0.5 else [i]
        if len(same) > 1 and rng.random() < 0.3:  # one shared table, F = 1
            for j in same:
                bpots[j] = bpots[i]
            mrf.add_factors(f"fam{i}", [scopes[j] for j in same], bpots[i].unsqueeze(1))
        elif len(same) > 1:
            mrf.add_factors(f"fam{i}", [scopes[j] for j in same], torch.stack([bpots[j] for j in same], 1))
        else:
            mrf.add_factor(f"fam{i}", s, bpots[i])
        families.append([scopes[j] for j in same])
        for j in same:
            used[j] = True
    tag = f"seed {seed} (B={B}, families {families}, cards {cards})"
    Ls = [log_joint(names, cards, scopes, [p[b] for p in bpots]) for b in range(B)]
    lz = torch.stack([torch.logsumexp(x.reshape(-1), 0) for x in Ls])
    fails: list[str] = []
    got = mrf.log_partition("exact")
    if not close(got, lz):
        fails.append(f"{tag}: log Z {got.tolist()} != {lz.tolist()}")
    mf = mrf.log_partition("mean_field", num_iters=30)
    if bool((mf > lz + TOL * (1 + lz.abs())).any()):
        fails.append(f"{tag}: mean-field value {mf.tolist()} above log Z {lz.tolist()}")
    ev = {}
    for v in names:
        if rng.random() < 0.4:
            t, kind = torch.tensor([rng.randrange(-1, cards[v]) for _ in range(B)]), rng.randrange(3)
            if kind == 1:
                t = torch.stack([t, t], 1)[:, 1]  # strided
            elif kind == 2:
                t = t.double().masked_fill(t < 0, float("nan"))
            ev[v] = t
    Ls = [clamped(x, names, {v: int(t[b]) for v, t in ev.items() if t[b] == t[b] and t[b] >= 0})
          for b, x in enumerate(Ls)]
    tag += f" evidence {ev}"
    want = torch.stack([torch.logsumexp(x.reshape(-1), 0) for x in Ls])
    got = mrf.log_partition("exact", evidence=ev) if ev else got
    if not close(got, want):
        fails.append(f"{tag}: log Z {got.tolist()} != {want.tolist()}")
    for method, kw in [("exact", {}), ("auto", {})] + ([("bp", BP)] if tree else []):
        check_map(mrf.map_assignment(ev or None, method=method, **kw), names, Ls, fails, f"{tag} {method}")
    return fails
