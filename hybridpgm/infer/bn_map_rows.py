"""The MAP assignment of a batch of evidence rows of a :class:`~hybridpgm.graphs.BayesNet`, and its value.

The max-sum contraction of the conditioned log-factors gives :math:`\\max_x \\log p(x, e_n)`; its gradient with
respect to zero log-indicators :math:`\\lambda_q` attached to the unobserved nodes is one-hot at the maximising
states, which back-tracks the argmax [1] (:func:`map_rows`, for
:func:`~hybridpgm.infer.exact.map_assignment`).  The value returned with it is differentiable in the CPDs'
parameters (and soft-evidence likelihoods) as :math:`\\log p(x^*, e_n)` at the assignment found
(:func:`log_joint_at`), the gradient of the max-sum contraction at its argmax, through the factors' entries at
:math:`x^*`: in reverse mode where the caller's autograd is on, and in forward mode (:func:`torch.func.jvp`,
:func:`torch.func.jacfwd`, a :mod:`torch.autograd.forward_ad` dual, whose tangents need no ``requires_grad``:
:func:`~hybridpgm.tensor_tracking.carries_tangent`) in either grad mode.

**References**

[1] J. Eisner, *Inside-Outside and Forward-Backward Algorithms Are Just Backprop*, 2016.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hybridpgm.autograd_scope import with_autograd
from hybridpgm.errors import ConfigError
from hybridpgm.infer.bn_contract import check_possible, contract
from hybridpgm.infer.bn_evidence import BATCH, Evidence
from hybridpgm.infer.bn_factors import ScaledFactors, factors
from hybridpgm.tensor_tracking import carries_tangent
from hybridpgm.train.traced_checks import assert_in_trace

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["log_joint_at", "map_rows"]


def map_rows(bn: "BayesNet", facts, ev: Evidence, names: list, row_ids, log_prob: bool, graph: bool) -> list:
    """``[argmax [N] of each of names..., max log p(x, e_n) [N]]``: max-sum contraction, then back-tracking (by a
    gradient: :func:`~hybridpgm.autograd_scope.with_autograd`, so it works under ``torch.inference_mode()``).

    :param facts: the network's :func:`~hybridpgm.infer.bn_evidence.network_facts`.
    :param ev: the rows' evidence.
    :param list names: the unobserved discrete nodes.
    :param row_ids: the rows' positions in the caller's batch (named in errors), or ``None``.
    :param bool log_prob: the maximum is returned (else only the states are used): then it carries the
        forward-mode tangent of the CPDs' parameters, where they have one.
    :param bool graph: the maximum keeps its graph to the CPDs' parameters (and soft-evidence likelihoods): the
        caller's autograd is on and it is returned.
    """
    return with_autograd(_backtracked, bn, facts, ev, names, row_ids, log_prob, graph)


def _backtracked(bn: "BayesNet", facts, ev: Evidence, names: list, row_ids, log_prob: bool, graph: bool) -> list:
    # the factors once, with the caller's graph where the value keeps one (a forward-mode tangent rides on them in
    # either grad mode); the max-sum pass and its back-tracking run on detached copies: their tangent would be
    # thrown away with the maximum's (the value's derivatives are log_joint_at's), and jacfwd batches it over
    # every tangent direction (a 14-node chain's jacfwd, 64 rows: 88 -> 27 ms and 202 -> 50 ms in two runs)
    if torch.jit.is_tracing():
        _guard_rows(ev)
    with torch.set_grad_enabled(graph):
        tensors, dims = factors(facts, ev, set(facts.nodes), "log")
    tangent = log_prob and any(carries_tangent(t) for t in tensors)
    plain = ScaledFactors([t.detach() for t in tensors], getattr(tensors, "log_scale", []))
    indicators = [torch.zeros(ev.n, facts.cards[q], dtype=ev.dtype, device=ev.device, requires_grad=True)
                  for q in names]
    best = contract(bn, ev, plain, dims, (BATCH,), "max", indicators, [(BATCH, q) for q in names])
    check_possible(best, "the MAP assignment", row_ids, bn, ev)
    grads = torch.autograd.grad(best.sum(), indicators) if names else ()
    states = [g.argmax(-1) for g in grads]
    best = best.detach()
    if graph or tangent:  # the value of the contraction, the derivatives of log p(x*, e_n) at the assignment found
        score = _entries_at(tensors, dims, ev, dict(zip(names, states)))
        if score.requires_grad or carries_tangent(score):
            best = best + (score - score.detach())
    return states + [best]


def _guard_rows(ev: Evidence) -> None:
    """Under :func:`torch.jit.trace`: the back-tracking's gradient is traced with the batch size as a constant (a
    map traced on 4 rows answered 4 states for 3 rows), so compile into the trace a check that every evidence
    tensor still has ``ev.n`` rows: another batch size raises :class:`torch.jit.Error`, never answers."""
    held = [*ev.observed.values(), *ev.partial.values(), *ev.values.values()]
    if not ev.batched or not held:
        return
    n = int(ev.n)  # a constant: the tracer records ``ev.n``, read off the evidence's shape, as the rows' count
    ok = torch.stack([torch.ones_like(x, dtype=torch.long).sum() == n * x[0].numel() for x in held]).all()
    assert_in_trace(ok, f"the MAP assignment was traced on {n} evidence rows", ConfigError,
                    "not a data error: a traced map answers only the batch size it was traced on; trace it again "
                    "for this batch size or call it eagerly; see docs/compile.md")


def log_joint_at(facts, ev: Evidence, assignment: dict) -> torch.Tensor:
    """``[N]`` :math:`\\log p(x^*_n, e_n)` up to the factors' detached row shifts: the sum of every conditioned
    log-factor's entry at the assignment (``assignment``: unobserved discrete node -> ``[N]`` states), with the
    factors' graph to the CPDs' parameters and the soft-evidence likelihoods.  Its gradient is that of the MAP
    value (the max-sum contraction's, at its argmax), for the memory of the factors and ``N`` entries each
    rather than of the contraction's intermediates."""
    tensors, dims = factors(facts, ev, set(facts.nodes), "log")
    return _entries_at(tensors, dims, ev, assignment)


def _entries_at(tensors, dims, ev: Evidence, assignment: dict) -> torch.Tensor:
    """``[N]`` the sum of the log-factors ``tensors`` (over ``dims``) at ``assignment``, row by row."""
    rows = torch.arange(ev.n, device=ev.device)
    total = torch.zeros(ev.n, dtype=ev.dtype, device=ev.device)
    for t, d in zip(tensors, dims):
        index = tuple((rows if t.shape[i] == ev.n else torch.zeros_like(rows)) if x == BATCH else assignment[x]
                      for i, x in enumerate(d))
        total = total + (t[index] if index else t)
    return total
