"""The marginals and the entropy of a :class:`~hybridpgm.graphs.LinearChainCRF`: gradients of :math:`\\log Z`.

:math:`\\log Z` is a log-sum-exp of scores linear in the potentials, so its gradients are the expected
sufficient statistics,

.. math::

    \\frac{\\partial \\log Z}{\\partial \\phi_t(l)} = p(y_t = l), \\qquad
    \\frac{\\partial \\log Z}{\\partial A_{ij}} = \\sum_{0<t<n} p(y_{t-1} = i, y_t = j),

and :math:`\\partial \\log Z / \\partial \\pi = p(y_0)`, :math:`\\partial \\log Z / \\partial \\omega = p(y_{n-1})`.
:class:`CRFMarginals` computes them by the explicit forward-backward recursion of
:func:`~hybridpgm.graphs.crf_forward_backward.forward_backward` (ordinary operations, differentiable in every mode
and under ``torch.func`` transforms), and gives :attr:`~CRFMarginals.marginals` (``batch_shape + (T, L)``),
:attr:`~CRFMarginals.pairwise_marginals` (``batch_shape + (L, L)``) and :meth:`~CRFMarginals.entropy`
(``batch_shape``).

Memory: without a graph (``torch.no_grad()``, ``torch.inference_mode()``, no potential requiring grad) the queries
keep ``O(batch * T * L)`` floats.  They were ``torch.autograd.grad`` of the forward recursion's log Z, whose graph
saved every step's ``L x L`` weights, ``batch * T * L * L`` floats, whether or not a graph was wanted (1.9 GB of
peak memory for the marginals at ``B = 16, T = 1000, L = 100`` in float32, 46 MB now).  With a graph, the
derivatives of the marginals need those weights, and they are the ones the forward recursion's graph keeps.
"""

from __future__ import annotations

import functools

import torch

from hybridpgm.graphs.crf_forward_backward import forward_backward
from hybridpgm.graphs.crf_recursions import ACCUMULATE
from hybridpgm.graphs.crf_recursions import forbidden as _forbidden
from hybridpgm.graphs.crf_recursions import working as _working

__all__ = ["CRFMarginals"]


