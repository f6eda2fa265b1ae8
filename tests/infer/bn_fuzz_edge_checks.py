"""The checks of the edge nets of :mod:`tests.infer.bn_fuzz_edge_cases` against brute force in log space.

:func:`check_edge_case`: ``log_evidence`` (``-inf`` exactly where impossible, finite however small p(e) is),
``posterior(None)`` (an :class:`~hybridpgm.errors.EvidenceError` on impossible rows), joint posteriors of random
1-3 node subsets, ``map(return_log_prob=True)``, with the evidence in random forms; a float64 net at ``1e-9``, a
float32 net at :func:`float32_tolerance`. :func:`check_table_case`: :meth:`~hybridpgm.graphs.BayesNet.compile_evidence`
in every layout against the reference and against the plain queries on the same evidence.
"""

from __future__ import annotations

import math
import random

import torch

from hybridpgm.infer.evidence_table import LAYOUTS
from tests.infer.bn_fuzz_cases import check_posteriors, expect_refused
from tests.infer.bn_fuzz_edge_cases import (DT, TOL, clamp, close, forms_of, hard_rows, log_joint, make_edge_bn,
                                            posterior_of)


def float32_tolerance(cards: dict, parents: dict, tables: dict) -> float:
    """A relative tolerance for a float32 net's answers against float64 brute force on the tables it holds.

    With :math:`u = 2^{-24}` (float32's unit roundoff) and the standard bound :math:`\\gamma_m \\approx m u` on
    :math:`m` roundings of nonnegative terms [Higham, *Accuracy and Stability of Numerical Algorithms*, 2002,
    §3.1 and §4.2], the float32 answer of :math:`p(e) = \\sum_x \\prod_v t_v` is within a relative
    :math:`\\delta = u \\, (\\sum_v (c_v + 2 + \\ell_v) + n + K)` of the exact one: per node, its table read back
    from logits or normalised (:math:`c_v + 2` roundings of the row and its sum, and :math:`\\ell_v = \\max |\\log t_v|`
    over its positive entries, the rounding of a log-table scaled by the log's size; the same term bounds a
    log-space path, whose log-values are sums of those), one product of the :math:`n` tables, and a sum of at most
    :math:`K = \\prod_v c_v` terms (whatever the order of the contraction). :math:`\\log p(e)` is then within
    :math:`\\delta` absolute (``close`` adds :math:`\\delta |\\log p|` for the rounding of the log itself), and a
    posterior, a ratio of two such sums, within :math:`2\\delta`; the tolerance is :math:`2\\delta`.
    """
    u = torch.finfo(torch.float32).eps / 2
    n, K = len(cards), math.prod(cards.values())
    ell = sum(float(t[t > 0].log().abs().max()) for t in tables.values())
    return 2 * u * (sum(c + 2 for c in cards.values()) + ell + n + K)


def _rows(t: torch.Tensor, n_rows: int) -> torch.Tensor:
    return t if t.dim() == 2 else t.expand(n_rows, -1)


def _check_plain(bn, names, ev, Ls, rng, fails, tag, tol) -> None:
    """One query on the plain path (``ev``: evidence in its forms; ``Ls``: each row's clamped log-joint)."""
    n_rows = len(Ls)
    lz = torch.stack([torch.logsumexp(L.reshape(-1), 0) for L in Ls])
    le = bn.log_evidence(ev)
    le = le.reshape(-1) if le.dim() else le.reshape(1).expand(n_rows)
    if not close(le, lz, tol):
        fails.append(f"{tag}: log_evidence {le.tolist()} != {lz.tolist()}")
    if not bool(torch.isfinite(lz).all()):
        expect_refused(bn, ev, fails, tag)
        return
    fully = {v for v, t in ev.items() if bool(((t >= 0) & (t == t)).all())}
    check_posteriors(bn, names, ev, fully, lambda idx: torch.stack([posterior_of(L, idx) for L in Ls]), rng, fails,
                     tag, tol)
    assignment, best = bn.map(ev, return_log_prob=True)
    best = best.reshape(-1) if best.dim() else best.reshape(1).expand(n_rows)
    for r, L in enumerate(Ls):
        at = tuple(int(assignment[v].reshape(-1)[r] if assignment[v].dim() else assignment[v]) for v in names)
        top = L.max()
        if not L[at] >= top - tol * (1 + top.abs()):
            fails.append(f"{tag} row {r}: MAP {at} has log {L[at].item()} < max {top.item()}")
        if not close(best[r], top, tol):
            fails.append(f"{tag} row {r}: MAP log value {best[r].item()} != {top.item()}")


