r"""The contrastive-divergence surrogate of a Bernoulli RBM with its gradient in closed form.

For data :math:`v` (``B x V``) and chain samples :math:`\tilde v` (``S x V``)
the CD/PCD surrogate loss is the free-energy gap

.. math::

    \mathcal L = \frac1B \sum_b F(v_b) - \frac1S \sum_s F(\tilde v_s),
    \qquad F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j + v^\top W_{:j}),

whose gradient is the CD update of [1] (section 3 of [2]) with
:math:`p = \sigma(c + vW)`, :math:`\tilde p = \sigma(c + \tilde v W)`:

.. math::

    \nabla_W \mathcal L = -\tfrac1B v^\top p + \tfrac1S \tilde v^\top \tilde p,\quad
    \nabla_b \mathcal L = -\bar v + \bar{\tilde v},\quad
    \nabla_c \mathcal L = -\bar p + \bar{\tilde p}.

Autograd reaches the same first derivatives through the softplus graph; written out,
the weight gradient is the second product accumulated in place into the first
(``addmm_``: the hand-written CD loop's two products and a difference, with no
temporary for either product and no stacked copy of the rows), the hidden
probabilities of the data are the ones already computed to sample :math:`h`
(:meth:`hybridpgm.energy.RBM.clamped_state` passes them on), and
:math:`\nabla_b \mathcal L` is computed once, for the value and the gradient.
:meth:`hybridpgm.energy.RBM.contrastive_gap` uses it for Bernoulli units;
tests compare it with autograd on the surrogate.
Second derivatives are exact too: a backward pass that records a graph (``create_graph=True``:
:func:`torch.autograd.functional.hessian`, a gradient penalty, an inner optimisation step) differentiates the
surrogate written with plain operations instead (:func:`_surrogate`), the closed form being constant in the
parameters as autograd sees it; a first-order backward pass keeps the closed form.
:func:`free_energy_gap_and_gradients` returns the value and the three
gradients at once, with no autograd graph: :func:`hybridpgm.fit` applies them
as they are (:meth:`hybridpgm.energy.RBM.contrastive_gap_and_gradients`).

References:

1. G. E. Hinton, "Training products of experts by minimizing contrastive
   divergence", Neural Computation, 2002.
2. G. E. Hinton, "A practical guide to training restricted Boltzmann machines",
   UTML TR 2010-003, 2010.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

__all__ = ["free_energy_gap", "free_energy_gap_and_gradients"]


def _value_and_gaps(weight, visible_bias, hidden_bias, v, v_neg, logits_pos, probs_pos):
    r""":math:`\mathcal L`, the chains' hidden probabilities :math:`\tilde p` (``S x H``), and the bias
    gradients :math:`\bar{\tilde v} - \bar v` (``V``) and :math:`\bar{\tilde p} - \bar p` (``H``)."""
    batch, chains = v.shape[0], v_neg.shape[0]
    logits_neg = torch.addmm(hidden_bias, v_neg, weight)
    visible_gap = v_neg.mean(0).sub_(v.mean(0))  # grad_b
    value = (F.softplus(logits_neg).sum().div_(chains)
             .sub_(F.softplus(logits_pos).sum(), alpha=1.0 / batch)
             .add_(visible_gap @ visible_bias))
    probs_neg = logits_neg.sigmoid_()  # the logits are not needed any more
    hidden_gap = probs_neg.mean(0).sub_(probs_pos.mean(0))  # grad_c
    return value, probs_neg, visible_gap, hidden_gap


def _surrogate(weight, visible_bias, hidden_bias, v, v_neg):
    r""":math:`\mathcal L` written with plain differentiable operations, for second derivatives:
    :math:`\frac1B \sum_b F(v_b) - \frac1S \sum_s F(\tilde v_s)` (0-d), in the parameters' dtype with
    autocast off (as :meth:`hybridpgm.energy.RBM.contrastive_gap` computes the value)."""
    def free_energy(x):  # F(x), rows
        return -(x @ visible_bias) - F.softplus(torch.addmm(hidden_bias, x, weight)).sum(-1)

    device = weight.device.type
    off = torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext()
    with off:
        return free_energy(v).mean() - free_energy(v_neg).mean()


class _FreeEnergyGap(torch.autograd.Function):
    r"""``forward`` computes :math:`\mathcal L` and the bias gradients (the
    visible one enters the value anyway); ``backward`` weights the hidden
    probabilities by the incoming gradient :math:`g` and accumulates the second
    weight product in place into the first,
    :math:`\nabla_W = \tilde v^\top (\tfrac gS \tilde p) + v^\top (-\tfrac gB p)`
    (one output, no stacked copies of the rows).  Few operations on purpose:
    the elementwise work is small next to the products, and each call costs.

    The saved probabilities and gaps are constants, so a backward pass that records a graph (grad mode on
    in ``backward``: exactly ``create_graph=True``) would give zero second derivatives; it differentiates
    :func:`_surrogate` of the saved parameters instead, with the graph (and :math:`g` in it, for
    :func:`torch.autograd.gradgradcheck`).  The parameters are saved for that (no copy; modifying them in
    place between the forward and the backward pass raises torch's version-counter error).
    """

    @staticmethod
    def forward(ctx, weight, visible_bias, hidden_bias, v, v_neg, logits_pos, probs_pos):
        value, probs_neg, visible_gap, hidden_gap = _value_and_gaps(
            weight, visible_bias, hidden_bias, v, v_neg, logits_pos, probs_pos)
        ctx.scales = (-1.0 / v.shape[0], 1.0 / v_neg.shape[0])
        ctx.save_for_backward(v, v_neg, probs_pos, probs_neg, visible_gap, hidden_gap,
                              weight, visible_bias, hidden_bias)
        return value

    @staticmethod
    def backward(ctx, grad):
        v, v_neg, probs_pos, probs_neg, visible_gap, hidden_gap, *params = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the gradient must carry its own graph
            return _gradients_with_graph(ctx, grad, params, v, v_neg)
        grad_weight = None
        if ctx.needs_input_grad[0]:
            scale_pos, scale_neg = ctx.scales
            grad_weight = v_neg.T @ (probs_neg * (grad * scale_neg))
            grad_weight.addmm_(v.T, probs_pos * (grad * scale_pos))
        grad_visible = visible_gap * grad if ctx.needs_input_grad[1] else None
        grad_hidden = hidden_gap * grad if ctx.needs_input_grad[2] else None
        return grad_weight, grad_visible, grad_hidden, None, None, None, None


def _gradients_with_graph(ctx, grad, params, v, v_neg):
    r"""``backward``'s seven gradients under ``create_graph=True``: :math:`g\,\nabla \mathcal L` of
    :func:`_surrogate` in the parameters that need it, differentiable in them and in ``grad``."""
    wanted = [i for i in range(3) if ctx.needs_input_grad[i]]
    grads = torch.autograd.grad(_surrogate(*params, v, v_neg), [params[i] for i in wanted], grad,
                                create_graph=True)
    out = [None] * 7
    for i, g in zip(wanted, grads):
        out[i] = g
    return tuple(out)


def _inputs(weight, hidden_bias, v, v_neg, logits_pos, probs_pos):
    """The detached data, samples, pre-activations and hidden probabilities of the data."""
    v, v_neg = v.detach(), v_neg.detach()
    if logits_pos is None:
        with torch.no_grad():
            logits_pos = torch.addmm(hidden_bias, v, weight)
    logits_pos = logits_pos.detach()
    probs_pos = torch.sigmoid(logits_pos) if probs_pos is None else probs_pos.detach()
    return v, v_neg, logits_pos, probs_pos


def free_energy_gap(weight: torch.Tensor, visible_bias: torch.Tensor, hidden_bias: torch.Tensor,
                    v: torch.Tensor, v_neg: torch.Tensor, logits_pos: torch.Tensor | None = None,
                    probs_pos: torch.Tensor | None = None) -> torch.Tensor:
    """:math:`\\mathcal L` of the module docstring, differentiable in the three parameters.

    :param weight: ``V x H``; ``visible_bias``: ``V``; ``hidden_bias``: ``H``.
    :param v: the data, ``B x V``; ``v_neg``: the chain samples, ``S x V``
        (neither is differentiated: the samples are stop-gradient).
    :param logits_pos: ``B x H`` pre-activations :math:`c + vW` when already
        computed (they are recomputed otherwise).
    :param probs_pos: ``B x H`` hidden probabilities :math:`p = \\sigma(c + vW)`
        when already computed (to sample :math:`h`; computed from the logits otherwise).
    :returns: a 0-d tensor.
    """
    v, v_neg, logits_pos, probs_pos = _inputs(weight, hidden_bias, v, v_neg, logits_pos, probs_pos)
    return _FreeEnergyGap.apply(weight, visible_bias, hidden_bias, v, v_neg, logits_pos, probs_pos)


@torch.no_grad()
def free_energy_gap_and_gradients(weight: torch.Tensor, visible_bias: torch.Tensor, hidden_bias: torch.Tensor,
                                  v: torch.Tensor, v_neg: torch.Tensor, logits_pos: torch.Tensor | None = None,
                                  probs_pos: torch.Tensor | None = None
                                  ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """:math:`\\mathcal L` and its gradients in the three parameters, computed at once, without autograd.

    The numbers :func:`free_energy_gap` and its backward pass give, without the autograd graph, the
    function object and the engine's traversal: :func:`hybridpgm.fit` takes this path
    (:meth:`hybridpgm.infer.ContrastiveDivergence.loss_and_gradients`).  The scales of the two weight
    products ride in the products (``addmm_``'s ``alpha`` and ``beta``), so no weighted copy of the
    probabilities is made.  Arguments as for :func:`free_energy_gap`.

    :returns: ``(value, (grad_weight [V, H], grad_visible_bias [V], grad_hidden_bias [H]))``, a 0-d
        tensor and fresh tensors the caller may modify.
    """
    v, v_neg, logits_pos, probs_pos = _inputs(weight, hidden_bias, v, v_neg, logits_pos, probs_pos)
    value, probs_neg, visible_gap, hidden_gap = _value_and_gaps(
        weight, visible_bias, hidden_bias, v, v_neg, logits_pos, probs_pos)
    grad_weight = torch.mm(v_neg.T, probs_neg)
    grad_weight.addmm_(v.T, probs_pos, beta=1.0 / v_neg.shape[0], alpha=-1.0 / v.shape[0])
    return value, (grad_weight, visible_gap, hidden_gap)
