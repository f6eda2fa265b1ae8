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
Second derivatives and :mod:`torch.func` are exact too.  A backward pass that records a graph
(``create_graph=True``: :func:`torch.autograd.functional.hessian`, a gradient penalty, an inner optimisation
step, and every gradient of :func:`torch.func.grad` / :func:`torch.func.jacrev`, which record one) computes the
same closed form from the parameters with plain differentiable operations (:func:`_plain_gradients`, the
probabilities recomputed), the saved probabilities being constants in the parameters as autograd sees them; a
first-order backward pass keeps the saved ones.  Forward mode (:func:`torch.func.jvp`,
:func:`torch.func.jacfwd`, :func:`torch.func.hessian`) takes :math:`\langle \nabla \mathcal L, \dot\theta
\rangle` from the same plain closed form, and :func:`torch.func.vmap` evaluates the surrogate written with
plain operations (:func:`_plain_outputs`), whose batching, derivatives of any order included, torch derives.
Forward over forward mode (``jacfwd(jacfwd(...))``, nested :mod:`torch.autograd.forward_ad` levels) is not
exact: torch runs an autograd Function's ``jvp`` with forward mode off, so its second forward-mode
derivatives come out zero; :func:`torch.func.hessian` (forward over reverse) is exact.
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
import inspect

import torch

from hybridpgm.softplus import softplus

__all__ = ["free_energy_gap", "free_energy_gap_and_gradients"]


def _value_and_gaps(weight, visible_bias, hidden_bias, v, v_neg, logits_pos, probs_pos):
    r""":math:`\mathcal L`, the chains' hidden probabilities :math:`\tilde p` (``S x H``), and the bias
    gradients :math:`\bar{\tilde v} - \bar v` (``V``) and :math:`\bar{\tilde p} - \bar p` (``H``)."""
    batch, chains = v.shape[0], v_neg.shape[0]
    logits_neg = torch.addmm(hidden_bias, v_neg, weight)
    visible_gap = v_neg.mean(0).sub_(v.mean(0))  # grad_b
    value = (softplus(logits_neg).sum().div_(chains)
             .sub_(softplus(logits_pos).sum(), alpha=1.0 / batch)
             .add_(visible_gap @ visible_bias))
    probs_neg = logits_neg.sigmoid_()  # the logits are not needed any more
    hidden_gap = probs_neg.mean(0).sub_(probs_pos.mean(0))  # grad_c
    return value, probs_neg, visible_gap, hidden_gap


def _without_autocast(device: torch.device):
    """Autocast off on ``device`` where it is on (the plain forms compute in the parameters' dtype, as
    :meth:`hybridpgm.energy.RBM.contrastive_gap` computes the value)."""
    device = device.type
    return torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext()


def _plain_gradients(weight, visible_bias, hidden_bias, v, v_neg):
    r"""The closed-form gradients of :math:`\mathcal L` written with plain differentiable operations, for
    derivatives of higher order: ``(grad_weight [V, H], grad_visible_bias [V], grad_hidden_bias [H])`` with the
    probabilities :math:`p = \sigma(c + vW)` and :math:`\tilde p = \sigma(c + \tilde v W)` recomputed from the
    parameters, so that the gradients' own derivatives in them are exact."""
    with _without_autocast(weight.device):
        probs_pos = torch.sigmoid(torch.addmm(hidden_bias, v, weight))
        probs_neg = torch.sigmoid(torch.addmm(hidden_bias, v_neg, weight))
        grad_weight = v_neg.T @ probs_neg / v_neg.shape[0] - v.T @ probs_pos / v.shape[0]
        return grad_weight, v_neg.mean(0) - v.mean(0), probs_neg.mean(0) - probs_pos.mean(0)


def _plain_outputs(weight, visible_bias, hidden_bias, v, v_neg):
    r"""``forward``'s four outputs written with plain differentiable operations (no in-place update, so that
    :func:`torch.func.vmap` batches them whichever inputs carry the batch): :math:`\mathcal L =
    \frac1B \sum_b F(v_b) - \frac1S \sum_s F(\tilde v_s)` (0-d), :math:`\tilde p` (``S x H``),
    :math:`\bar{\tilde v} - \bar v` (``V``) and :math:`\bar{\tilde p} - \bar p` (``H``)."""
    with _without_autocast(weight.device):
        logits_pos = torch.addmm(hidden_bias, v, weight)
        logits_neg = torch.addmm(hidden_bias, v_neg, weight)
        visible_gap = v_neg.mean(0) - v.mean(0)
        value = (softplus(logits_neg).sum(-1).mean() - softplus(logits_pos).sum(-1).mean()
                 + visible_gap @ visible_bias)
        probs_neg = torch.sigmoid(logits_neg)
        return value, probs_neg, visible_gap, probs_neg.mean(0) - torch.sigmoid(logits_pos).mean(0)