class CRFMarginals:
    """Mixin of :class:`~hybridpgm.graphs.LinearChainCRF` computing its marginals and entropy, the gradients of
    :math:`\\log Z`, by forward-backward; it reads the CRF's potentials (``unary``, ``transition``, ``start``,
    ``end``), ``lengths``, ``_forward``, ``_mask`` and ``_check_possible``."""

    def _grads(self, steps=False):
        """``(log_z, grads, per_step)`` of :func:`~hybridpgm.graphs.crf_forward_backward.forward_backward`: log Z
        (in :data:`~hybridpgm.graphs.crf_recursions.ACCUMULATE`), its gradients = expected sufficient statistics,
        and, when ``steps``, the expected transition score summed step by step (see :meth:`entropy`; else None).
        Ordinary differentiable operations: differentiable when the caller's grad mode is on and a potential
        requires grad (and under ``torch.func`` transforms and forward-mode AD), plain tensors otherwise
        (``torch.no_grad()``, ``torch.inference_mode()``, no potential requiring grad), with no graph kept."""
        params = [self.unary, self.transition, self.start, self.end]
        # attach: the normalised log-sum-exp (the messages of torch.logsumexp, up to rounding; cheaper on a CPU);
        # where reverse mode records (plain autograd, or torch.func's grad/jacrev/hessian, whose wrapped potentials
        # require grad), each step's weights are read off it (its graph keeps them); forward mode and vmap record
        # nothing: there a list of every step's weights would be kept for nothing (review: 9x the memory)
        weights = [] if torch.is_grad_enabled() and any(p.requires_grad for p in params) else None
        forward = functools.partial(self._forward, attach=True, hook=None if weights is None else weights.append)
        log_z, grads, per_step = forward_backward(forward, *params, self.lengths, steps=steps, weights=weights)
        self._check_possible(log_z.detach(), "marginals and entropy are")
        return log_z, grads, per_step

    @property
    def marginals(self) -> torch.Tensor:
        """``batch_shape + (T, L)`` :math:`p(y_t = l)` (0 at padding)."""
        return self._grads()[1][0]

    @property
    def pairwise_marginals(self) -> torch.Tensor:
        """``batch_shape + (L, L)`` expected transition counts :math:`\\sum_t p(y_{t-1}=i, y_t=j)`."""
        return self._grads()[1][1]

    def entropy(self) -> torch.Tensor:
        """``batch_shape`` :math:`H = \\log Z - \\mathbb E[s(y)]`; :math:`s` is linear in the
        potentials, so :math:`\\mathbb E[s] = \\sum_\\theta \\theta \\cdot \\partial \\log Z / \\partial \\theta`.

        Both terms are ~T x score and nearly cancel, so :math:`\\mathbb E[s]` is summed step by step:
        :math:`\\mathbb E[s] = \\pi \\cdot p_0 + \\omega \\cdot p_{n-1} + \\sum_t \\phi_t \\cdot p_t +
        \\sum_{0<t<n} \\sum_{ij} A_{ij}\\, p_t(j)\\, q_t(i \\mid j)`, with the marginals :math:`p_t` and
        :math:`q_t(i \\mid j) = p(y_{t-1}=i \\mid y_t=j) = \\mathrm{softmax}_i(\\alpha_{t-1}(i) + A_{ij})` from the
        forward messages.  Each step's terms (over ``L`` or ``L x L`` labels; the transition terms of
        :math:`A_{ij} - \\max A`, as a step's pairs sum to 1 and :math:`(n - 1) \\max A` is added in
        :data:`~hybridpgm.graphs.crf_recursions.ACCUMULATE`) are summed in the working dtype, the
        ``T`` step totals in :data:`~hybridpgm.graphs.crf_recursions.ACCUMULATE`, and the result is subtracted from
        the unrounded log Z there and rounded once.  A step's transition term is read off its pairwise marginal
        :math:`p_t(j)\\, q_t(i \\mid j)` as the forward-backward recursion that computes the marginals produces it:
        one ``L x L`` product a step, nothing kept.

        :math:`\\sum_{ij} A_{ij} \\cdot` :attr:`pairwise_marginals` is the same number, but its counts are sums
        over ``T`` steps rounded in the working dtype.  A float64 CRF (whose working dtype is
        :data:`~hybridpgm.graphs.crf_recursions.ACCUMULATE`) and a one-step sequence use it as it is; otherwise the
        step-by-step value, which carries no graph, replaces it as a constant added to it (their difference, a
        rounding error).  The gradient (and the Hessian) is therefore always that of this sum, the same function
        of the potentials, and the transition always receives one (zeros for ``T = 1``)."""
        unary, transition, start, end = _working(self.unary, self.transition, self.start, self.end)
        steps = unary.dtype != ACCUMULATE and unary.shape[-2] > 1
        log_z, grads, per_step = self._grads(steps=steps)
        neg = _forbidden(unary.dtype)
        # a -inf score has gradient (probability) exactly 0: its finite stand-in makes theta * g = 0, not NaN;
        # padding (which may hold anything) is left out
        unary = torch.where(self._mask()[..., None], unary.clamp(min=neg), 0.0)
        params = [unary] + [p.clamp(min=neg) for p in (transition, start, end)]
        # per step (batch + (T,) scalars) in the working dtype, over the steps in ACCUMULATE
        expected = (unary * grads[0]).sum(-1).to(ACCUMULATE).sum(-1)
        expected = expected + sum((p * g).sum(-1).to(ACCUMULATE) for p, g in zip(params[2:], grads[2:]))
        whole = (params[1] * grads[1]).flatten(-2).sum(-1).to(ACCUMULATE)  # sum(A * pairwise_marginals)
        if steps:  # its value step by step, as a constant: the difference is a rounding error
            whole = whole + (per_step - whole).detach()
        return (log_z - (expected + whole)).to(unary.dtype)
