"""The dynamic programs of :class:`~hybridpgm.graphs.LinearChainCRF`: the forward algorithm and Viterbi.

For unary scores :math:`\\phi_t(l)` (``batch_shape + (T, L)``), transitions :math:`A` (``batch_shape + (L, L)``)
and start/end scores :math:`\\pi, \\omega` (``batch_shape + (L,)``), over a sequence of length :math:`n`,

.. math::

    \\alpha_0 = \\pi + \\phi_0, \\qquad
    \\alpha_t(j) = \\phi_t(j) + \\log\\sum_i \\exp\\big(\\alpha_{t-1}(i) + A_{ij}\\big), \\qquad
    \\log Z = \\log\\sum_l \\exp\\big(\\alpha_{n-1}(l) + \\omega_l\\big);

Viterbi is the same recursion in the max-plus semiring, with back-pointers.  Both run in log space, each
step's message shifted by its maximum (the shifts summed back in), the transitions taken relative to each
column's largest (:func:`_relative`), in the dtype of :func:`working`, with -inf
scores clamped to :func:`forbidden`; positions ``t >= lengths`` may hold anything.  The marginals, the entropy
and the samples of the distribution (:mod:`~hybridpgm.graphs.crf_sampling`) are built on :func:`forward` (its
gradient, its messages) [1].

References:

1. A. M. Rush, *Torch-Struct: Deep Structured Prediction Library*, 2020.
"""

from __future__ import annotations

import torch

__all__ = ["ACCUMULATE", "forbidden", "forward", "viterbi", "working"]

#: The dtype of the sums over a sequence's ``T`` steps (the forward recursion's shifts, a path's score, the
#: expected score): ``O(batch)`` or ``O(batch * T)`` scalars, never the ``batch + (L,)`` messages themselves.
ACCUMULATE = torch.float64


def forbidden(dtype: torch.dtype) -> float:
    """The finite stand-in for a -inf score inside the forward and Viterbi recursions: ``finfo.min / 8``.

    ``torch.logsumexp``'s gradient is NaN where every entry is -inf (``exp(-inf + inf)``), and ``-inf - -inf`` is
    NaN when a normalised message is shifted; with -inf clamped to this value neither happens, and every quantity
    of a labelling that uses it is exactly 0 (``exp(finfo.min / 8 - m)`` underflows to 0), so the results equal
    those of true -inf scores.  Normalised messages stay above about ``2 * finfo.min / 8``, and their sums with
    a transition above ``3 * finfo.min / 8``: nothing overflows."""
    return torch.finfo(dtype).min / 8


