"""Exact joint samples from a contraction plan: forward filtering, backward sampling in one pass.

A :class:`~hybridpgm.graphs.contraction.ContractionPlan` sums every variable out of
:math:`\\prod_f \\phi_f(x_f)` one pairwise step at a time.  Step :math:`s` takes arguments
:math:`a_1, a_2` over dims :math:`O_s \\cup K_s` and returns
:math:`m_s(x_{O_s}) = \\sum_{x_{K_s}} a_1 a_2`, summing out :math:`K_s`; every variable is summed out at
exactly one step.  Run forward once in log space, keeping each step's arguments, and the joint
factorises along the steps in reverse:

.. math::

    p(x) = \\prod_s p(x_{K_s} \\mid x_{O_s}), \\qquad
    p(x_{K_s} \\mid x_{O_s}) = \\frac{a_1(x_{O_s}, x_{K_s})\\, a_2(x_{O_s}, x_{K_s})}{m_s(x_{O_s})},

because :math:`O_s` is held by the step that consumes :math:`m_s`, which comes later in the order and is
sampled first.  So the last step's :math:`K` is drawn first (its :math:`O` is the batch dim only), then each
earlier step's :math:`K` given what is drawn: the forward-filtering backward-sampling of hidden Markov
models [1], generalised to any elimination order as in Pyro's ``infer_discrete`` [2].  Cost: one
contraction for the batch, then per sample and step one gather of each argument at the drawn :math:`x_{O_s}`
and a draw over :math:`|K_s|` states (the inverse of the cumulative sum at a uniform; a binary search when the
conditional is the same for every sample, as at the last step), instead of one contraction per variable for
sequential conditioning.

**Spaces.**  The forward contraction runs in log space, or in probability space (one batched matmul per step,
as queries do); then the conditionals are the logs of the gathered entries, and a row that underflowed somewhere
comes back flagged (:attr:`PlanSamples.ok`) for the caller to redo in log space.  In log space each step's
output is less its per-row maximum (:class:`~hybridpgm.graphs.row_shifts.RowShifts`, which keeps the maxima in
float64 for :math:`\\log Z`): the conditional of a step depends on its arguments only up to a constant per row, so
the draws are those of the unshifted contraction, and a float32 conditional is not rounded at the scale of the
running sum of the scores (a unary of 0.01 met a frustrated ring's 150000 there, and was lost).

**Shapes.**  The plan's output is its batch dim alone (``R`` rows: models or evidence rows; absent means one
row); every operand holds the batch dim or broadcasts over it.  Samples come back as ``[N, R, D]``, ``D`` the
sampled dims in the order asked for.

**References**

[1] S. Frühwirth-Schnatter, *Data augmentation and dynamic linear models*, 1994; C. K. Carter, R. Kohn,
*On Gibbs sampling for state space models*, 1994.

[2] F. Obermeyer, E. Bingham, M. Jankowiak, J. Chiu, N. Pradhan, A. Rush, N. Goodman,
*Tensor Variable Elimination for Plated Factor Graphs*, 2019.
"""

from __future__ import annotations

import math
from typing import Hashable, NamedTuple, Sequence

import torch

from hybridpgm.checks import generator_or_none
from hybridpgm.graphs.contraction import AbsorbingPlan, ContractionPlan
from hybridpgm.graphs.row_shifts import RowShifts

__all__ = ["PlanSamples", "inverse_cdf", "sample_plan"]

#: elements of one step's conditional logits ``[n, R, |K|]`` drawn at once; samples are chunked to stay under it
CHUNK_ELEMENTS = 1 << 22


class PlanSamples(NamedTuple):
    """What :func:`sample_plan` returns."""

    #: ``[N, R, D]`` long: the samples
    x: torch.Tensor
    #: ``[R]``: the log of the contraction (:math:`\\log Z` of each row)
    log_z: torch.Tensor
    #: ``[N, R]`` :math:`\\log p(x)` of each sample, or ``None``
    log_p: torch.Tensor | None
    #: ``[R]`` bool: the rows whose contraction is positive and finite and whose every conditional was; the others'
    #: samples are meaningless (evidence of probability zero, or, in probability space, underflow: redo them in
    #: log space)
    ok: torch.Tensor