def check_edge_case(seed: int, dtype=DT) -> list[str]:
    """Every mismatch of one edge net (``dtype``: the network's) against the reference (empty: all agree)."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    bn, names, cards, parents, tables = make_edge_bn(rng, g, dtype)
    tol = TOL if dtype == DT else float32_tolerance(cards, parents, tables)
    L = log_joint(names, cards, parents, tables)
    fails: list[str] = []
    for q in range(rng.randint(2, 4)):
        ev, rows = hard_rows(rng, names, cards, rng.randint(1, 6))
        if not ev:
            continue
        evf, forms = forms_of(rng, ev)
        tag = f"seed {seed} {dtype} query {q} (nodes {names}, parents {parents}, evidence {ev}, forms {forms})"
        _check_plain(bn, names, evf, [clamp(L, names, row) for row in rows], rng, fails, tag, tol)
    return fails


def check_table_case(seed: int, dtype=DT) -> list[str]:
    """An evidence table of a random edge net in every layout against the reference and the plain queries."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    bn, names, cards, parents, tables = make_edge_bn(rng, g, dtype, max_nodes=6)
    tol = TOL if dtype == DT else float32_tolerance(cards, parents, tables)
    L = log_joint(names, cards, parents, tables)
    enodes = rng.sample(names, rng.randint(1, min(3, len(names))))
    fails: list[str] = []
    queries = []
    for _ in range(3):
        ev, rows = hard_rows(rng, enodes, cards, rng.randint(1, 6), p_obs=0.8)
        queries.append((ev, rows, *forms_of(rng, ev)))
    for layout in LAYOUTS:
        table = bn.compile_evidence(enodes, layout=layout)
        for q, (ev, rows, evf, forms) in enumerate(queries):
            tag = (f"seed {seed} {dtype} layout {layout} ({table.layout}, dropped {table.dropped}) query {q} "
                   f"(nodes {names}, parents {parents}, table nodes {enodes}, evidence {ev}, forms {forms})")
            Ls = [clamp(L, names, row) for row in rows]
            lz = torch.stack([torch.logsumexp(x.reshape(-1), 0) for x in Ls])
            le = table.log_evidence(evf)
            le = le.reshape(-1) if le.dim() else le.reshape(1).expand(len(rows))
            plain = bn.log_evidence(evf)
            plain = plain.reshape(-1) if plain.dim() else plain.reshape(1).expand(len(rows))
            if not close(le, lz, tol):
                fails.append(f"{tag}: table log_evidence {le.tolist()} != {lz.tolist()} (plain query "
                             f"{plain.tolist()})")
            if not bool(torch.isfinite(lz).all()):
                expect_refused(table, evf, fails, f"{tag} (table)")
                continue
            post, want_keys = table.posterior(None, evf), set(bn.posterior(None, evf))
            if set(post) != want_keys:
                fails.append(f"{tag}: table posterior names {sorted(post)}, the plain query {sorted(want_keys)}")
            for v, p in post.items():
                want = torch.stack([posterior_of(x, [names.index(v)]) for x in Ls])
                if not close(_rows(p, len(rows)), want, tol):
                    fails.append(f"{tag}: table posterior of {v!r} {p.tolist()} != {want.tolist()}")
            one = rng.choice(sorted(post)) if post else None
            p = table.posterior(one, evf) if post else None
            if post and not close(_rows(p, len(rows)), _rows(post[one], len(rows)), tol):
                fails.append(f"{tag}: table posterior({one!r}) differs from its posterior(None) entry")
    return fails
