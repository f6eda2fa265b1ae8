r"""Supervised and reconstruction objectives for fine-tuning an unrolled DBN with :func:`hybridpgm.fit`.

* :class:`ReconstructionObjective` -- an autoencoder's reconstruction loss
  [1]: the Bernoulli cross-entropy :math:`-\sum_i v_i \log \hat v_i + (1-v_i)\log(1-\hat v_i)`
  (or half the squared error for real-valued data), summed over the units and
  averaged over the batch.
* :class:`ClassificationObjective` -- cross-entropy of a classifier on ``(x, y)`` batches.

Both have one player, ``"model"``, whose parameters are all of the network's.

References:

1. G. E. Hinton, R. R. Salakhutdinov, "Reducing the dimensionality of data with
   neural networks", Science, 2006.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hybridpgm.data.validation import as_model_dtype, check_finite
from hybridpgm.checks import check_device, check_empty, check_player
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.tensor_arguments import require_tensor
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["ClassificationObjective", "ReconstructionObjective"]


def _input_width(module: nn.Module) -> int | None:
    """The input width of a network that starts with an :class:`nn.Linear` (itself, or the first layer of
    nested :class:`nn.Sequential` containers, as :meth:`DBN.to_classifier
    <hybridpgm.energy.DBN.to_classifier>` builds); ``None`` when the module does not tell it (another first
    layer, a lazy one)."""
    while isinstance(module, nn.Sequential) and len(module):
        module = module[0]
    if isinstance(module, nn.Linear) and not isinstance(module, nn.modules.lazy.LazyModuleMixin):
        return module.in_features
    return None


class _OnePlayer:
    player = "model"

    def __init__(self, module: nn.Module):
        self.module = module

    def players(self) -> dict[str, list[nn.Parameter]]:
        """``"model"``: every parameter of the network (``module.parameters()``, frozen ones included)."""
        return {self.player: list(self.module.parameters())}

    def _check_player(self, player: str) -> None:
        check_player(player, (self.player,), type(self).__name__)

    def _inputs(self, x) -> torch.Tensor:
        """``x`` checked for free (a non-empty tensor on the network's device, as wide as the network's first
        :class:`nn.Linear` when it starts with one) and in its dtype (the rule of
        :func:`~hybridpgm.data.validation.as_model_dtype`)."""
        what = f"{type(self).__name__} input 'x'"
        require_tensor(x, what, arg="x")
        if x.dim() < 1:
            raise DataError(f"{what} must be a tensor of shape (batch, ...), got {tuple(x.shape)}")
        width = _input_width(self.module)
        if width is not None and x.shape[-1] != width:  # a shape check: no host read
            raise DataError(f"{what} must have shape (batch, {width}) (the network's input width), "
                            f"got {tuple(x.shape)}")
        check_empty(x, what)
        weight = next(self.module.parameters(), None)
        if weight is None:
            return x
        check_device(x, weight, what)
        return as_model_dtype(x, weight.dtype, what)


class ReconstructionObjective(_OnePlayer):
    """Reconstruction loss of an autoencoder whose ``forward(x)`` returns logits (``likelihood="bernoulli"``)
    or means (``"gaussian"``), ``batch x D`` like ``x``.

    :meth:`loss` raises :class:`~hybridpgm.errors.DataError` for a batch that is not a non-empty tensor, of a
    dtype the network does not convert exactly, holding NaN/inf or (Bernoulli) values outside ``[0, 1]``
    (the value check waits for :func:`hybridpgm.fit`'s one host read of the step), not as wide as the input of
    a network that starts with an :class:`nn.Linear`, or whose reconstruction has another shape;
    :class:`~hybridpgm.errors.DeviceError` for a batch on another device.

    :param autoencoder: the network (e.g. :meth:`DBN.to_autoencoder <hybridpgm.energy.DBN.to_autoencoder>`'s); its
        parameters are the one player ``"model"``.
    :param str likelihood: ``"bernoulli"`` (default; summed binary cross-entropy of the logits) or ``"gaussian"``
        (summed :math:`(\\hat x - x)^2 / 2`).
    :raises ConfigError: another ``likelihood``.
    """

    def __init__(self, autoencoder: nn.Module, likelihood: str = "bernoulli"):
        super().__init__(autoencoder)
        if likelihood not in ("bernoulli", "gaussian"):
            raise ConfigError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        self.likelihood = likelihood

    def settings(self) -> dict[str, Any]:
        """The ``likelihood``, compared when ``fit`` resumes a checkpoint."""
        return {"likelihood": self.likelihood}

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """The reconstruction loss summed over units and averaged over rows (0-d).

        :param str player: ``"model"``.
        :param batch: ``x`` (``batch x D``), or a tuple or list whose first item is ``x``."""
        self._check_player(player)
        x = self._inputs(batch[0] if isinstance(batch, (tuple, list)) else batch)
        if self.likelihood == "bernoulli":  # a target outside [0, 1] makes the loss unbounded below
            low, high = torch.stack([x.amin(), x.amax()]).unbind()
            ok = (low >= 0) & (high <= 1)  # NaN fails both
        else:
            ok = torch.isfinite(torch.stack([x.amin(), x.amax()])).all()

        def invalid() -> DataError:
            check_finite(x, "ReconstructionObjective input 'x'")
            return DataError(f"ReconstructionObjective(likelihood='bernoulli') needs data in [0, 1], got values "
                             f"in [{x.min().item()}, {x.max().item()}]; use likelihood='gaussian' for real data")

        check_or_defer(ok, invalid, "ReconstructionObjective(likelihood='bernoulli') input 'x' is outside [0, 1]"
                       if self.likelihood == "bernoulli" else "ReconstructionObjective input 'x' holds NaN or inf")
        out = self.module(x)
        if out.shape != x.shape:
            raise DataError(f"autoencoder output shape {tuple(out.shape)} differs from input shape {tuple(x.shape)}")
        if self.likelihood == "bernoulli":
            per_unit = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            per_unit = (out - x) ** 2 / 2
        return per_unit.reshape(x.shape[0], -1).sum(-1).mean()


class ClassificationObjective(_OnePlayer):
    """Cross-entropy of a classifier (``forward(x)`` returns ``batch x C`` logits) on batches ``(x, y)``.

    :meth:`loss` raises :class:`~hybridpgm.errors.DataError` for a batch that is not ``(x, y)``, an empty
    ``x``, one whose width is not the input width of a network that starts with an :class:`nn.Linear` (such
    as :meth:`DBN.to_classifier <hybridpgm.energy.DBN.to_classifier>`'s), or of a dtype the network does
    not convert exactly, labels ``y`` that are not a 1-D integer
    tensor with one label per row, or labels outside ``0..C-1`` (that check waits for :func:`hybridpgm.fit`'s
    one host read of the step; meanwhile the loss is computed with such labels replaced by 0).
    """

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """The mean cross-entropy of the logits against ``y`` (0-d).

        :param str player: ``"model"``.
        :param batch: ``(x, y)``: inputs ``batch x D`` and integer labels ``batch``."""
        self._check_player(player)
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise DataError("ClassificationObjective needs batches (x, y); pass data=(x, y) to fit")
        x, y = self._inputs(batch[0]), batch[1]
        require_tensor(y, "ClassificationObjective labels 'y'", arg="y")
        if y.dim() != 1 or y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
            raise DataError(f"ClassificationObjective labels 'y' must be a 1-D integer tensor of class indices, "
                            f"got shape {tuple(y.shape)} and dtype {y.dtype}")
        if y.shape[0] != x.shape[0]:
            raise DataError(f"ClassificationObjective got {y.shape[0]} labels for {x.shape[0]} rows of x")
        logits = self.module(x)
        num_classes = logits.shape[-1]
        in_range = (y >= 0) & (y < num_classes)

        def out_of_range() -> DataError:
            bad = y[~in_range][:3].tolist()
            return DataError(f"ClassificationObjective labels 'y' must lie in 0..{num_classes - 1} (the classifier's "
                             f"{num_classes} outputs), found {bad}")

        check_or_defer(in_range.all(), out_of_range, f"ClassificationObjective labels 'y' lie outside "
                       f"0..{num_classes - 1} (the classifier's {num_classes} outputs)")
        return F.cross_entropy(logits, torch.where(in_range, y, 0).long())
