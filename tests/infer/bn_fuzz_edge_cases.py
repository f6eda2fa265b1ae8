"""Seeded random BayesNets at the edges of the number formats and of the evidence formats, against brute force
in log space (float64).

Shared by :mod:`tests.infer.test_exact_fuzz_bayes_net_edges` and
:mod:`tests.infer.test_evidence_table_fuzz`. The nets are those of :mod:`tests.infer.bn_fuzz_cases` (names,
cardinalities, parents, declaration order, parameters or buffers) with tables of edge kinds added: *subnormal*
(entries of ``1e-310`` and ``1e-300`` beside ones: products of two such entries underflow to 0 in float64, so
p(e) may be far below the smallest float64 and must come back finite in log space), *zero-one* (rows of exact
zeros and ones, normalised: deterministic rows and ties), and *tiny* (rows raised to a power up to 16). The
reference is the joint in log space (a sum of log-tables, ``-inf`` where an entry is 0) with ``logsumexp``: it
does not underflow. Evidence tensors take every form :func:`~hybridpgm.infer.bn_evidence.parse_evidence`
accepts for hard values: int64, int32, int16, uint8 (rows without ``-1``), float64/float32 (``-1`` or ``NaN``
unobserved), strided slices (``[::2]`` of a longer tensor, a column of a transposed matrix), and expanded views
(stride 0) of one value.

Every case is drawn from ``random.Random(seed)`` and a ``torch.Generator`` seeded from it (the global RNGs are
not touched); every failure message names the seed.
"""

from __future__ import annotations

import random

import torch

from hybridpgm.graphs import cpd
from tests.infer.bn_fuzz_cases import assembled, close, rand_name, rand_table

DT = torch.float64
TOL = 1e-9

#: the kinds of table of the edge nets: bn_fuzz_cases' kinds and the edge kinds of this module
KINDS = ["plain", "zeros", "det", "near", "tie", "subnormal", "subnormal", "zero-one", "zero-one", "tiny"]
#: subnormal-ish entries, by network dtype: below the smallest normal number, and products of two underflow
SMALL = {torch.float64: (1e-310, 1e-300, 1e-200), torch.float32: (1e-44, 1e-40, 1e-30)}


def edge_table(rng: random.Random, g: torch.Generator, shape: list, kind: str, dtype=DT) -> torch.Tensor:
    """A conditional table of ``shape`` (parents..., child) in float64, rows on the simplex, of ``kind``; for a
    float32 network it holds what the float32 network will hold (rounded, then normalised in float64)."""
    if kind == "subnormal":
        small = torch.tensor(SMALL[dtype], dtype=DT)
        pick = torch.randint(4, shape, generator=g)
        x = torch.where(pick < 3, small[pick.clamp(max=2)], torch.ones((), dtype=DT))
        x = x * (torch.rand(shape, generator=g, dtype=DT) > 0.15)
    elif kind == "zero-one":
        x = (torch.rand(shape, generator=g, dtype=DT) < 0.5).to(DT)
    elif kind == "tiny":
        x = torch.rand(shape, generator=g, dtype=DT) ** rng.choice([4, 8, 16])
    else:
        x = rand_table(rng, g, shape, kind)
    x = torch.where(x.sum(-1, keepdim=True) == 0, torch.ones_like(x), x)
    x = (x / x.sum(-1, keepdim=True)).to(dtype).to(DT)  # what the network holds
    return x / x.sum(-1, keepdim=True)


def make_edge_bn(rng: random.Random, g: torch.Generator, dtype=DT, max_nodes: int = 7):
    """A random net with edge tables: ``(bn, names in topological order, cards, parents, float64 tables)``."""
    used: set = set()
    names = [rand_name(rng, used) for _ in range(rng.randint(1, max_nodes))]
    cards = {v: rng.randint(1, 4) for v in names}
    learnable = rng.random() < 0.5
    parents, tables, cpds = {}, {}, {}
    for i, v in enumerate(names):
        parents[v] = rng.sample(names[:i], rng.randint(0, min(3, i)))
        shape = [cards[p] for p in parents[v]] + [cards[v]]
        tables[v] = edge_table(rng, g, shape, rng.choice(KINDS), dtype)
        cpds[v] = cpd.Table(tables[v].to(dtype), parents[v], learnable=learnable)
    return assembled(rng, names, cpds), names, cards, parents, tables


