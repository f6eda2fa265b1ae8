"""Seeded random MarkovNets queried with evidence in every accepted form, float64 and float32, against brute force
in float64.

Shared by :mod:`tests.infer.test_exact_fuzz_markov_net_edges`. The nets are :func:`tests.infer.mrf_fuzz_cases.make`'s
(1-6 variables, random factors or factor trees, ``-1000`` "forbidden" entries); the evidence tensors take the
forms of :func:`tests.infer.bn_fuzz_edge_cases.evidence_form` (int64/int32/int16/uint8, float with ``NaN``,
strided slices, transposed columns, expanded views). Checked: exact log Z with evidence, marginals, MAP (exact
and auto). A float32 net is compared with float64 enumeration of its float32 potentials at
:func:`mrf_float32_tolerance`.
"""

from __future__ import annotations

import math
import random

import torch

from hybridpgm.graphs import MarkovNet
from tests.infer.bn_fuzz_edge_cases import forms_of
from tests.infer.mrf_fuzz_cases import TOL, check_map, clamped, close, log_joint, make, marginals

DT = torch.float64


def mrf_float32_tolerance(cards: dict, pots: list) -> float:
    """A relative tolerance for a float32 MarkovNet's answers against float64 enumeration of its potentials.

    With :math:`u = 2^{-24}`: each log-joint entry is a sum of the :math:`F` factors' entries, rounded with an
    absolute error of at most :math:`u \\sum_f \\max |\\psi_f|` per addition (:math:`F` of them), and the
    log-sum-exp over :math:`K = \\prod_v c_v` entries adds at most :math:`(K + 2) u` relative to :math:`Z`
    (Higham 2002, §4.2; the shift by the maximum makes every term at most 1); a marginal, a ratio of two such
    sums, doubles it, and ``close`` adds a relative part for the magnitude of log Z itself. The tolerance is
    :math:`2 u \\, (F \\sum_f \\max |\\psi_f| + K + 2)`, on finite entries (``-1000`` entries are finite).
    """
    u = torch.finfo(torch.float32).eps / 2
    K = math.prod(cards.values())
    return 2 * u * (len(pots) * sum(float(p.abs().max()) for p in pots) + K + 2)


def check_forms_case(seed: int, dtype=DT) -> list[str]:
    """Mismatches of one net queried with evidence in random forms (empty: all agree)."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    tree = rng.random() < 0.5
    names, cards, scopes, pots = make(rng, g, tree)
    pots = [p.to(dtype).to(DT) for p in pots]  # what the network holds
    tol = TOL if dtype == DT else mrf_float32_tolerance(cards, pots)
    mrf = MarkovNet(dict(cards))
    for i, (s, p) in enumerate(zip(scopes, pots)):
        mrf.add_factor(f"f{i}", s, p.to(dtype))
    L = log_joint(names, cards, scopes, pots)
    fails: list[str] = []
    for q in range(2):
        n = rng.randint(1, 5)
        ev = {}
        for v in names:
            if rng.random() < 0.5:
                vals = [rng.randrange(-1, cards[v]) for _ in range(n)]
                ev[v] = torch.tensor([vals[0]] * n if rng.random() < 0.25 else vals)
        if not ev:
            continue
        evf, forms = forms_of(rng, ev)
        tag = f"seed {seed} {dtype} query {q} ({'tree' if tree else 'graph'}, scopes {scopes}, cards {cards}, " \
              f"evidence {ev}, forms {forms})"
        Ls = [clamped(L, names, {v: int(t[r]) for v, t in ev.items() if t[r] >= 0}) for r in range(n)]
        want = torch.stack([torch.logsumexp(x.reshape(-1), 0) for x in Ls])
        got = mrf.log_partition("exact", evidence=evf)
        if not close(got, want, tol):
            fails.append(f"{tag}: log Z {got.tolist()} != {want.tolist()}")
        if bool(torch.isfinite(want).all()):
            m = mrf.marginals("exact", evidence=evf)
            for r, x in enumerate(Ls):
                fails += [f"{tag} row {r}: marginal of {v!r} {m[v][r].tolist()} != {w.tolist()}"
                          for v, w in zip(names, marginals(x)) if not close(m[v][r], w, tol)]
            for method in ("exact", "auto"):
                check_map(mrf.map_assignment(evf, method=method), names, Ls, fails, f"{tag} {method}")
    return fails