def working(*scores: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """``scores`` in the dtype the recursions run in: their promoted dtype, at least float32.

    Scores of mixed dtypes (float16 unary scores from autocast into a float32 :class:`~hybridpgm.graphs.CRFHead`,
    float64 ones into it) meet in one dtype, whose :func:`forbidden` bound each of them fits; half precisions run
    in float32, as a sum over ``T`` steps of scores of order 10 leaves float16's range well before ``T = 1000``
    and a float16 stand-in for -inf (about -8188) would be within reach of ordinary scores."""
    dtype = torch.float32
    for t in scores:
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return tuple(None if t is None else t.to(dtype) for t in scores)


class _StackSteps(torch.autograd.Function):
    """``torch.stack(steps)``: ``T`` tensors of one shape ``S`` into one ``(T,) + S`` tensor, whose backward is
    ``grad.unbind(0)``.

    ``torch.stack``'s backward reads the gradient as ``grad.select(0, t)`` for each ``t``, and the backward of
    each ``select`` (reached when the gradient is differentiated again: the gradient of the marginals, of the
    entropy) materialises a zero tensor of the whole ``(T,) + S`` gradient: O(T^2 |S|) elements where O(T |S|)
    is the work.  Here the gradient is split once (:meth:`torch.Tensor.unbind`, whose own backward is one
    stack), the same values, so a second derivative stays O(T |S|).
    """

    generate_vmap_rule = True  # torch.func.vmap (and grad, jacrev, hessian) work through it, as through stack

    @staticmethod
    def forward(*steps):
        return torch.stack(steps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.step = (output.shape[1:], output.dtype, output.device)  # for a step without a tangent (jvp)

    @staticmethod
    def backward(ctx, grad):
        return grad.unbind(0)

    @staticmethod
    def jvp(ctx, *tangents):  # forward mode (torch.func.hessian, jvp): the tangents stack as the values do
        shape, dtype, device = ctx.step
        return torch.stack([torch.zeros(shape, dtype=dtype, device=device) if t is None else t for t in tangents])


def _stack_steps(steps: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(steps)``, through :class:`_StackSteps` where autograd records it (it costs some 45 us
    more a call, for ``T = 50`` steps of 64 x 20)."""
    if torch.is_grad_enabled() and any(s.requires_grad for s in steps):
        return _StackSteps.apply(*steps)
    return torch.stack(steps)


def _logsumexp_normalised(x: torch.Tensor, dim: int, hook=None) -> torch.Tensor:
    """``torch.logsumexp(x, dim)``, whose gradient, the weights :math:`\\mathrm{softmax}(x)`, sums to 1 to within
    a few ulps of 1 rather than of :math:`|\\log\\sum e^x|`.

    ``torch.logsumexp``'s backward weighs the entries by ``exp(x - result)``, with ``result`` rounded to
    ``ulp(|result|)``: for a step's :math:`\\alpha_{t-1}(i) + A_{ij}` of magnitude 5000 in float32 each column's
    weights (step ``t``'s pairwise marginal) sum to :math:`1 \\pm 2.4 \\times 10^{-4}`, no longer the marginal
    :math:`p(y_t = j)` the unary gradient reads, and :math:`\\sum_{ij} A_{ij}\\, p(y_{t-1}=i, y_t=j)` (the
    entropy's expected transition score) is off by up to :math:`|A| \\cdot 2.4 \\times 10^{-4}` (1.0 nat for
    :math:`A = ((5000, 4000), (4999.3, 3999.3))`: entropy 1.63 against 0.635).  Here
    the maximum :math:`m` (a constant to autograd: the value and every derivative are those of the log-sum-exp)
    is taken out first and the weights are :math:`e^{x - m} / \\sum e^{x - m}`, whose sum carries only the
    rounding of an O(1) sum.  Each step takes a few more kernels than ``torch.logsumexp`` (on a CPU, less time): the
    marginals' :func:`forward` uses it (``attach``), not the training step.

    :param x: finite scores (-inf clamped to :func:`forbidden` by the caller).
    :param dim: the dimension summed over (removed).
    :param hook: optional, called with the weights :math:`e^{x - m}` (see :func:`forward`)."""
    m = x.detach().amax(dim, keepdim=True)
    weights = (x - m).exp()
    if hook is not None:
        hook(weights)
    return weights.sum(dim).log() + m.squeeze(dim)


def _relative(unary: torch.Tensor, transition: torch.Tensor, lengths: torch.Tensor):
    """The scores of the recursions relative to each column's largest transition score; returns ``(unary,
    transition, total)``.

    With :math:`c_j = \\max_i A_{ij}` and :math:`c = \\max_j c_j` (constants to autograd), the recursions run on
    :math:`A'_{ij} = A_{ij} - c_j \\le 0` and on :math:`\\phi'_t(j) = \\phi_t(j) + c_j - c` for ``t >= 1``
    (:math:`\\phi'_0 = \\phi_0`); each of a sequence's :math:`n - 1` transitions lost :math:`c`, given back as
    ``total`` = :math:`(n - 1)\\, c` (``batch_shape``, in :data:`ACCUMULATE`).  Every path's score, so log Z, the
    messages up to a per-step constant, the maximisers and every derivative, are those of the given scores.  What
    changes is the rounding: :math:`\\alpha_{t-1}(i) + A_{ij}` rounds to ``ulp(|A|)`` (about 1e-3 at
    :math:`|A| = 10^4` in float32), which shifts the near ties that decide the marginals (a step's
    :math:`A_{0j} - A_{1j} = 0.08` came out 0.0785) and Viterbi; :math:`A_{ij} - c_j` is exact for the entries within
    a factor 2 of :math:`c_j` (Sterbenz), and :math:`\\alpha_{t-1}(i) + A'_{ij}` is as small as the near tie.

    :param unary: ``batch_shape + (T, L)``, clamped (and padding zeroed) by the caller.
    :param transition: ``batch_shape + (L, L)``, clamped by the caller.
    :param lengths: ``batch_shape`` long lengths."""
    top = transition.detach().amax(-2, keepdim=True)  # batch + (1, L): c_j
    ref = top.amax(-1, keepdim=True)  # batch + (1, 1): c
    first = torch.arange(unary.shape[-2], device=unary.device)[:, None] == 0  # (T, 1)
    unary = unary + torch.where(first, 0.0, top - ref)
    total = ref[..., 0, 0].to(ACCUMULATE) * (lengths - 1)
    return unary, transition - top, total


def forward(unary: torch.Tensor, transition: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
            lengths: torch.Tensor, keep: bool = False, attach: bool = False, wide: bool = False,
            hook=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-space forward recursion, normalised per step; returns ``(log_z, alphas)``: ``batch_shape`` log Z
    (in the working dtype of :func:`working`, or, when ``wide``, in :data:`ACCUMULATE`, unrounded) and, when
    ``keep``, the ``[T] + batch_shape + (L,)`` forward messages, each step's shifted by a per-sequence constant
    (else None).

    :param unary: ``batch_shape + (T, L)`` unary scores (anything past a sequence's length is ignored).
    :param transition: ``batch_shape + (L, L)`` transition scores.
    :param start: ``batch_shape + (L,)`` start scores.
    :param end: ``batch_shape + (L,)`` end scores.
    :param lengths: ``batch_shape`` long lengths, each in ``0..T`` (an empty sequence, of length 0, has one
        labelling, the empty one, of score 0 (no start or end score): its log Z is 0).
    :param hook: optional, with ``attach``: called with each step's ``batch_shape + (L, L)`` weights
        :math:`e_t(i, j) = \\exp(\\alpha_{t-1}(i) + A'_{ij} - \\max_k (\\alpha_{t-1}(k) + A'_{kj}))`, ``t = 1 ..
        T - 1`` (:math:`A'` the relative transitions of :func:`_relative`), as the normalised log-sum-exp computes
        them: :math:`e_t(i, j) / \\sum_k e_t(k, j) = p(y_{t-1}=i \\mid y_t=j)`.  Where autograd records the
        recursion it keeps them for its backward pass anyway, so
        :func:`~hybridpgm.graphs.crf_forward_backward.forward_backward` reads them instead of computing and keeping
        a second copy.

    Each step's message is shifted by its maximum and the shifts are summed into log Z, so the recursion
    and its gradients (the marginals) run at O(1) magnitudes; unnormalised, the messages grew to
    ~T x score and float32 marginals carried errors ~ulp(T x score) (entropies off by nats).  The shift
    is a constant to autograd unless ``attach``: attached (for the marginals and the entropy, whose derivatives
    run through log Z and the messages), each step's backward re-projects the gradient onto the simplex, so its
    rounding errors do not accumulate over the steps; detached (for ``log_prob``, the training step) it costs no
    autograd node.
    Attached, each step's log-sum-exp is also :func:`_logsumexp_normalised`, so that a step's pairwise marginal
    (its gradient) sums to the marginals of both its labels to within the rounding of O(1) sums, whatever the
    magnitude of :math:`\\alpha + A`; ``torch.logsumexp``'s backward left them :math:`\\mathrm{ulp}(|A|)` apart,
    which the entropy multiplied by :math:`|A|`.  The transitions enter relative to each column's largest
    (:func:`_relative`), their level :math:`(n - 1) \\max A` added to log Z in :data:`ACCUMULATE`: near ties
    between large scores are decided at the magnitude of their differences, not at ``ulp(|A|)``.

    The ``T`` shifts (each of the order of a step's scores, together ~T x score) are summed in
    :data:`ACCUMULATE` (``batch_shape`` scalars a step, not the messages), so log Z carries only the rounding of
    the steps themselves.  With :math:`\\epsilon` the working dtype's machine epsilon and
    :math:`m_t = \\max_l |\\phi_t(l)| + (\\max A - \\min A) + \\log L` the magnitude step ``t`` works at (the
    spread of the transitions, at most :math:`2 \\max |A|` and far below :math:`|A|` for scores around a large
    common level), the step rounds four times (``alpha + A``, the log-sum-exp, ``+ phi_t``, the shift), each by at most
    :math:`\\epsilon m_t / 2`; these errors are independent and of either sign, so log Z is off by about
    :math:`\\epsilon \\sqrt{\\sum_t m_t^2}` (within :math:`6 \\epsilon \\sqrt{\\sum_t m_t^2}` in practice, at most
    :math:`2 \\epsilon \\sum_t m_t`), plus the final rounding of a working-dtype result.  For float32, ``T = 1000
    .. 5000`` and scores of 50 .. 100 that is 2e-4 .. 1e-3 nats of log_prob or entropy; summed and subtracted
    in float32, the ~T x score sums brought a few ulps of themselves, 1e-2 .. 1e-1 nats.  With ``wide``,
    :meth:`LinearChainCRF.log_prob` and :meth:`LinearChainCRF.entropy` subtract their path or expected score
    (also summed over the steps in :data:`ACCUMULATE`) from this unrounded log Z and round once.

    Steps are not masked one by one (no host read of the lengths either): padding reads 0, the recursion runs
    to ``T`` and each sequence's message at its length - 1 is gathered at the end.  -inf scores are clamped to
    :func:`forbidden` (see there); a sequence with no labelling of finite score gets log Z = -inf.

    The unary scores are split into their ``T`` steps once (:meth:`torch.Tensor.unbind`), not read as
    ``unary[..., t, :]`` at each step: the backward of each such read materialises a zero tensor of the whole
    ``batch_shape + (T, L)`` and adds it up, so the backward (the training step, the marginals) cost
    O(T^2 L) per sequence; one unbind's backward stacks the ``T`` step gradients once, O(T L).  The messages and
    shifts are stacked by :class:`_StackSteps`, so a second derivative (the gradient of the marginals or of the
    entropy) is O(T L) too.
    """
    T = unary.shape[-2]
    unary, transition, start, end = working(unary, transition, start, end)
    neg = forbidden(unary.dtype)
    steps = torch.arange(T, device=unary.device).view((T,) + (1,) * lengths.dim())
    inside = steps < lengths  # [T] + batch
    # padding (which may hold anything) reads 0: the steps past a length run on, finite, and are then dropped
    unary = torch.where(inside.movedim(0, -1)[..., None], unary.clamp(min=neg), 0.0)
    transition, start, end = (p.clamp(min=neg) for p in (transition, start, end))
    unary, transition, total = _relative(unary, transition, lengths)  # near ties of |A| >> 1 kept exact
    steps_unary = unary.unbind(-2)  # one split, O(T L) backward; unary[..., t, :] per step was O(T^2 L)
    alpha = start + steps_unary[0]
    shift = (alpha if attach else alpha.detach()).amax(-1, keepdim=True)
    alpha = alpha - shift
    shifts, alphas = [shift], [alpha]
    for t in range(1, T):
        pair = alpha.unsqueeze(-1) + transition
        new = (_logsumexp_normalised(pair, -2, hook) if attach else torch.logsumexp(pair, dim=-2)) + steps_unary[t]
        shift = (new if attach else new.detach()).amax(-1, keepdim=True)
        alpha = new - shift
        shifts.append(shift)
        alphas.append(alpha)
    # each sequence's last message (at its length - 1) and its shifts: one gather, no per-step masking
    alphas = _stack_steps(alphas)
    # an empty sequence (length 0) reads step 0 here, and its log Z is set to 0 below
    index = (lengths - 1).clamp(min=0).expand(alphas.shape[1:-1])[None, ..., None].expand((1,) + alphas.shape[1:])
    last = alphas.gather(0, index)
    # the T shifts (~T x score together) summed in ACCUMULATE: batch scalars a step, cheap on any device
    total = total + torch.where(inside[..., None], _stack_steps(shifts), 0.0).to(ACCUMULATE).sum(0).squeeze(-1)
    final = last.squeeze(0) + end
    log_z = total + (_logsumexp_normalised(final, -1) if attach else torch.logsumexp(final, dim=-1)).to(ACCUMULATE)
    log_z = torch.where(log_z < neg / 2, float("-inf"), log_z)  # every labelling meets a -inf score
    log_z = torch.where(lengths == 0, 0.0, log_z)  # an empty sequence: its one labelling, of score 0
    if not wide:
        log_z = log_z.to(unary.dtype)
    if not keep:
        return log_z, None
    return log_z, torch.where(inside[..., None], alphas, last)  # padding steps hold the last message


@torch.no_grad()
def viterbi(unary: torch.Tensor, transition: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
            lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Viterbi decoding of scores already expanded to one ``batch_shape`` (shapes as :func:`forward`'s).

    :returns: ``(score, path)``: the ``batch_shape`` best score :math:`\\max_y s(y)` (below ``forbidden / 2``
        where every labelling meets a -inf score; 0 for an empty sequence, of length 0) and the ``batch_shape +
        (T,)`` best label sequences, whose positions past a sequence's length repeat its last label (the caller
        masks them).
    """
    T, L = unary.shape[-2:]
    batch_shape = unary.shape[:-2]
    scores = working(unary, transition, start, end)
    neg = forbidden(scores[0].dtype)
    unary, transition, start, end = (p.clamp(min=neg) for p in scores)
    unary, transition, total = _relative(unary, transition, lengths)  # as in forward: near ties kept exact
    ident = torch.arange(L, device=unary.device).expand(batch_shape + (L,))
    steps_unary = unary.unbind(-2)  # as in forward (no autograd here: for uniformity)
    delta = start + steps_unary[0]
    shift = delta.amax(-1, keepdim=True)  # normalised as the forward recursion, for float32 ties
    delta, shifts, pointers = delta - shift, [shift], []
    for t in range(1, T):
        best, arg = (delta.unsqueeze(-1) + transition).max(dim=-2)
        new = best + steps_unary[t]
        shift = new.amax(-1, keepdim=True)
        on = (t < lengths)[..., None]
        delta = torch.where(on, new - shift, delta)
        shifts.append(torch.where(on, shift, 0.0))
        pointers.append(torch.where(on, arg, ident))
    best, y = (delta + end).max(-1)
    out = [y]
    for ptr in reversed(pointers):
        y = ptr.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        out.append(y)
    score = (torch.stack(shifts).sum(0).squeeze(-1) + best + total).to(best.dtype)
    return torch.where(lengths == 0, 0.0, score), torch.stack(out[::-1], dim=-1)  # the empty labelling: 0

