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

Autograd reaches the same numbers through the softplus graph; written out,
the weight gradient is one matrix product over the stacked positive and
negative rows (the hand-written CD loop's two products and a difference, in
one), and the hidden probabilities of the data are the ones already computed
to sample :math:`h`.  :meth:`hybridpgm.energy.RBM.contrastive_gap` uses it
for Bernoulli units; tests compare it with autograd on the surrogate.

References:

1. G. E. Hinton, "Training products of experts by minimizing contrastive
   divergence", Neural Computation, 2002.
2. G. E. Hinton, "A practical guide to training restricted Boltzmann machines",
   UTML TR 2010-003, 2010.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["free_energy_gap"]


class _FreeEnergyGap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, visible_bias, hidden_bias, v, v_neg, logits_pos):
        logits_neg = torch.addmm(hidden_bias, v_neg, weight)
        batch, chains = v.shape[0], v_neg.shape[0]
        value = ((v_neg @ visible_bias).sum() / chains - (v @ visible_bias).sum() / batch
                 + F.softplus(logits_neg).sum() / chains - F.softplus(logits_pos).sum() / batch)
        ctx.save_for_backward(v, v_neg, torch.sigmoid(logits_pos), torch.sigmoid(logits_neg))
        return value

    @staticmethod
    def backward(ctx, grad):
        v, v_neg, p_pos, p_neg = ctx.saved_tensors
        batch, chains = v.shape[0], v_neg.shape[0]
        coef = torch.cat([p_pos * (-grad / batch), p_neg * (grad / chains)])  # (B + S) x H
        grad_weight = torch.cat([v, v_neg]).T @ coef
        grad_visible = v_neg.sum(0) * (grad / chains) - v.sum(0) * (grad / batch)
        return grad_weight, grad_visible, coef.sum(0), None, None, None


def free_energy_gap(weight: torch.Tensor, visible_bias: torch.Tensor, hidden_bias: torch.Tensor,
                    v: torch.Tensor, v_neg: torch.Tensor, logits_pos: torch.Tensor | None = None) -> torch.Tensor:
    """:math:`\\mathcal L` of the module docstring, differentiable in the three parameters.

    :param weight: ``V x H``; ``visible_bias``: ``V``; ``hidden_bias``: ``H``.
    :param v: the data, ``B x V``; ``v_neg``: the chain samples, ``S x V``
        (neither is differentiated: the samples are stop-gradient).
    :param logits_pos: ``B x H`` pre-activations :math:`c + vW` when already
        computed (they are recomputed otherwise).
    :returns: a 0-d tensor.
    """
    v, v_neg = v.detach(), v_neg.detach()
    if logits_pos is None:
        with torch.no_grad():
            logits_pos = torch.addmm(hidden_bias, v, weight)
    return _FreeEnergyGap.apply(weight, visible_bias, hidden_bias, v, v_neg, logits_pos.detach())