def sample_plan(plan: ContractionPlan | AbsorbingPlan, operands: Sequence[torch.Tensor], dims: Sequence[Hashable],
                num_samples: int, generator: torch.Generator | None = None, with_log_prob: bool = False,
                space: str = "log") -> PlanSamples:
    """Draw ``num_samples`` exact joint samples of every non-batch dim of ``plan``.

    :param plan: a plan whose output dims are at most one batch dim; an
        :class:`~hybridpgm.graphs.contraction.AbsorbingPlan`'s absorbed groups are steps like the others (run
        first, so sampled last: each absorbed variable given the dims its group keeps).
    :param operands: operands in the plan's dim order, not differentiated: log-space (``-inf`` where ruled out),
        or with ``space="prob"`` non-negative (zero where ruled out).
    :param dims: the sampled dims, in the order of the last axis of the result (every non-batch dim of the plan,
        each once).
    :param int num_samples: ``N``.
    :param generator: the source of randomness (a :class:`torch.Generator` on the operands' device), or ``None``
        for torch's global one.
    :param bool with_log_prob: also return :math:`\\log p(x)` of each sample, the sum of the log conditionals
        drawn from (its normaliser :math:`Z` included), summed in float64 and returned in the operands' dtype.
    :param str space: ``"log"``, or ``"prob"``: the forward contraction in probability space (one batched matmul
        per step), the conditionals from the logs of the gathered entries; a row whose contraction or one of whose
        conditionals underflows comes back not ``ok``.
    :raises ConfigError: ``generator`` is neither a :class:`torch.Generator` nor ``None`` (a seed given by mistake;
        the public samplers that reach this, :func:`~hybridpgm.infer.mrf_exact.exact_sample` and
        :func:`~hybridpgm.infer.exact.posterior_sample`, pass their ``generator`` through).
    """
    generator = generator_or_none(generator, "generator of the exact sampler")
    batch = plan.output_dims
    if len(batch) > 1:
        raise ValueError(f"sample_plan: the plan's output must be one batch dim or none, got {batch}")
    if space not in ("log", "prob"):
        raise ValueError(f"sample_plan: space must be 'log' or 'prob', got {space!r}")
    position = {d: i for i, d in enumerate(dims)}
    steps, saved = plan.steps, []
    with torch.no_grad():
        if space == "prob":
            log_z = plan([t.detach() for t in operands], space, step_args=saved).log().reshape(-1)
        else:  # every step less its per-row maximum: conditionals of small numbers, not of the running scores
            with RowShifts(plan) as rows:
                log_z = rows.added(plan([t.detach() for t in operands], space, step_args=saved)).reshape(-1)
        R = log_z.shape[0]
        ok = torch.isfinite(log_z)
        sizes = _sizes(steps, saved)
        missing = set(sizes) - set(batch) - set(position)
        if missing or len(position) != len(dims):
            raise ValueError(f"sample_plan: dims {list(dims)} must name every sampled dim once (missing {missing})")
        device = log_z.device
        x = torch.zeros(num_samples, R, len(dims), dtype=torch.long, device=device)
        # summed in float64, rounded once: a float32 running sum of 2000 log conditionals was off by 0.02
        log_p = log_z.new_zeros(num_samples, R, dtype=torch.float64) if with_log_prob else None
        for (_, ins, out, *_), args in zip(reversed(steps), reversed(saved)):
            summed = [d for d in dict.fromkeys(d for ds in ins for d in ds) if d not in out]
            if not summed:
                continue
            width = math.prod(sizes[d] for d in summed)
            free = all(d in batch for d in out)  # the conditional is the same for every sample
            chunk = max(1, num_samples) if free else max(1, CHUNK_ELEMENTS // max(1, R * width))
            for lo in range(0, num_samples, chunk):
                part = x[lo:lo + chunk]
                pieces = (_gathered(t, ds, summed, sizes, batch, position, part[:1] if free else part, R)
                          for t, ds in zip(args, ins))
                logits = sum(p.log() if space == "prob" else p for p in pieces).reshape(1 if free else part.shape[0], R,
                                                                                         width)
                u = torch.rand(part.shape[:2], generator=generator, dtype=logits.dtype, device=device)
                draw, log_q, fine = inverse_cdf(logits, u, free, log_p is not None)
                ok &= fine.all(0)
                if log_p is not None:
                    log_p[lo:lo + chunk] += log_q
                for d in reversed(summed):
                    part[..., position[d]] = draw % sizes[d]
                    draw = draw.div(sizes[d], rounding_mode="floor")
    return PlanSamples(x, log_z, log_p.to(log_z.dtype) if log_p is not None else None, ok)


def inverse_cdf(logits: torch.Tensor, u: torch.Tensor, shared: bool, with_log_q: bool):
    """Draw ``[n, R]`` states from ``softmax(logits)`` by inverting the cumulative sum at ``u`` (uniform, ``[n, R]``);
    ``shared``: ``logits`` is ``[1, R, W]``, the same for every sample (a binary search per sample).

    The target :math:`v = u \\cdot c_W` is kept below the total :math:`c_W` (``nextafter``), so a state of
    probability zero, whose interval :math:`[c_{i-1}, c_i)` is empty, is never drawn, rounding included.
    Returns the draws, with ``with_log_q`` their log-probabilities ``[n, R]`` (else ``None``), and whether each
    conditional was finite and positive.
    """
    top = logits.amax(-1, keepdim=True)
    cdf = (logits - top).exp().cumsum(-1)
    total = cdf[..., -1]
    fine = torch.isfinite(total)  # [n or 1, R]: all -inf (underflow, or impossible) gives NaN
    v = torch.minimum(u * total, torch.nextafter(total, total.new_zeros(())))
    if shared:
        draw = torch.searchsorted(cdf[0], v.T.contiguous(), right=True).T  # [n, R]
    else:
        draw = (cdf <= v[..., None]).sum(-1)
    draw = draw.clamp_(max=logits.shape[-1] - 1)  # only a NaN target (a row not ``fine``) reaches past the end
    if not with_log_q:
        return draw, None, fine
    picked = logits.expand(u.shape + logits.shape[-1:]).gather(-1, draw[..., None])[..., 0]
    return draw, picked - top[..., 0] - total.log(), fine


def _sizes(steps, saved) -> dict:
    """Every dim's size, read from the step arguments."""
    sizes = {}
    for (_, ins, *_), args in zip(steps, saved):
        for t, ds in zip(args, ins):
            sizes.update(zip(ds, t.shape))
    return sizes


def _gathered(t: torch.Tensor, ds: tuple, summed: list, sizes: dict, batch: tuple, position: dict,
              x: torch.Tensor, R: int) -> torch.Tensor:
    """One step argument ``t`` (dims ``ds``) at each sample's drawn values of its non-summed dims:
    ``[n, R] + [|k| for k in K]`` over the step's summed dims ``K`` (size 1 for those ``t`` lacks)."""
    held = [d for d in ds if d not in summed and d not in batch]
    own = [d for d in summed if d in ds]
    order = [ds.index(d) for d in batch if d in ds] + [ds.index(d) for d in held + own]
    if order != list(range(len(ds))):
        t = t.permute(order)
    rows = t.shape[0] if batch and batch[0] in ds else 1
    flat = t.reshape(rows, math.prod(sizes[d] for d in held), math.prod(sizes[d] for d in own))
    index = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
    for d in held:
        index = index * sizes[d] + x[..., position[d]]
    row = torch.arange(R, device=x.device) if rows == R and R > 1 else torch.zeros(R, dtype=torch.long,
                                                                                     device=x.device)
    picked = flat[row, index]  # [n, R, prod own]
    return picked.reshape(x.shape[:2] + tuple(sizes[d] if d in ds else 1 for d in summed))
