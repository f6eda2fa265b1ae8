"""The wide-network limit as a GPyTorch kernel: the arc-cosine / NNGP kernel.

A fully connected ReLU network with ``L`` hidden layers whose weights are
drawn :math:`W^{(l)}_{ij} \\sim \\mathcal N(0, \\sigma_w^2 / n_l)` and biases
:math:`b^{(l)}_i \\sim \\mathcal N(0, \\sigma_b^2)` converges, as every hidden
width goes to infinity, to a Gaussian process [1, 2] whose covariance follows
the recursion (with :math:`d` the input dimension)

.. math::

    K^{(0)}(x, x') &= \\sigma_b^2 + \\sigma_w^2\\, x^\\top x' / d, \\\\
    K^{(l+1)}(x, x') &= \\sigma_b^2 + \\frac{\\sigma_w^2}{2\\pi}
        \\sqrt{K^{(l)}(x, x) K^{(l)}(x', x')}\\,
        \\bigl(\\sin\\theta^{(l)} + (\\pi - \\theta^{(l)}) \\cos\\theta^{(l)}\\bigr),
    \\quad \\theta^{(l)} = \\arccos \\frac{K^{(l)}(x, x')}{\\sqrt{K^{(l)}(x, x) K^{(l)}(x', x')}},

the arc-cosine kernel of degree one of Cho & Saul [3] applied layer by layer;
the outputs of the network have covariance :math:`K^{(L)}`.

References:

1. R. M. Neal, *Bayesian Learning for Neural Networks*, 1996.
2. J. Lee, Y. Bahri, R. Novak, S. Schoenholz, J. Pennington, J. Sohl-Dickstein,
   *Deep Neural Networks as Gaussian Processes*, ICLR 2018.
3. Y. Cho, L. K. Saul, *Kernel Methods for Deep Learning*, NeurIPS 2009.
"""

from __future__ import annotations

import math

import gpytorch
import torch
from gpytorch.constraints import Positive

from hybridpgm.checks import positive_int
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.serialization import serializable

__all__ = ["ArcCosineKernel"]


