"""The marginals of a :class:`~hybridpgm.graphs.LinearChainCRF` by an explicit forward-backward recursion, for
``torch.func`` transforms and forward-mode AD.

Outside any transform the CRF reads its marginals off the gradient of :math:`\\log Z` (one
``torch.autograd.grad`` call through :func:`~hybridpgm.graphs.crf_recursions.forward`).  Forward-mode AD does not
see through that call where no potential requires grad (the gradient is then taken of detached potentials:
``torch.func.jvp`` and ``jacfwd`` of the marginals or of the entropy were wrong), and ``torch.func.vmap`` cannot
run it at all.  :func:`forward_backward` computes the same quantities from the forward messages
:math:`\\alpha` and the backward messages

.. math::

    \\beta_{n-1} = \\omega, \\qquad
    \\beta_t(i) = \\log\\sum_j \\exp\\big(A_{ij} + \\phi_{t+1}(j) + \\beta_{t+1}(j)\\big),

as ordinary differentiable ops, each step's message shifted by its (detached) maximum.  Since
:math:`\\sum_l e^{\\alpha_t(l) + \\beta_t(l)} = Z` at every step, the marginals are per-step softmaxes, invariant to
the shifts (and so are their derivatives):

.. math::

    p(y_t = l) = \\mathrm{softmax}_l\\big(\\alpha_t(l) + \\beta_t(l)\\big), \\qquad
    p(y_{t-1} = i, y_t = j) = \\mathrm{softmax}_{ij}\\big(\\alpha_{t-1}(i) + A_{ij} + \\phi_t(j) + \\beta_t(j)\\big).

:func:`use_forward_backward` says when the CRF takes this path.
"""

from __future__ import annotations

import torch
from torch.autograd import forward_ad

from hybridpgm.graphs.crf_recursions import ACCUMULATE, forbidden, working
from hybridpgm.transform_scope import under_torch_func

__all__ = ["forward_backward", "use_forward_backward"]


def use_forward_backward(*tensors: torch.Tensor) -> bool:
    """Whether a ``torch.func`` transform (``jvp``, ``jacfwd``, ``hessian``, ``vmap``, ``grad``, ``jacrev``) is
    active, or one of ``tensors`` carries a forward-mode tangent (:mod:`torch.autograd.forward_ad`): then the
    marginals come from :func:`forward_backward`.  Otherwise (plain ``torch.autograd``, ``no_grad``,
    ``inference_mode``) ``False``, and the CRF keeps its gradient-of-log-Z path and its speed.  The transforms are
    read by :func:`~hybridpgm.transform_scope.under_torch_func`."""
    if under_torch_func():
        return True
    return any(forward_ad.unpack_dual(t).tangent is not None for t in tensors)


def forward_backward(forward, unary: torch.Tensor, transition: torch.Tensor, start: torch.Tensor,
                     end: torch.Tensor, lengths: torch.Tensor):
    """``(log_z, grads, per_step)`` of potentials expanded to one ``batch_shape``, as
    :meth:`LinearChainCRF._grads <hybridpgm.graphs.LinearChainCRF>` returns them, every output differentiable
    (forward and reverse mode, ``torch.func`` transforms included).

    :param forward: the forward recursion, called as ``forward(unary, transition, start, end, keep=True,
        wide=True)`` (the CRF's ``_forward``, or :func:`~hybridpgm.graphs.crf_recursions.forward` with the
        lengths bound); it returns ``(log_z, alphas)``.
    :param unary: ``batch_shape + (T, L)`` unary scores (anything past a sequence's length is ignored).
    :param transition: ``batch_shape + (L, L)``.
    :param start: ``batch_shape + (L,)``.
    :param end: ``batch_shape + (L,)``.
    :param lengths: ``batch_shape`` long lengths in ``1..T``.
    :returns: ``log_z`` (``batch_shape``, in :data:`~hybridpgm.graphs.crf_recursions.ACCUMULATE`); ``grads``, the
        gradients of log Z: the ``batch_shape + (T, L)`` unary marginals (0 at padding), the ``batch_shape + (L,
        L)`` expected transition counts :math:`\\sum_{0<t<n} p(y_{t-1}=i, y_t=j)`, :math:`p(y_0)` and
        :math:`p(y_{n-1})`; ``per_step``, the ``batch_shape`` expected transition score
        :math:`\\sum_t \\sum_{ij} A_{ij}\\, p(y_{t-1}=i, y_t=j)`, each step's ``L x L`` terms summed in the working
        dtype and the ``T - 1`` step totals in ``ACCUMULATE``.
    """
    T, L = unary.shape[-2:]
    log_z, alphas = forward(unary, transition, start, end, keep=True, wide=True)  # [T] + batch + (L,)
    unary, transition, start, end = working(unary, transition, start, end)
    neg = forbidden(unary.dtype)
    inside = torch.arange(T, device=unary.device) < lengths[..., None]  # batch + (T,)
    unary = torch.where(inside[..., None], unary.clamp(min=neg), 0.0)  # as the forward recursion reads it
    transition, start, end = (p.clamp(min=neg) for p in (transition, start, end))
    steps_unary = unary.unbind(-2)
    last = end - end.detach().amax(-1, keepdim=True)
    beta, betas = last, [last]
    for t in range(T - 2, -1, -1):
        new = torch.logsumexp(transition + (steps_unary[t + 1] + beta).unsqueeze(-2), dim=-1)
        new = new - new.detach().amax(-1, keepdim=True)
        beta = torch.where((t < lengths - 1)[..., None], new, last)  # beta_t = omega for t >= n - 1
        betas.append(beta)
    betas = torch.stack(betas[::-1])  # [T] + batch + (L,)
    marginals = torch.where(inside[..., None], (alphas + betas).softmax(-1).movedim(0, -2), 0.0)
    first = marginals[..., 0, :]
    final = marginals.gather(-2, (lengths - 1)[..., None, None].expand(marginals.shape[:-2] + (1, L))).squeeze(-2)
    if T == 1:
        pairwise = torch.zeros_like(transition)
        per_step = log_z.new_zeros(log_z.shape)
    else:
        logits = (alphas[:-1].unsqueeze(-1) + transition) + (unary.movedim(-2, 0)[1:] + betas[1:]).unsqueeze(-2)
        pair = logits.flatten(-2).softmax(-1).view(logits.shape)  # [T - 1] + batch + (L, L)
        on = inside.movedim(-1, 0)[1:]  # [T - 1] + batch
        pair = torch.where(on[..., None, None], pair, 0.0)
        pairwise = pair.sum(0)
        per_step = (pair * transition).flatten(-2).sum(-1).to(ACCUMULATE).sum(0)
    return log_z, [marginals, pairwise, first, final], per_step
