"""The marginals of a :class:`~hybridpgm.graphs.LinearChainCRF` by an explicit forward-backward recursion.

They are the gradients of :math:`\\log Z`, and the CRF read them off ``torch.autograd.grad`` of the forward
recursion before: the graph of that gradient saved every step's ``L x L`` weights, ``batch * T * L * L`` floats,
also where no graph was wanted (1.9 GB of peak memory for the marginals at ``B = 16, T = 1000, L = 100`` in
float32); forward-mode AD did not see through it where no potential required grad (``torch.func.jvp`` and
``jacfwd`` of the marginals or of the entropy were wrong), and ``torch.func.vmap`` could not run it at all.
:func:`forward_backward` computes the same quantities from the forward messages
:math:`\\alpha` as ordinary differentiable ops: the chain read backwards is Markov, with

.. math::

    p(y_{n-1} = l) = \\mathrm{softmax}_l\\big(\\alpha_{n-1}(l) + \\omega_l\\big), \\qquad
    q_t(i \\mid j) = p(y_{t-1} = i \\mid y_t = j) = \\mathrm{softmax}_i\\big(\\alpha_{t-1}(i) + A_{ij}\\big),

so, from :math:`t = n - 1` down, :math:`p(y_{t-1} = i, y_t = j) = p(y_t = j)\\, q_t(i \\mid j)` and
:math:`p(y_{t-1} = i) = \\sum_j p(y_{t-1} = i, y_t = j)` (each softmax invariant to the messages' per-step shifts,
and so are its derivatives).  Each step's pairwise marginal sums to the marginals of both its labels to within the
rounding of O(1) sums (the entropy :math:`\\log Z - \\mathbb E[s]` weighs them with scores of any size), and each
step's :math:`p(y_{t-1})` is renormalised, so that the steps' roundings do not accumulate over ``T`` steps (the
float32 entropies of ``tests/graphs/test_crf_float32.py`` were 20 to 60 times their allowance).  A softmax over
all :math:`L^2` pairs of :math:`\\alpha_{t-1}(i) + A_{ij} + \\phi_t(j) +
\\beta_t(j)` (the backward messages :math:`\\beta`), rounded to ``ulp(|A|)``, left them inconsistent by about
that much, and the float32 entropy of transitions of :math:`10^4` with near ties was off by 10 to 20 nats.

Without a graph the recursion keeps the ``T`` messages and marginals, ``O(batch * T * L)``, and one step's
``L x L`` weights at a time; so it does under forward mode and ``vmap``, which record no graph.  Where reverse mode
records, the caller hands over each step's weights as the forward recursion's graph keeps them (``weights``).
"""

from __future__ import annotations

import torch

from hybridpgm.graphs.crf_recursions import ACCUMULATE, forbidden, working
from hybridpgm.tensor_tracking import carries_tangent

__all__ = ["forward_backward"]


