"""Brute-force enumeration and random small models for the MRF tests."""

from __future__ import annotations

import itertools

import torch

from hybridpgm.graphs import MarkovNet


def random_mrf(seed: int, num_vars: int, max_card: int = 3, num_factors: int = 4,
               max_arity: int = 3, batch: tuple = (), tree: bool = False,
               dtype=torch.double, scale: float = 1.0) -> MarkovNet:
    """A random MRF; with ``tree=True`` a random tree of pairwise factors plus unaries."""
    g = torch.Generator().manual_seed(seed)
    cards = [int(torch.randint(1, max_card + 1, (), generator=g)) for _ in range(num_vars)]
    names = [f"v{i}" for i in range(num_vars)]
    mrf = MarkovNet(dict(zip(names, cards)))
    if tree:
        scopes = [[int(torch.randint(0, i, (), generator=g)), i] for i in range(1, num_vars)]
        scopes += [[i] for i in range(num_vars)]
    else:
        scopes = []
        for _ in range(num_factors):
            k = int(torch.randint(1, min(max_arity, num_vars) + 1, (), generator=g))
            scopes.append(torch.randperm(num_vars, generator=g)[:k].tolist())
    for i, s in enumerate(scopes):
        shape = tuple(batch) + tuple(cards[v] for v in s)
        mrf.add_factor(f"f{i}", [names[v] for v in s],
                       scale * torch.randn(shape, generator=g, dtype=dtype))
    return mrf


def assignments(mrf: MarkovNet, batch_dims: int = 0):
    """All joint assignments, as ``name -> [N] + [1] * batch_dims`` long tensors."""
    rows = torch.tensor(list(itertools.product(*[range(c) for c in mrf.cards.values()])))
    shape = (rows.shape[0],) + (1,) * batch_dims
    return {v: rows[:, i].reshape(shape) for i, v in enumerate(mrf.cards)}, rows


def brute_force(mrf: MarkovNet, batch_dims: int = 0, evidence=None, context=None):
    """Exact ``(log_z, marginals)`` by enumerating every assignment."""
    values, rows = assignments(mrf, batch_dims)
    scores = mrf.score(values, context)  # [N, *batch]
    scores = scores.expand((rows.shape[0],) + scores.shape[1:])
    if evidence:
        for v, val in evidence.items():
            val = torch.as_tensor(val)
            ok = (val == -1) | torch.isnan(val.double()) | (values[v] == val)  # the evidence convention
            scores = scores.masked_fill(~ok, float("-inf"))
            scores = scores.expand(torch.broadcast_shapes(scores.shape, ok.shape))
    log_z = torch.logsumexp(scores, 0)
    p = (scores - log_z).exp()
    marg = {}
    for i, (v, c) in enumerate(mrf.cards.items()):
        onehot = torch.nn.functional.one_hot(rows[:, i], c).to(p.dtype)  # [N, c]
        marg[v] = torch.einsum("n...,nc->...c", p, onehot)
    return log_z, marg
