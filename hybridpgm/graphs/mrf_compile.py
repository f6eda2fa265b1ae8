"""Compiling a :class:`~hybridpgm.graphs.MarkovNet` to its padded, batched :class:`FactorGraph`.

:func:`compile_factor_graph` evaluates every factor family's log-potentials
(``batch_shape + (F or 1,) + cards``), broadcasts them with the evidence to one batch shape
and flattens it to ``B`` models, then lays every model out in the padded form the inference
algorithms consume (``V`` variables, ``C`` the largest cardinality):

* ``unary`` ``[B, V, C]`` -- the sum of all one-variable log-potentials, zero-padded;
* ``valid`` ``[B, V, C]`` -- the states each variable may take: not a padding state
  (``c < card``), and the observed state only where the evidence observes the variable
  (a negative value, or NaN in a float tensor, leaves it unobserved in that batch entry);
* one :class:`FactorGroup` per arity ``k >= 2``, every family of that arity stacked into
  ``[B, F] + [C] * k`` log-potentials (zero-padded) with their ``[F, k]`` variable indices;
* the cached proper colouring of the interaction graph (:meth:`MarkovNet.colors
  <hybridpgm.graphs.MarkovNet.colors>`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs.factor_graph import FactorGraph, FactorGroup

if TYPE_CHECKING:
    from hybridpgm.graphs.markov_net import MarkovNet

__all__ = ["compile_factor_graph", "evidence_states"]


def evidence_states(v: str, t: torch.Tensor) -> torch.Tensor:
    """Evidence values as long states: a float tensor may hold whole numbers and ``NaN`` (unobserved)."""
    if not torch.is_floating_point(t):
        return t.long()
    missing = torch.isnan(t)
    if bool((t[~missing] != t[~missing].round()).any()):
        raise EvidenceError(f"MarkovNet: evidence for {v!r} holds non-integer values "
                            f"{t[~missing & (t != t.round())][:3].tolist()}")
    return torch.where(missing, -1.0, t).long()


def compile_factor_graph(mrf: MarkovNet, evidence: Mapping[str, torch.Tensor] | None = None,
                         context=None) -> FactorGraph:
    """Compile ``mrf`` to a padded, batched :class:`FactorGraph` (what
    :meth:`MarkovNet.factor_graph <hybridpgm.graphs.MarkovNet.factor_graph>` returns).

    :param evidence: ``name -> LongTensor`` broadcastable to a batch shape;
        a negative value (or NaN in a float tensor) means "unobserved" in that batch entry.
    :param context: passed to neural potentials.
    :raises EvidenceError: evidence that is not a mapping, names an unknown variable, holds a
        non-integer value or a state outside ``0..card-1``, or a batch shape holding no model.
    :raises ModelSpecError: batch shapes of the factors and evidence that do not broadcast.
    """
    tables = mrf.tables(context)
    if evidence is not None and not isinstance(evidence, Mapping):
        raise EvidenceError(f"MarkovNet: evidence must be a mapping name -> values, got {type(evidence).__name__} "
                            f"{evidence!r:.60}")
    evidence = dict(evidence or {})
    for v in evidence:
        if v not in mrf.cards:
            raise EvidenceError(f"MarkovNet: evidence names unknown variable {v!r}")
        evidence[v] = evidence_states(v, torch.as_tensor(evidence[v]))
    shapes = [t.shape[: t.dim() - len(mrf.families[n]["cards"]) - 1] for n, t in tables.items()]
    shapes += [e.shape for e in evidence.values()]
    try:
        batch_shape = torch.broadcast_shapes(*shapes) if shapes else torch.Size()
    except RuntimeError as e:
        raise ModelSpecError(f"MarkovNet: batch shapes of factors/evidence do not broadcast: {shapes}") from e
    ref = next(iter(tables.values()), None)
    dtype = torch.get_default_dtype() if ref is None else ref.dtype
    for t in tables.values():
        dtype = torch.promote_types(dtype, t.dtype)
    device = ref.device if ref is not None else torch.device("cpu")
    B, V = batch_shape.numel(), len(mrf.cards)
    if B == 0:
        raise EvidenceError(f"MarkovNet: the batch shape {tuple(batch_shape)} of the factors and evidence (shapes "
                            f"{[tuple(s) for s in shapes]}) holds no model; pass at least one row")
    C = max(mrf.cards.values())
    card_t = torch.tensor(list(mrf.cards.values()), device=device)
    valid = (torch.arange(C, device=device) < card_t[:, None]).expand(B, V, C)
    if evidence:
        valid = valid.clone()
        for v, val in evidence.items():
            val = val.to(device).expand(batch_shape).reshape(B)
            if bool((val >= mrf.cards[v]).any()):
                raise EvidenceError(f"MarkovNet: evidence for {v!r} has value {int(val.max())} "
                                    f"outside 0..{mrf.cards[v] - 1}")
            obs = torch.nn.functional.one_hot(val.clamp_min(0), C).bool() | (val < 0)[:, None]
            valid[:, mrf._index[v]] &= obs
    unary = torch.zeros(B, V, C, dtype=dtype, device=device)
    by_arity: dict[int, list] = {}
    for name, t in tables.items():
        fam = mrf.families[name]
        k, F = len(fam["cards"]), len(fam["scopes"])
        t = t.to(dtype).expand(batch_shape + (F,) + fam["cards"]).reshape((B, F) + fam["cards"])
        pad = []
        for c in reversed(fam["cards"]):
            pad += [0, C - c]
        if any(pad):
            t = torch.nn.functional.pad(t, pad)
        idx = getattr(mrf, fam["scope_key"])
        if k == 1:
            unary = unary.index_add(1, idx[:, 0], t)
        else:
            by_arity.setdefault(k, []).append((idx, t))
    groups = [FactorGroup(torch.cat([i for i, _ in g]), torch.cat([t for _, t in g], dim=1))
              for _, g in sorted(by_arity.items())]
    colors = torch.tensor(mrf.colors(), dtype=torch.long, device=device)
    return FactorGraph(list(mrf.cards), card_t, unary, valid, groups, colors, batch_shape)