def log_joint(names: list, cards: dict, parents: dict, tables: dict) -> torch.Tensor:
    """The log-joint ``[c_1, ..., c_n]`` in ``names`` order: a sum of log-tables (float64, no underflow)."""
    out = torch.zeros([cards[v] for v in names], dtype=DT)
    for v in names:
        scope = parents[v] + [v]
        order = sorted(range(len(scope)), key=lambda j: names.index(scope[j]))
        shape = [1] * len(names)
        for j in order:
            shape[names.index(scope[j])] = cards[scope[j]]
        out = out + tables[v].log().permute(order).reshape(shape)
    return out


def clamp(L: torch.Tensor, names: list, row: dict) -> torch.Tensor:
    """``L`` with ``-inf`` where a node differs from its observed value (``row``: name -> state)."""
    out = L
    for v, k in row.items():
        i = names.index(v)
        keep = torch.full((L.shape[i],), float("-inf"), dtype=DT)
        keep[k] = 0.0
        shape = [1] * L.dim()
        shape[i] = -1
        out = out + keep.view(shape)
    return out


def log_marginal(L: torch.Tensor, idx: list) -> torch.Tensor:
    """``log sum exp`` of ``L`` over every axis but ``idx``, those in the given order (unnormalised)."""
    rest = [j for j in range(L.dim()) if j not in idx]
    m = torch.logsumexp(L, dim=rest) if rest else L
    srt = sorted(idx)
    return m.permute([srt.index(j) for j in idx])


def posterior_of(L: torch.Tensor, idx: list) -> torch.Tensor:
    """The normalised posterior over the axes ``idx`` of a row's clamped log-joint ``L``."""
    m = log_marginal(L, idx)
    return (m - torch.logsumexp(m.reshape(-1), 0)).exp()


def hard_rows(rng: random.Random, nodes: list, cards: dict, n_rows: int, p_obs: float = 0.55):
    """Random hard evidence on some of ``nodes``: ``(dict node -> int64 [N] with -1 unobserved, per-row dicts
    node -> state)``."""
    ev, rows = {}, [dict() for _ in range(n_rows)]
    for v in nodes:
        if rng.random() > p_obs:
            continue
        mixed = rng.random() < 0.5
        vals = [rng.randrange(cards[v]) if (not mixed or rng.random() < 0.6) else -1 for _ in range(n_rows)]
        if rng.random() < 0.2:
            vals = [vals[0]] * n_rows  # one value in every row: an expanded view is possible
        ev[v] = torch.tensor(vals)
        for r, k in enumerate(vals):
            if k >= 0:
                rows[r][v] = k
    return ev, rows


def evidence_form(rng: random.Random, t: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The int64 ``t`` (``-1``: unobserved) in a random accepted form, and the form's name."""
    forms = ["int64", "int32", "int16", "float64", "float32-nan", "slice", "transposed"]
    if bool((t >= 0).all()):
        forms.append("uint8")
    if bool((t == t[0]).all()):
        forms += ["expanded", "expanded"]
    form = rng.choice(forms)
    if form in ("int32", "int16", "uint8", "float64"):
        out = t.to(getattr(torch, form))
    elif form == "float32-nan":
        out = t.float().masked_fill(t < 0, float("nan"))
    elif form == "slice":
        out = torch.stack([t, torch.full_like(t, 7)], 1).reshape(-1)[::2]
    elif form == "transposed":
        out = torch.stack([torch.full_like(t, 7), t], 0).t()[:, 1]
    elif form == "expanded":
        out = t[:1].expand(t.shape[0]) if rng.random() < 0.5 else t[0].clone().expand(t.shape[0])
    else:
        out = t.clone()
    return out, form


def forms_of(rng: random.Random, ev: dict) -> tuple[dict, str]:
    """Every tensor of ``ev`` in a random form, and a description of the forms for the failure messages."""
    out, names = {}, []
    for v, t in ev.items():
        out[v], form = evidence_form(rng, t)
        names.append(f"{v}:{form}")
    return out, ",".join(names)


__all__ = ["DT", "TOL", "clamp", "close", "edge_table", "evidence_form", "forms_of", "hard_rows", "log_joint",
           "log_marginal", "make_edge_bn", "posterior_of"]
