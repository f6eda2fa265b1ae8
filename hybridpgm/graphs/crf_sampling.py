r"""Backward sampling of :class:`~hybridpgm.graphs.LinearChainCRF`: the second half of forward-filtering
backward-sampling, by the Gumbel-max trick with every step's noise drawn up front.

Given the forward messages :math:`\alpha_t` (:func:`~hybridpgm.graphs.crf_recursions.forward` with ``keep``), a
sequence of length :math:`n` is drawn from its last label back [1]:

.. math::

    y_{n-1} \sim \mathrm{softmax}(\alpha_{n-1} + \omega), \qquad
    p(y_{t-1} = i \mid y_t) \propto \exp\big(\alpha_{t-1}(i) + A_{i\,y_t}\big).

Each categorical draw is :math:`\arg\max_i (\ell_i + G_i)` with independent standard Gumbel noise
:math:`G_i = -\log E_i`, :math:`E_i \sim \mathrm{Exp}(1)` [2]: exactly a draw from :math:`\mathrm{softmax}(\ell)`,
and the noise of a step does not depend on the labels drawn after it, so the ``T`` steps' noise is drawn before
the pass, in one call (:func:`noise_chunk_steps` steps at a time where it would be large), and the pass itself is
three small kernels a step (a row of the transitions, an add, an argmax), with no random call, no
``Categorical`` and no host read (torch's ``multinomial``, which ``Categorical.sample`` runs, reads its
probabilities' validity on the host: a GPU synchronisation a step).  It is what a Viterbi back-trace costs.

A padding step (``t >= n``, made and discarded, as the steps are not masked one by one) reads an identity row
(0 at the label after it, :func:`~hybridpgm.graphs.crf_recursions.forbidden` elsewhere) against zero noise, so
it repeats that label; the caller zeroes the padding.  -inf transition and end scores are clamped to
``forbidden``: a label of probability 0 (a clamped score, ``exp`` of which is 0 next to any finite one) never
wins an argmax, as the noise is bounded on both sides.  :func:`torch.rand` draws :math:`U \in [0, 1)`, 0
included (with probability :math:`2^{-24}` an element in float32 on a CPU, of that order on a GPU): unbounded
below, :math:`G = -\infty` there, and a step whose possible labels all drew it (one label, where the others are
forbidden) took a forbidden label.  So :math:`U` is raised to ``finfo.tiny`` first
(:mod:`~hybridpgm.graphs.gumbel_noise`): :math:`E = -\log U \in [-\log(1 - 2^{-24}), -\log \mathrm{tiny}]`
and :math:`G \in [-4.47, 16.6]` in float32 (:math:`[-6.56, 36.7]` in float64), a spread far below the gap
:math:`|\mathrm{forbidden}|` between a possible and a forbidden score.  The Gumbel tails beyond (probability
:math:`6 \times 10^{-8}` in float32, :math:`10^{-16}` in float64, a side) are the rounding of the uniforms, as
of torch's own ``multinomial``.

**References**

[1] S. Frühwirth-Schnatter, *Data Augmentation and Dynamic Linear Models*, 1994 (forward-filtering
backward-sampling); A. M. Rush, *Torch-Struct: Deep Structured Prediction Library*, 2020.

[2] E. J. Gumbel, *Statistical Theory of Extreme Values and Some Practical Applications*, 1954;
C. J. Maddison, D. Tarlow, T. Minka, *A* Sampling*, 2014.
"""

from __future__ import annotations

import torch

from hybridpgm.graphs.crf_recursions import forbidden
from hybridpgm.graphs.gumbel_noise import log_exponential_

__all__ = ["NOISE_CHUNK_ELEMENTS", "backward_sample", "noise_chunk_steps"]

#: the most noise elements drawn in one call (16 MiB of float32): the noise of ``k`` steps is ``k * prod(shape) * L``
#: floats, so a large ``sample_shape`` or label set draws it a few steps at a time instead of all ``T`` at once
NOISE_CHUNK_ELEMENTS = 1 << 22


