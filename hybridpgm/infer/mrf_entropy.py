"""The exact entropy of a discrete MRF, from its log-partition function.

For :math:`p(x) = \\exp s(x) / Z` with score :math:`s(x) = \\sum_v \\theta_v(x_v) + \\sum_f \\theta_f(x_f)` (over
the states the evidence allows),

.. math::

    H(p) = -\\mathbb E_p[\\log p(x)] = \\log Z - \\mathbb E_p[s(x)], \\qquad
    \\mathbb E_p[s(x)] = \\frac{d}{d\\beta} \\log Z(\\beta)\\Big|_{\\beta = 1}, \\quad
    Z(\\beta) = \\sum_x e^{\\beta s(x)},

the mean of the sufficient statistics against the parameters [1, Prop. 3.1].  So one exact contraction
(:func:`~hybridpgm.infer.mrf_exact.exact_log_partition`, on the cached plan) and its gradient in one scalar
:math:`\\beta_b` per model give the entropy, without storing a factor marginal.  When the potentials require
gradients (and autograd is on in the caller) the derivative is taken with ``create_graph``, so :math:`H` is
differentiable in them (its gradient is a second derivative of :math:`\\log Z`).

**Batches.**  Each model's :math:`H_b` depends on its own tables alone, so a batch over
:data:`~hybridpgm.infer.mrf_exact.EXACT_MAX_BYTES` runs in chunks of rows, as
:func:`~hybridpgm.infer.mrf_exact.exact_log_partition` does (:func:`~hybridpgm.infer.mrf_rows.by_rows`); a batch
that fits is one contraction.  Only a differentiable :math:`H` (potentials that require a gradient, autograd on)
needs the whole batch as one contraction, and raises where it does not fit.

**Precision.**  :math:`H` is a difference of two numbers of the size of :math:`\\log Z`, so its absolute error is
about the dtype's rounding times :math:`|\\log Z|`.  Both are taken of the centred tables (each factor's and each
variable's less its maximum, :func:`~hybridpgm.graphs.mrf_centring.centred_graph`), which leaves :math:`H` unchanged
and keeps a constant added to a table out of the difference: float32 tables near 65536 give :math:`H` to
:math:`10^{-6}`, as near 0 (uncentred, :math:`10^{-3}` was lost at 4096 and every digit at 65536).  What is left is
the size of the centred :math:`\\log \\tilde Z`, at most :math:`\\sum_v \\log C_v` plus the tables' spreads
(float32: an error of :math:`10^{-5}` at :math:`|\\log \\tilde Z| = 100`, about :math:`10^{-3}` at :math:`10^4`).  A
model where every assignment the evidence allows pays a huge finite penalty (hard constraints of :math:`-10^9` in
float32 or :math:`-10^{16}` in float64 that cannot all be met; a table's maximum is over all its states, those the
evidence rules out included, so a penalty a table puts on all its states alone is centred away) has no
significant digit of :math:`H` left, though its marginals stay exact: where the bound
:math:`\\epsilon (|\\log \\tilde Z| + |\\mathbb E_p[\\tilde s]|)` exceeds :math:`0.01 \\max(1, |H|)`
:func:`exact_entropy` raises :class:`~hybridpgm.errors.ModelSpecError` instead of a number.

**References**

[1] M. J. Wainwright, M. I. Jordan, *Graphical Models, Exponential Families, and Variational Inference*, 2008.
"""

from __future__ import annotations

import dataclasses

import torch

from hybridpgm.autograd_scope import with_autograd
from hybridpgm.compile_scope import eagerly
from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs.factor_graph import FactorGraph, FactorGroup
from hybridpgm.graphs.mrf_centring import centred_graph
from hybridpgm.infer.mrf_exact import _log_partition, _rows_per_call, _structure
from hybridpgm.infer.mrf_possible import _check_possible
from hybridpgm.infer.mrf_rows import by_rows, needs_graph
from hybridpgm.precision_scope import exact_dtype, exact_precision
from hybridpgm.tensor_tracking import without_graph
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["exact_entropy"]


def exact_entropy(fg: FactorGraph) -> torch.Tensor:
    """Exact :math:`H(p)` of each model (given evidence), ``[B]``; also under ``torch.no_grad()`` and
    ``torch.inference_mode()`` (:func:`~hybridpgm.autograd_scope.with_autograd`).  A forward-mode tangent of the
    potentials (:func:`torch.func.jvp`, :func:`torch.func.jacfwd`, a :mod:`torch.autograd.forward_ad` dual; no
    ``requires_grad``) reaches it, also where the rows run in chunks.

    :param FactorGraph fg: the model, batch size ``B``.
    :raises ModelSpecError: when the contraction is too large (as
        :func:`~hybridpgm.infer.mrf_exact.exact_log_partition`: one model over
        :data:`~hybridpgm.infer.mrf_exact.EXACT_MAX_BYTES`, or a differentiable batch over it), or when :math:`H`
        keeps no significant digit (huge finite penalties every allowed assignment pays; see **Precision** above),
        naming the models.
    :raises EvidenceError: when the evidence of a model has probability zero (:math:`\\log Z_b = -\\infty`: every
        assignment it allows scores :math:`-\\infty`, so :math:`p` is undefined), naming the model and its evidence.
    """
    whole = needs_graph(fg, fg.unary)  # in the caller's grad mode: with_autograd turns it on
    return with_autograd(_entropy, fg, whole)