def forward_backward(forward, unary: torch.Tensor, transition: torch.Tensor, start: torch.Tensor,
                     end: torch.Tensor, lengths: torch.Tensor, steps: bool = True, weights: list | None = None):
    """``(log_z, grads, per_step)`` of potentials expanded to one ``batch_shape``, as
    :meth:`LinearChainCRF._grads <hybridpgm.graphs.LinearChainCRF>` returns them, ``log_z`` and ``grads``
    differentiable (forward and reverse mode, ``torch.func`` transforms included), ``per_step`` a value.

    Memory: the ``T`` forward messages and marginals, ``O(batch * T * L)``, and one step's ``L x L`` weights at a
    time (the pairwise marginals are summed step by step): the gradient of log Z, which the CRF took before, saved
    every step's ``L x L`` weights for its backward pass.  Where autograd records (a potential requires grad),
    the derivatives of the outputs need each step's weights, and ``weights`` lets them be the ones the forward
    recursion's graph keeps anyway.

    :param forward: the forward recursion, called as ``forward(unary, transition, start, end, keep=True,
        wide=True)`` (the CRF's ``_forward``, or :func:`~hybridpgm.graphs.crf_recursions.forward` with the
        lengths bound); it returns ``(log_z, alphas)``.
    :param unary: ``batch_shape + (T, L)`` unary scores (anything past a sequence's length is ignored).
    :param transition: ``batch_shape + (L, L)``.
    :param start: ``batch_shape + (L,)``.
    :param end: ``batch_shape + (L,)``.
    :param lengths: ``batch_shape`` long lengths in ``0..T`` (an empty sequence's gradients are all 0).
    :param steps: whether to compute ``per_step`` (else it is None).
    :param weights: optional, a list that ``forward`` fills with the ``T - 1`` steps' weights
        :math:`e_t(i, j)` (the ``hook`` of :func:`~hybridpgm.graphs.crf_recursions.forward`, with ``attach``): used
        when it holds ``T - 1`` of them, else (and by default) each step's are computed from the messages, the
        very same numbers.
    :returns: ``log_z`` (``batch_shape``, in :data:`~hybridpgm.graphs.crf_recursions.ACCUMULATE`); ``grads``, the
        gradients of log Z: the ``batch_shape + (T, L)`` unary marginals (0 at padding), the ``batch_shape + (L,
        L)`` expected transition counts :math:`\\sum_{0<t<n} p(y_{t-1}=i, y_t=j)`, :math:`p(y_0)` and
        :math:`p(y_{n-1})`; ``per_step``, the ``batch_shape`` expected transition score
        :math:`\\sum_t \\sum_{ij} A_{ij}\\, p(y_{t-1}=i, y_t=j)`, each step's ``L x L`` terms of
        :math:`A_{ij} - \\max A` summed in the working dtype, the ``T - 1`` step totals and :math:`(n - 1) \\max A`
        in ``ACCUMULATE``.
    """
    T = unary.shape[-2]
    log_z, alphas = forward(unary, transition, start, end, keep=True, wide=True)  # [T] + batch + (L,)
    alphas = alphas.unbind(0)  # T x (batch + (L,)): one split (alphas[t] a step: O(T^2) in a backward pass)
    given = weights is not None and len(weights) == T - 1
    unary, transition, start, end = working(unary, transition, start, end)
    neg = forbidden(unary.dtype)
    inside = torch.arange(T, device=unary.device) < lengths[..., None]  # batch + (T,)
    transition, end = transition.clamp(min=neg), end.clamp(min=neg)
    # q_t(i | j) is invariant to a constant per column j: relative to the column's best, near ties stay exact
    # (the forward recursion's A', so that the weights computed here are its own)
    relative = transition - transition.detach().amax(-2, keepdim=True)
    # the expected transition score relative to the largest A, c, added back exactly: (n - 1) c in ACCUMULATE
    level = transition.detach().amax((-2, -1), keepdim=True)
    above = transition - level
    # alphas past a length hold the one at length - 1: p(y_{n-1}) is read at the last step
    marginal = (alphas[-1] + end).softmax(-1)  # batch + (L,)
    # an empty sequence (length 0) has no y_{n-1}: its row of p(y_{n-1}) is 0, as its rows of the marginals
    final, marginals, pairwise = torch.where((lengths > 0)[..., None], marginal, 0.0), [marginal], None
    per_step = level[..., 0, 0].to(ACCUMULATE) * (lengths - 1).clamp(min=0) if steps else None
    for t in range(T - 1, 0, -1):
        on = (t < lengths)[..., None]  # step t is within the sequence: the pair (y_{t-1}, y_t) exists
        if given:
            e = weights[t - 1]
        else:  # as the forward recursion's normalised log-sum-exp computes them
            e = alphas[t - 1].unsqueeze(-1) + relative  # batch + (L, L): e[i, j]
            top = e.detach().amax(-2, keepdim=True)
            # in place where neither autograd nor forward mode (a tangent, a torch.func transform) records
            e = (e - top).exp() if e.requires_grad or carries_tangent(e) else e.sub_(top).exp_()
        # p(y_{t-1}=i, y_t=j) = e[i, j] / sum_k e[k, j] * p(y_t=j): 0 past the length
        pair = e * (torch.where(on, marginal, 0.0) / e.sum(-2)).unsqueeze(-2)
        previous = pair.sum(-1)
        # renormalised: each step's rounding (a few ulps of 1) would otherwise accumulate over the T steps, and
        # the entropy weighs the marginals with scores ~T x |score| (float32: 20 to 60 times its allowance)
        previous = previous / torch.where(on, previous.sum(-1, keepdim=True), 1.0)
        marginal = torch.where(on, previous, marginal)  # p(y_{t-1}); past the length, p(y_{n-1}) held
        marginals.append(marginal)
        pairwise = pair if pairwise is None else pairwise + pair
        if steps:  # a value without derivatives (the entropy adds it as a constant): no step's pairs kept for it
            per_step = per_step + (pair.detach() * above.detach()).flatten(-2).sum(-1).to(ACCUMULATE)
    marginals = torch.where(inside[..., None], torch.stack(marginals[::-1], dim=-2), 0.0)  # batch + (T, L)
    first = marginals[..., 0, :]
    pairwise = pairwise if pairwise is not None else torch.zeros_like(transition)
    return log_z, [marginals, pairwise, first, final], per_step
