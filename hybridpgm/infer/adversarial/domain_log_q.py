"""The discriminator's log-probabilities :math:`\\log q_\\phi(y \\mid x)` from its logits :math:`D_\\phi(x)`,

.. math:: \\log q_\\phi(y \\mid x) = y \\log\\sigma(D_\\phi(x)) + (1 - y) \\log\\sigma(-D_\\phi(x)),

the one place where every adversarial objective of :mod:`hybridpgm.infer.adversarial` turns logits into
log-probabilities (:func:`log_q_from_logits`, :func:`log_sigmoid`) or importance weights (:func:`softmax_weights`).

Under :func:`torch.autocast` the discriminator returns 16-bit logits (bfloat16 on the CPU, float16 or bfloat16 on
CUDA), and CPU autocast keeps ``logsigmoid`` and ``softmax`` in that dtype: a bfloat16 :math:`\\log\\sigma(D)`
carries 8 bits, so a loss of 1.55 is off by up to :math:`2^{-8} \\approx 0.004` (1.5547 for 1.5522).  These
functions run under :class:`~hybridpgm.precision_scope.exact_precision`: the logits, as the network gave them, are
taken on in at least float32; outside autocast they compute in the logits' own dtype (a float64 discriminator
stays float64, a ``model.to(torch.bfloat16)`` one computes in bfloat16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hybridpgm.precision_scope import exact_precision

__all__ = ["exact_label", "log_q_from_logits", "log_sigmoid", "softmax_weights", "weighted_mean"]


def log_q_from_logits(logits: torch.Tensor, y: float | torch.Tensor) -> torch.Tensor:
    """:math:`\\log q_\\phi(y \\mid x) = y \\log\\sigma(D) + (1 - y) \\log\\sigma(-D)`, in at least float32 under
    autocast (see the module docstring).

    :param logits: ``batch`` discriminator logits :math:`D_\\phi(x)`.
    :param y: the domain, ``0``/``1`` or a ``batch`` tensor of them.
    :returns: ``batch`` log-probabilities (numerically stable for large logits).
    """
    with exact_precision(logits) as (logits,):
        if not exact_label(y):  # a Python label 0/1 stays a number (exact in any dtype): a tensor of it is a
            y = torch.as_tensor(y, dtype=logits.dtype, device=logits.device)  # blocking upload on a GPU
        return y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)


def log_sigmoid(logits: torch.Tensor) -> torch.Tensor:
    """:math:`\\log\\sigma(D) = \\log q_\\phi(1 \\mid x)` elementwise, in at least float32 under autocast (see the
    module docstring); ``log_sigmoid(-logits)`` is :math:`\\log q_\\phi(0 \\mid x)`.

    :param logits: discriminator logits of any shape."""
    with exact_precision(logits) as (logits,):
        return F.logsigmoid(logits)


def softmax_weights(logits: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Self-normalised importance weights :math:`\\tilde w_i = e^{D_i} / \\sum_j e^{D_j}` along ``dim``, detached,
    in at least float32 under autocast (see the module docstring).

    :param logits: discriminator logits, :math:`\\log w_i = D_\\phi(x_i)`.
    :param int dim: the dimension the weights sum to one along."""
    with exact_precision(logits.detach()) as (logits,):
        return torch.softmax(logits, dim=dim)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """:math:`\\sum_i w_i v_i` with ``weights`` (``batch``, summing to one), or the plain mean."""
    return values.mean() if weights is None else (weights * values).sum()


def exact_label(y) -> bool:
    """Whether the domain label ``y`` is the Python number (or ``bool``) 0 or 1, which multiplies any dtype exactly
    as a tensor of it would; any other label (a fraction, a NumPy scalar, a tensor) is made a tensor of the logits'
    dtype.

    :param y: a domain label as :func:`log_q_from_logits` takes it."""
    return isinstance(y, (int, float)) and y in (0, 1)