def _entropy(fg: FactorGraph, whole: bool) -> torch.Tensor:
    """:func:`exact_entropy` with autograd on; differentiable, as one contraction, where ``whole`` (the caller's
    autograd on and the potentials requiring a gradient), else in chunks of rows where the batch does not fit."""
    pots = [fg.unary] + [g.log_potentials for g in fg.groups]
    dtype = exact_dtype(*pots) if exact_precision(device=fg.unary.device).active else fg.unary.dtype  # as contracted
    rows = _rows_per_call(_structure(fg), fg.batch_size, dtype, whole)
    log_z, mean_score = by_rows(fg, rows, lambda sub, _, query: _mean_score(sub, whole, query), (0, 0),
                                "exact entropy")
    entropy = log_z - mean_score
    _check_precise(fg, log_z.detach(), mean_score.detach(), entropy.detach())
    return entropy if whole else without_graph(entropy)  # a forward-mode tangent stays


def _mean_score(fg: FactorGraph, create_graph: bool, query: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_tempered_mean_score`; with ``create_graph`` outside ``torch.compile`` (a graph break), as
    :func:`~hybridpgm.infer.mrf_exact._differentiable_marginals_rows` and for its reason (AOT autograd's backward
    is not differentiable again: torch's raw in-place error on a leaf)."""
    if create_graph:
        return _eager_mean_score(fg, query)
    return _tempered_mean_score(fg, False, query)


def _eager_mean_score(fg: FactorGraph, query: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    return eagerly(_tempered_mean_score)(fg, True, query)


def _tempered_mean_score(fg: FactorGraph, create_graph: bool, query: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log Z [B], E_p[s] [B])`` of a batch that fits, from one contraction of the tempered models and its
    gradient in :math:`\\beta`, both of the centred tables (the module docstring's **Precision**); differentiable in
    the potentials where ``create_graph``."""
    fg, offset = centred_graph(fg)
    _check_possible(fg, offset, query)  # log Z = log Z̃ + M: maxima summing past the range, -inf, are probability 0
    beta = torch.ones(fg.batch_size, dtype=fg.unary.dtype, device=fg.unary.device, requires_grad=True)

    def scaled(t: torch.Tensor) -> torch.Tensor:
        return t * beta.reshape(-1, *([1] * (t.dim() - 1)))

    tempered = dataclasses.replace(fg, unary=scaled(fg.unary),
                                   groups=[FactorGroup(g.variables, scaled(g.log_potentials)) for g in fg.groups])
    log_z = _log_partition(tempered, tempered.unary, query)
    (mean_score,) = torch.autograd.grad(log_z.sum(), beta, create_graph=create_graph)
    return (log_z, mean_score) if create_graph else (without_graph(log_z), mean_score)


def _check_precise(fg: FactorGraph, log_z: torch.Tensor, mean_score: torch.Tensor, entropy: torch.Tensor) -> None:
    """Raise :class:`~hybridpgm.errors.ModelSpecError` where the rounding bound
    :math:`\\epsilon (|\\log Z| + |\\mathbb E_p[s]|)` of :math:`H = \\log Z - \\mathbb E_p[s]` (``log_z`` and
    ``mean_score`` of the centred tables) exceeds :math:`0.01 \\max(1, |H|)`: huge finite penalties every allowed
    assignment pays that the centring cannot take out (``-1e30`` as "forbidden"),
    where the difference keeps no significant digit and came back as any number (``-1.5e284``), not an entropy.
    Deferred to the one host read of :func:`~hybridpgm.fit`'s step inside it."""
    bound = torch.finfo(log_z.dtype).eps * (log_z.abs() + mean_score.abs())
    bad = bound > 0.01 * entropy.abs().clamp(min=1.0)

    def error() -> ModelSpecError:
        rows = bad.nonzero().flatten().tolist()
        return ModelSpecError(f"exact entropy: model(s) {rows[:10]} have log Z = {float(log_z[rows[0]]):.3g} "
                              f"(of the tables each less its maximum, {log_z.dtype}), so H = log Z - E[score] "
                              f"keeps no significant digit (rounding bound {float(bound[rows[0]]):.3g}): every "
                              f"assignment the evidence allows pays a huge penalty; use penalties well inside the "
                              f"dtype's precision (e.g. -1e4) or evidence that leaves an assignment without one")

    check_or_defer(~bad.any(), error, "exact entropy: log Z is so large that H = log Z - E[score] keeps no "
                   "significant digit (huge penalties every allowed assignment pays)", ModelSpecError)