class _FreeEnergyGap(torch.autograd.Function):
    r"""``forward`` computes :math:`\mathcal L` and, as outputs that carry no gradient, what ``backward``
    needs: the chains' hidden probabilities and the bias gradients (the visible one enters the value anyway).
    ``backward`` weights the hidden probabilities by the incoming gradient :math:`g` and accumulates the
    second weight product in place into the first,
    :math:`\nabla_W = \tilde v^\top (\tfrac gS \tilde p) + v^\top (-\tfrac gB p)`
    (one output, no stacked copies of the rows).  Few operations on purpose:
    the elementwise work is small next to the products, and each call costs.

    The saved probabilities and gaps are constants, so a backward pass that records a graph (grad mode on
    in ``backward``: exactly ``create_graph=True``, which :func:`torch.func.grad` always asks for) would give
    zero second derivatives; it computes :func:`_plain_gradients` of the saved parameters instead, with the
    graph (and :math:`g` in it, for :func:`torch.autograd.gradgradcheck`).  The parameters are saved for that
    (no copy; modifying them in place between the forward and the backward pass raises torch's
    version-counter error).  ``forward`` takes no ``ctx`` and :meth:`setup_context` saves, as
    :mod:`torch.func` requires; :meth:`jvp` gives forward mode, :meth:`vmap` batching.
    """

    @staticmethod
    def forward(*inputs):
        """``(weight, visible_bias, hidden_bias, v, v_neg, logits_pos, probs_pos)`` -> ``(value, probs_neg,
        visible_gap, hidden_gap)`` (:func:`_value_and_gaps`).  One var-positional parameter: ``apply`` binds
        the arguments to ``forward``'s signature on every call (where ``setup_context`` is defined), which
        costs 30 us for seven named parameters, 4 us for this one (its signature cached below)."""
        return _value_and_gaps(*inputs)

    @staticmethod
    def setup_context(ctx, inputs, output):
        weight, visible_bias, hidden_bias, v, v_neg, _, probs_pos = inputs
        _, probs_neg, visible_gap, hidden_gap = output
        ctx.mark_non_differentiable(probs_neg, visible_gap, hidden_gap)
        ctx.set_materialize_grads(False)  # no zero gradients are made for the three outputs above
        ctx.scales = (-1.0 / v.shape[0], 1.0 / v_neg.shape[0])
        ctx.save_for_backward(v, v_neg, probs_pos, probs_neg, visible_gap, hidden_gap,
                              weight, visible_bias, hidden_bias)
        ctx.save_for_forward(weight, visible_bias, hidden_bias, v, v_neg)

    @staticmethod
    def backward(ctx, grad, *_):
        v, v_neg, probs_pos, probs_neg, visible_gap, hidden_gap, *params = ctx.saved_tensors
        if grad is None:
            return (None,) * 7
        if torch.is_grad_enabled():  # create_graph=True: the gradient must carry its own graph
            plain = _plain_gradients(*params, v, v_neg)
            return tuple(g * grad if ctx.needs_input_grad[i] else None for i, g in enumerate(plain)) + (None,) * 4
        grad_weight = None
        if ctx.needs_input_grad[0]:
            scale_pos, scale_neg = ctx.scales
            grad_weight = v_neg.T @ (probs_neg * (grad * scale_neg))
            grad_weight.addmm_(v.T, probs_pos * (grad * scale_pos))
        grad_visible = visible_gap * grad if ctx.needs_input_grad[1] else None
        grad_hidden = hidden_gap * grad if ctx.needs_input_grad[2] else None
        return grad_weight, grad_visible, grad_hidden, None, None, None, None

    @staticmethod
    def jvp(ctx, d_weight, d_visible_bias, d_hidden_bias, *_):
        r""":math:`\dot{\mathcal L} = \langle \nabla \mathcal L, \dot\theta \rangle` over the parameters'
        tangents :math:`\dot\theta` (the data and samples are stop-gradient), with :func:`_plain_gradients`, so
        that nested forward mode is exact too; the three other outputs carry no tangent."""
        weight, visible_bias, hidden_bias, v, v_neg = ctx.saved_tensors
        tangent = None
        for g, d in zip(_plain_gradients(weight, visible_bias, hidden_bias, v, v_neg),
                        (d_weight, d_visible_bias, d_hidden_bias)):
            if d is not None:
                term = (g * d).sum()
                tangent = term if tangent is None else tangent + term
        if tangent is None:
            tangent = torch.zeros((), dtype=weight.dtype, device=weight.device)
        return tangent, None, None, None

    @staticmethod
    def vmap(info, in_dims, weight, visible_bias, hidden_bias, v, v_neg, logits_pos, probs_pos):
        r"""Batched: :func:`_plain_outputs` under :func:`torch.func.vmap` (the pre-activations and
        probabilities of the data, which the plain form recomputes, are dropped), so that every derivative
        of the batched value is autograd's through plain operations; each output has the batch dim first."""
        args = (weight, visible_bias, hidden_bias, v, v_neg)
        if all(d is None for d in in_dims[:5]):  # only the dropped pre-activations carry the batch
            return _plain_outputs(*args), (None,) * 4
        return torch.func.vmap(_plain_outputs, in_dims=in_dims[:5], randomness=info.randomness)(*args), (0,) * 4


_FreeEnergyGap.forward.__signature__ = inspect.signature(_FreeEnergyGap.forward)  # read by inspect.signature


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
    return _FreeEnergyGap.apply(weight, visible_bias, hidden_bias, v, v_neg, logits_pos, probs_pos)[0]


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
