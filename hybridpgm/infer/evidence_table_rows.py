r"""The rows an :class:`~hybridpgm.infer.EvidenceTable` does not answer from its entries, by the contraction.

A compact table's row whose signed sum cancels too much, and a row of a table whose :math:`p(e_S)` lies under
float64's smallest normal number (:data:`~hybridpgm.infer.evidence_table.TINY`: a float64 network with entries
of ``1e-310``, where p(e) may be :math:`10^{-620}`, a subnormal of a few digits or 0 in the table), are answered by
:func:`~hybridpgm.infer.exact.log_evidence` and :func:`~hybridpgm.infer.exact.posterior`, which work in log space
where probabilities underflow.  Each such row is returned divided by its :math:`p(e_S)`,

.. math::

    \text{joint}[x] = p(x, e_S) / p(e_S) = p(x \mid e_S), \qquad \text{joint}[\varnothing] = 1,
    \qquad \text{shift} = \log p(e_S),

so that nothing underflows: the posteriors, ratios, are unchanged, and :math:`\log p(e_S)` is
:math:`\log \text{joint}[\varnothing] + \text{shift}`.  An impossible row is all zeros with shift 0.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.infer.evidence_table import EvidenceTable

__all__ = ["exact_rows"]


@torch.no_grad()
def exact_rows(table: "EvidenceTable", values: torch.Tensor, columns: bool, asked: Sequence[int]):
    """``(joint, states, shift)`` of :meth:`EvidenceTable._answer <hybridpgm.infer.EvidenceTable>` for a few rows
    ``values`` (``[n, k]`` long, ``-1``: not observed) by the contraction, scaled as the module docstring says;
    plain tensors, as the table's own answers are (the CPDs' autograd graph is not followed).

    :returns: ``joint`` ``[n, W + 1]`` (``[n, 1]`` without ``columns``), ``states`` dict position ->
        ``[n, c_i]`` for the evidence nodes ``asked``, ``shift`` ``[n]`` float64."""
    from hybridpgm.infer.exact import log_evidence, posterior

    n, device = values.shape[0], values.device
    sub = {v: values[:, i] for i, v in enumerate(table.nodes)}
    log_z = log_evidence(table.bn, sub).double().reshape(-1)
    possible = log_z > -math.inf
    shift = torch.where(possible, log_z, 0.0)
    joint = torch.zeros(n, table._width + 1 if columns else 1, dtype=torch.float64, device=device)
    joint[:, -1] = possible.double()
    states = {i: torch.zeros(n, table.cards[i], dtype=torch.float64, device=device) for i in asked}
    names = ([*table.others] if columns else []) + \
        [table.nodes[i] for i in asked if bool((values[possible, i] < 0).any())]
    if names and bool(possible.any()):
        post = posterior(table.bn, names, {v: t[possible] for v, t in sub.items()})
        if columns and table.others:
            joint[possible, :-1] = torch.cat([post[v].double() for v in table.others], dim=1)
        for i in asked:
            if table.nodes[i] in post:
                states[i][possible] = post[table.nodes[i]].double()
    return joint, states, shift