def noise_chunk_steps(T: int, per_step: int) -> int:
    """How many steps' noise one call draws: all ``T`` where ``T * per_step <= NOISE_CHUNK_ELEMENTS``, else as many
    as fit (at least 1).

    :param T: the number of steps.
    :param per_step: the noise elements of a step, ``prod(shape) * L``."""
    return max(1, min(T, NOISE_CHUNK_ELEMENTS // max(per_step, 1)))


def _transition_rows(transition: torch.Tensor, batch: torch.Size):
    """The transposed transitions as rows for :func:`torch.index_select`, and each sequence's first row.

    :returns: ``(rows, offset)``: ``rows[offset + j] = A[:, j]`` (``(R, L)``); one ``(L, L)`` matrix and offset 0
        where every sequence shares it (its batch dims broadcast: strides 0, the usual :class:`CRFHead`), else the
        ``(prod(batch) * L, L)`` copy and the ``batch`` long offsets ``L * index``."""
    L = transition.shape[-1]
    nb = transition.dim() - 2
    try:
        strides = transition.stride()
    except RuntimeError:  # a tensor batched by torch.func.vmap shows no strides: the general copy
        strides = (1,) * transition.dim()
    if all(stride == 0 or size == 1 for size, stride in zip(transition.shape[:nb], strides[:nb])):
        return transition[(0,) * nb].transpose(0, 1), torch.zeros((), dtype=torch.long, device=transition.device)
    rows = transition.transpose(-1, -2).reshape(-1, L)
    offset = torch.arange(batch.numel(), device=transition.device).view(batch) * L
    return rows, offset


def backward_sample(alphas: torch.Tensor, transition: torch.Tensor, end: torch.Tensor, lengths: torch.Tensor,
                    shape: torch.Size) -> torch.Tensor:
    r"""``shape + (T,)`` long label sequences drawn from the forward messages ``alphas``, each with the probability
    the CRF gives it; a position past a sequence's length repeats the label before it (the caller zeroes padding).

    :param alphas: ``[T] + batch + (L,)`` forward messages (:func:`~hybridpgm.graphs.crf_recursions.forward` with
        ``keep``: each step's shifted by a per-sequence constant, padding steps holding the last one).
    :param transition: ``batch + (L, L)`` transition scores (-inf allowed).
    :param end: ``batch + (L,)`` end scores (-inf allowed).
    :param lengths: ``batch`` long lengths, each in ``0..T`` (an empty sequence's draw is all padding).
    :param shape: ``sample_shape + batch``: the draws.

    The noise is ``-log(-log U)``, ``U`` drawn by :func:`torch.rand` on ``alphas``' device and in its dtype from
    torch's global stream (under ``torch.func.vmap``, as its ``randomness`` says): all ``T`` steps in one call
    where ``T * prod(shape) * L`` is at most :data:`NOISE_CHUNK_ELEMENTS`, else :func:`noise_chunk_steps` steps a
    call, from the last step back.  So the pass holds the noise of up to that many elements (or of one step, where
    one step's is more) and its sum with the messages, where it held one step's before.  The inputs are detached:
    the draws are discrete, and no forward-mode tangent (:mod:`torch.autograd.forward_ad`, ``torch.func.jvp``)
    rides through the in-place adds."""
    alphas, transition, end = alphas.detach(), transition.detach(), end.detach()
    T, L = alphas.shape[0], alphas.shape[-1]
    batch = alphas.shape[1:-1]
    dtype, device = alphas.dtype, alphas.device
    neg = forbidden(dtype)
    transition, end = transition.to(dtype).clamp(min=neg), end.to(dtype).clamp(min=neg)
    rows, offset = _transition_rows(transition, batch)
    identity = torch.full((L, L), neg, dtype=dtype, device=device).fill_diagonal_(0.0)
    rows = torch.cat([rows, identity])  # a padding step reads row R + y: itself
    pad_row = rows.shape[0] - L
    extra = len(shape) - len(batch)
    alphas = alphas.reshape((T,) + (1,) * extra + alphas.shape[1:])  # sample dims before the batch's
    steps = torch.arange(T, device=device).view((T,) + (1,) * lengths.dim())
    real = steps < lengths - 1  # [T] + batch: y_s is drawn given y_{s+1} (s < n - 1); False at s = T - 1
    row_of = torch.where(real, offset, pad_row)  # [T] + batch: where step s's draw reads its row
    keep = (real | (steps == T - 1)).view((T,) + (1,) * extra + batch + (1,))  # the last step: y_{n-1}'s draw
    chunk = noise_chunk_steps(T, shape.numel() * L)
    out = [None] * T
    y = None
    for hi in range(T, 0, -chunk):
        lo = max(0, hi - chunk)
        # log E = log(-log U): E ~ Exp(1) from U ~ U[0, 1) raised to tiny (U = 0, drawn with probability 2^-24 in
        # float32, gave G = -inf: a forbidden label won where the possible ones drew it), so the noise is finite:
        # G in [-4.47, 16.6] in float32, [-6.56, 36.7] in float64; a factory call, then ops on its own result, as
        # torch.func.vmap(randomness="different") batches them (clamp_min_: clamp_ has no batching rule there)
        u = torch.rand((hi - lo,) + shape + (L,), dtype=dtype, device=device)
        log_e = log_exponential_(u)
        base = (alphas[lo:hi] - log_e).masked_fill_(~keep[lo:hi], 0.0).unbind(0)
        for s in range(hi - 1, lo - 1, -1):
            if y is None:  # s = T - 1: y_{n-1} (padding steps hold the last message)
                y = (base[s - lo] + end).argmax(-1)
            else:
                col = rows.index_select(0, (y + row_of[s]).view(-1)).view(shape + (L,))
                y = col.add_(base[s - lo]).argmax(-1)
            out[s] = y
    return torch.stack(out, dim=-1)