@serializable
class ArcCosineKernel(gpytorch.kernels.Kernel):
    """NNGP kernel of a deep ReLU network (arc-cosine kernel of degree one).

    :param int num_layers: hidden ReLU layers ``L >= 0`` (``0`` gives the
        linear kernel :math:`K^{(0)}`).
    :param float weight_variance: initial :math:`\\sigma_w^2` (learnable, positive).
    :param float bias_variance: initial :math:`\\sigma_b^2` (learnable, positive).
    :param kwargs: passed to :class:`gpytorch.kernels.Kernel` (``batch_shape`` -- a sequence of ints --,
        ``active_dims``, ...).

    A model holding it (``DeepKernelGP(..., kernel=ArcCosineKernel(2))``) saves with :func:`hybridpgm.save`:
    the file records these constructor arguments, and the variances come back from the state dict.

    Inputs are ``batch_shape x n x d`` with ``d >= 1``; the covariance is ``batch_shape x n x m``.  With
    ``last_dim_is_batch=True`` (as GPyTorch's kernels) each feature is a batch of 1-d inputs: the covariance is
    ``batch_shape x d x n x m`` (``batch_shape x d x n`` with ``diag=True``).

    :raises ModelSpecError: ``num_layers`` not a non-negative integer, or a variance (here or set later through
        the ``weight_variance``/``bias_variance`` properties) that is not finite and positive, or a tensor one
        whose shape does not fit ``batch_shape``.

    >>> k = ArcCosineKernel(num_layers=2)
    >>> k(torch.randn(5, 3)).to_dense().shape
    torch.Size([5, 5])
    """

    has_lengthscale = False

    def __init__(self, num_layers: int = 1, weight_variance: float = 2.0, bias_variance: float = 0.1, **kwargs):
        num_layers = positive_int(num_layers, "ArcCosineKernel num_layers", error=ModelSpecError, minimum=0)
        if not (_positive(weight_variance) and _positive(bias_variance)):
            raise ModelSpecError(f"ArcCosineKernel variances must be positive and finite, got "
                                 f"weight_variance={weight_variance!r}, bias_variance={bias_variance!r}")
        if isinstance(kwargs.get("batch_shape"), (list, tuple)):  # a model file gives it as a list
            kwargs["batch_shape"] = torch.Size(kwargs["batch_shape"])
        super().__init__(**kwargs)
        self.num_layers = num_layers
        shape = (*self.batch_shape, 1, 1)
        self.register_parameter("raw_weight_variance", torch.nn.Parameter(torch.zeros(shape)))
        self.register_parameter("raw_bias_variance", torch.nn.Parameter(torch.zeros(shape)))
        self.register_constraint("raw_weight_variance", Positive())
        self.register_constraint("raw_bias_variance", Positive())
        self._check_variance_shape("weight_variance", weight_variance)
        self._check_variance_shape("bias_variance", bias_variance)
        self.initialize(weight_variance=weight_variance, bias_variance=bias_variance)

    def _check_variance_shape(self, name: str, value) -> None:
        """Raise :class:`ModelSpecError` unless a variance fits the kernel's ``batch_shape x 1 x 1`` parameter the
        way GPyTorch's ``initialize`` takes it: broadcast to it, or the same number of entries."""
        target = getattr(self, f"raw_{name}").shape
        shape = torch.as_tensor(value).shape
        try:
            torch.broadcast_shapes(shape, target)
            fits = torch.Size(torch.broadcast_shapes(shape, target)) == target
        except RuntimeError:
            fits = False
        if not fits and math.prod(shape) != math.prod(target):
            raise ModelSpecError(f"ArcCosineKernel {name} of shape {tuple(shape)} does not fit the kernel's "
                                 f"batch_shape {tuple(self.batch_shape)}: give a number, or a tensor of shape "
                                 f"{tuple(self.batch_shape)} or {tuple(target)}")

    @property
    def weight_variance(self) -> torch.Tensor:
        return self.raw_weight_variance_constraint.transform(self.raw_weight_variance)

    @weight_variance.setter
    def weight_variance(self, value) -> None:
        if not _positive(value):
            raise ModelSpecError(f"ArcCosineKernel weight_variance must be positive and finite, got {value!r}")
        self._check_variance_shape("weight_variance", value)
        value = torch.as_tensor(value, dtype=self.raw_weight_variance.dtype, device=self.raw_weight_variance.device)
        self.initialize(raw_weight_variance=self.raw_weight_variance_constraint.inverse_transform(value))

    @property
    def bias_variance(self) -> torch.Tensor:
        return self.raw_bias_variance_constraint.transform(self.raw_bias_variance)

    @bias_variance.setter
    def bias_variance(self, value) -> None:
        if not _positive(value):
            raise ModelSpecError(f"ArcCosineKernel bias_variance must be positive and finite, got {value!r}")
        self._check_variance_shape("bias_variance", value)
        value = torch.as_tensor(value, dtype=self.raw_bias_variance.dtype, device=self.raw_bias_variance.device)
        self.initialize(raw_bias_variance=self.raw_bias_variance_constraint.inverse_transform(value))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, last_dim_is_batch: bool = False,
                **params) -> torch.Tensor:
        """The covariance :math:`k^{(L)}(x_1, x_2)` of the class's recursion (GPyTorch's ``Kernel.forward``).

        :param x1: inputs ``(..., n, d)``.
        :param x2: inputs ``(..., m, d)``.
        :param bool diag: return only the diagonal ``(..., n)`` (``n = m``).
        :param bool last_dim_is_batch: treat each of the ``d`` features as a batch of one-dimensional inputs.
        :param params: GPyTorch's extra kernel options, accepted and not used.
        :returns: ``(..., n, m)``, or ``(..., n)`` with ``diag``; with ``last_dim_is_batch`` a dimension ``d`` comes
            before ``n``.
        """
        if x1.shape[-1] != x2.shape[-1]:
            raise ModelSpecError(f"ArcCosineKernel inputs disagree on the dimension: {tuple(x1.shape)} vs "
                                 f"{tuple(x2.shape)}")
        d = x1.shape[-1]
        if d == 0:
            raise DataError(f"ArcCosineKernel inputs of shape {tuple(x1.shape)} have no features (d = 0); "
                            "the kernel divides by d")
        sw, sb = self.weight_variance, self.bias_variance
        if last_dim_is_batch:  # as GPyTorch's kernels: each of the d features is a batch of 1-d inputs
            x1, x2 = x1.transpose(-1, -2).unsqueeze(-1), x2.transpose(-1, -2).unsqueeze(-1)
            sw, sb, d = sw.unsqueeze(-3), sb.unsqueeze(-3), 1
        if diag:
            sw, sb = sw[..., 0], sb[..., 0]
            k12 = sb + sw * (x1 * x2).sum(-1) / d
            k11 = sb + sw * (x1 * x1).sum(-1) / d
            k22 = sb + sw * (x2 * x2).sum(-1) / d
        else:
            k12 = sb + sw * (x1 @ x2.transpose(-1, -2)) / d
            k11 = sb[..., 0] + sw[..., 0] * (x1 * x1).sum(-1) / d
            k22 = sb[..., 0] + sw[..., 0] * (x2 * x2).sum(-1) / d
        # acos has an infinite derivative at +-1: stay a few ulps inside
        eps = 4 * torch.finfo(k12.dtype).eps
        for _ in range(self.num_layers):
            outer = k11 * k22 if diag else k11.unsqueeze(-1) * k22.unsqueeze(-2)
            norm = outer.sqrt()
            cos = (k12 / norm).clamp(-1 + eps, 1 - eps)
            theta = torch.acos(cos)
            j1 = torch.sin(theta) + (math.pi - theta) * cos
            k12 = sb + sw / (2 * math.pi) * norm * j1
            # theta = 0 on the diagonal: J1 = pi
            sb_d, sw_d = (sb, sw) if diag else (sb[..., 0], sw[..., 0])
            k11, k22 = sb_d + sw_d / 2 * k11, sb_d + sw_d / 2 * k22
        return k12


def _positive(value) -> bool:
    """Whether ``value`` (a real number or a real tensor, not a ``bool`` or string) is finite and positive."""
    if isinstance(value, (bool, str, bytes)):
        return False
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return False
    if t.dtype == torch.bool or t.is_complex() or t.numel() == 0:
        return False
    return bool((torch.isfinite(t) & (t > 0)).all())
