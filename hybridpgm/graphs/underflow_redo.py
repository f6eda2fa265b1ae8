"""The exact redo of a log-space contraction step's underflowed entries.

:func:`~hybridpgm.graphs.contraction_steps.log_einsum` shifts each operand by its own maximum over the summed
dims, exponentiates, contracts with ``torch.einsum`` and takes the log.  Where the operands' maxima fall on
different terms the shifted sum :math:`s_o = \\sum_r \\prod_i e^{a_i(o, r) - m_i(o)}` underflows (to 0, or
to a subnormal of a few digits); :func:`redo_underflowed` computes those entries again as

.. math:: \\log Z_o = \\log \\sum_r e^{\\sum_i a_i(o, r)},

a log-sum-exp over the broadcast sum of the operands (:func:`shifted_logsumexp`, exact gradients where
:math:`|\\log Z_o|` is large), in blocks of at most ``budget`` terms, checkpointed under autograd.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["redo_underflowed", "shifted_logsumexp"]


def redo_underflowed(equation: str, operands, summed: torch.Tensor, result: torch.Tensor, budget: int) -> torch.Tensor:
    """``result`` with the entries whose max-shifted sum underflowed computed again exactly.

    Shifting each operand by its own maximum keeps a sum near one only when the operands' maxima fall on the
    same terms.  Where they disagree (a factor of -1000 on ``a = 1`` met by one of -1000 on ``a = 0``: every
    term is :math:`e^{-1000}` after shifting) the shifted sum underflows to 0, or to a subnormal of a few
    digits, and the step's log is :math:`-\\infty` or wrong by many nats.  An entry under
    :math:`\\text{tiny} / \\epsilon` of the dtype (where the terms lost to underflow could matter) that has a
    possible term is redone as a log-sum-exp of the broadcast sum of the operands over the summed dims :math:`r`,
    on those entries only (differentiable; shifted by its detached maximum, :func:`shifted_logsumexp`, so that the
    gradient stays exact where :math:`|\\log Z|` is large).  A host read decides whether any entry needs it.

    The broadcast sum of :math:`n` redone entries has :math:`n\\,|r|` terms, up to :math:`|r|` times the step's
    output, which is all the memory guards of the exact queries count; so it is formed in blocks of at most
    ``budget`` terms (:func:`_redo_blocks`; the log-space step passes
    :math:`\\max(|\\text{out}|, \\text{MAX\\_SUM\\_CHUNK\\_ELEMENTS})`), as
    :func:`~hybridpgm.graphs.contraction_steps.max_sum` forms its sum: chunks of entries, and, where one entry's
    :math:`|r|` alone is over that, the configurations of its leading summed dims one at a time (a two-pass
    log-sum-exp, the maximum found first).
    Under autograd each block is checkpointed (:func:`torch.utils.checkpoint.checkpoint`: recomputed in the
    backward pass, double backward included), so the saved tensors stay within one block too.  Whole entries
    per block (the usual case) give the values of the whole sum to the last bit; the two-pass walk agrees with
    it to rounding.

    :param equation: the step's ``einsum`` equation, ``"ab,bc->ac"``.
    :param operands: the step's log-space operands, in the order of ``equation``.
    :param summed: the max-shifted sum in probability space, shaped as the output.
    :param result: the step's log-space result, :math:`\\log(\\text{summed}) + \\text{shifts}`.
    :param budget: the most terms of the broadcast sum formed at once.
    :returns: ``result``, its underflowed possible entries replaced by their exact log-sum-exp.
    """
    inputs, out = equation.split("->")
    inputs = inputs.split(",")
    letters = sorted({c for term in inputs for c in term if c not in out})
    if not letters:
        return result
    dtype = summed.dtype
    low = summed.detach() < torch.finfo(dtype).tiny / torch.finfo(dtype).eps
    if not bool(low.any()):
        return result
    # entries with at least one possible term (an impossible configuration stays -inf, at no cost)
    possible = torch.einsum(equation, *[(t.detach() > float("-inf")).to(dtype) for t in operands]) > 0
    idx = (low & possible).nonzero(as_tuple=True)
    if idx[0].numel() == 0:
        return result
    sizes = {c: t.shape[i] for term, t in zip(inputs, operands) for i, c in enumerate(term)}
    exact = _redo_blocks(inputs, out, letters, sizes, operands, idx, budget)
    if result.dim() == 0:  # a step to a scalar: its one entry is the one redone
        return exact.reshape(())
    return result.index_put(idx, exact)


def _redo_blocks(inputs: list, out: str, letters: list, sizes: dict, operands, idx: tuple,
                 budget: int) -> torch.Tensor:
    """``[n]`` exact log-sum-exp over the summed dims ``letters`` of the broadcast sum of ``operands`` at the
    output entries ``idx``, never forming more than ``budget`` terms at once (see :func:`redo_underflowed`)."""
    n, red = idx[0].numel(), [sizes[c] for c in letters]
    lead = 0  # leading summed dims walked one configuration at a time; the rest are summed in a block
    while lead < len(red) and math.prod(red[lead:]) > budget:
        lead += 1
    rows = max(1, budget // math.prod(red[lead:]))
    fixed = list(itertools.product(*[range(k) for k in red[:lead]]))
    saving = torch.is_grad_enabled() and any(t.requires_grad for t in operands)
    blocks = -(-n // rows) * len(fixed)

    def run(fn, *args):  # a block's graph: recomputed in the backward pass where several blocks would be saved
        if saving and blocks > 1:
            return checkpoint(fn, *args, *operands, use_reentrant=False, preserve_rng_state=False)
        return fn(*args, *operands)

    def joined(at, config, *ops):
        return _joined(inputs, out, letters, sizes, lead, at, config, ops)

    parts = []
    for start in range(0, n, rows):
        at = tuple(i[start:start + rows] for i in idx)
        if not lead:
            parts.append(run(lambda at_, *ops: shifted_logsumexp(joined(at_, (), *ops)), at))
            continue
        with torch.no_grad():  # pass 1: each entry's maximum, held constant (as shifted_logsumexp holds it)
            m = joined(at, fixed[0], *operands).amax(-1)
            for config in fixed[1:]:
                m = torch.maximum(m, joined(at, config, *operands).amax(-1))
        finite = m > float("-inf")
        m0 = torch.where(finite, m, torch.zeros_like(m))
        total = sum(run(_exp_sum, joined, at, config, finite, m0) for config in fixed)
        parts.append(torch.where(finite, total.log() + m0, torch.full_like(m0, float("-inf"))))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _exp_sum(joined, at: tuple, config: tuple, finite: torch.Tensor, m0: torch.Tensor, *ops) -> torch.Tensor:
    """``[k]``: :math:`\\sum e^{x - m}` over one block of the redone entries ``at`` (``x = joined(...)``, ``m0``
    their maxima, 0 where ``finite`` is not set); everything it reads is an argument, as a checkpointed block's
    recomputation needs."""
    flat = joined(at, config, *ops)
    return torch.where(finite[:, None], flat - m0[:, None], torch.zeros_like(flat)).exp().sum(-1)


def _joined(inputs: list, out: str, letters: list, sizes: dict, lead: int, at: tuple, config: tuple,
            operands) -> torch.Tensor:
    """``[k, prod(sizes of letters[lead:])]``: the broadcast sum of ``operands`` (in operand order) at the output
    entries ``at`` (``k`` of them), the summed dims ``letters[:lead]`` fixed at ``config``."""
    k, rest = at[0].numel(), letters[lead:]
    total = 0
    for term, t in zip(inputs, operands):
        index = []
        for c in term:
            if c in out:
                index.append(at[out.index(c)].view(k, *[1] * len(rest)))
            elif c in rest:
                shape = [1] * (1 + len(rest))
                shape[1 + rest.index(c)] = sizes[c]
                index.append(torch.arange(sizes[c], device=t.device).view(shape))
            else:
                index.append(torch.full((), config[letters.index(c)], dtype=torch.long, device=t.device))
        total = total + t[tuple(index)]
    return total.reshape(k, -1)


def shifted_logsumexp(flat: torch.Tensor) -> torch.Tensor:
    """:math:`m + \\log \\sum_j e^{x_j - m}` over the last dim, :math:`m = \\max_j x_j` held constant.

    ``torch.logsumexp`` returns the same value, but its backward pass takes the weights as
    :math:`e^{x_j - \\mathrm{lse}(x)}` from the rounded result: where :math:`|\\mathrm{lse}(x)|` is large
    (forbidden states of :math:`-10^9` in float32, where one unit in the last place is 64) that difference is
    off by the rounding of the result, and the weights come out as :math:`e^{\\pm\\text{roundoff}}` instead of
    summing to one.  Shifted by the detached maximum, every :math:`x_j - m` is computed exactly near the top
    (Sterbenz) and the weights :math:`e^{x_j - m} / \\sum_k e^{x_k - m}` are exact to the dtype's rounding.
    A row with no finite term (finite terms whose sum overflowed to :math:`-\\infty`) stays :math:`-\\infty`
    with a zero gradient, not NaN.
    """
    m = flat.detach().amax(-1, keepdim=True)
    finite = m > float("-inf")
    shifted = torch.where(finite, flat - torch.where(finite, m, torch.zeros_like(m)), torch.zeros_like(flat))
    lse = shifted.logsumexp(-1) + m.squeeze(-1)
    return torch.where(finite.squeeze(-1), lse, torch.full_like(lse, float("-inf")))
