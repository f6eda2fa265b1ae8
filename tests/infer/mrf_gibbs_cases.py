"""Factor graphs and the full-recomputation reference chain shared by the chromatic Gibbs tests."""

import dataclasses
import itertools

import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.graphs.grids import ising_grid
from hybridpgm.infer import ChromaticGibbs


def dense_net(num_vars: int, cards=(2,), seed: int = 0, triples: bool = False, dtype=torch.float32) -> MarkovNet:
    """Every pair of ``num_vars`` variables in one factor (``num_vars`` colours); cardinalities cycle through
    ``cards``; with ``triples``, also a family of 3-variable factors and unary factors."""
    g = torch.Generator().manual_seed(seed)
    names = [f"x{i}" for i in range(num_vars)]
    card = {n: cards[i % len(cards)] for i, n in enumerate(names)}
    net = MarkovNet(card)
    for a, b in itertools.combinations(names, 2):
        net.add_factor(f"{a}_{b}", [a, b], torch.randn(card[a], card[b], generator=g, dtype=dtype))
    if triples:
        for a, b, c in itertools.combinations(names[:5], 3):
            net.add_factor(f"{a}_{b}_{c}", [a, b, c], torch.randn(card[a], card[b], card[c], generator=g))
        for n in names[::2]:
            net.add_factor(f"u_{n}", [n], torch.randn(card[n], generator=g))
    return net


def dense_family(num_vars: int, seed: int = 0) -> MarkovNet:
    """A fully connected binary pairwise net as one factor family (one factor group of ``F = V(V-1)/2``)."""
    g = torch.Generator().manual_seed(seed)
    net = MarkovNet({f"x{i}": 2 for i in range(num_vars)})
    scopes = [[f"x{i}", f"x{j}"] for i, j in itertools.combinations(range(num_vars), 2)]
    net.add_factors("pair", scopes, torch.randn(len(scopes), 2, 2, generator=g))
    return net


def batched_grid():
    """Three independent 4 x 5 Ising models (batch B = 3), checkerboard colours."""
    g = torch.Generator().manual_seed(1)
    return ising_grid(4, 5, coupling=torch.randn(3, 31, generator=g), field=torch.randn(3, 20, generator=g))


def graphs() -> dict:
    """``name -> FactorGraph``: grids, dense nets, mixed cardinalities, arity 3, evidence, batches, ``colors``
    ``None``, an improper (all-zero) colouring and a colouring with unused colour ids."""
    mixed = dense_net(7, cards=(2, 3, 4), seed=2, triples=True)
    evidence = {"x0": torch.tensor([0, 1, -1]), "x2": torch.tensor([3, -1, 0])}
    out = {
        "grid_batch3": batched_grid().factor_graph(),
        "dense12": dense_family(12).factor_graph(),
        "dense_separate_factors": dense_net(9, seed=3).factor_graph(),
        "mixed_cards_arity3": mixed.factor_graph(),
        "mixed_cards_evidence_batch3": mixed.factor_graph(evidence),
        "float64": dense_net(6, cards=(3, 2), seed=4, dtype=torch.float64).factor_graph(),
    }
    base = mixed.factor_graph(evidence)
    out["colors_none"] = dataclasses.replace(base, colors=None)
    out["colors_all_zero"] = dataclasses.replace(base, colors=torch.zeros(base.num_vars, dtype=torch.long))
    out["colors_with_gaps"] = dataclasses.replace(base, colors=3 * base.colors + 1)
    return out


def reference_trace(fg, num_chains: int, num_sweeps: int, generator, init=None) -> torch.Tensor:
    """``[S, N, B, V]`` every sweep's state by the full recomputation (every variable's conditional from every
    factor, once per colour, and the colour's rows kept): an independent implementation of the sampler's draw
    order, the uniforms ``[N, B, V_c, C]`` of the colour's variables (ascending) only, colour by colour."""
    with torch.no_grad():
        theta = fg.masked_unary()
        x = (ChromaticGibbs._draw(theta.expand(num_chains, -1, -1, -1), generator) if init is None
             else init.to(torch.long))
        colors = fg.colors if fg.colors is not None else torch.arange(fg.num_vars)
        members = [(colors == c).nonzero().reshape(-1) for c in range(int(colors.max()) + 1)]
        trace = []
        for _ in range(num_sweeps):
            for vs in members:
                logits = ChromaticGibbs.conditional_logits(fg, x)[:, :, vs]
                u = torch.rand(logits.shape, dtype=logits.dtype, generator=generator)
                x = x.clone()
                x[:, :, vs] = ChromaticGibbs._pick(logits, u)
            trace.append(x)
    return torch.stack(trace)
