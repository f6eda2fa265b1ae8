"""Features into the KISS-GP grid: GPyTorch's ``ScaleToBounds`` defined for features without a range, and its
running-range variant for mini-batch training."""

from __future__ import annotations

import gpytorch
import torch

__all__ = ["RunningScaleToGrid", "ScaleToGrid"]


class ScaleToGrid(gpytorch.utils.grid.ScaleToBounds):
    """GPyTorch's :class:`~gpytorch.utils.grid.ScaleToBounds` (features into the KISS-GP grid), defined also
    for features without a range.

    In train mode a batch of features with minimum :math:`a` and maximum :math:`b` (over all its entries) is
    mapped affinely onto :math:`[0.95\\,l, 0.95\\,l + 0.95\\,(u - l)]` (``l``, ``u`` the bounds: the midpoint
    goes to the grid's centre :math:`c = 0.95\\,l + 0.475\\,(u - l)`), and :math:`(a, b)` is recorded for eval
    mode, which clamps inputs to it and maps them the same way.  GPyTorch divides by :math:`b - a`, which is
    0 for one example or equal features (NaN inputs, then an out-of-range grid index).  Here such a batch,
    of value :math:`v`, records :math:`(v - (u - l)/2, v + (u - l)/2)` instead: the batch goes to the grid's
    centre, and inputs :math:`x` in eval mode to :math:`c + 0.95\\,(x - v)` (clamped to the grid's 0.95 box),
    one feature unit per grid unit (times GPyTorch's 0.95 margin), as if the features spanned the bounds.
    Batches with a range are mapped exactly as GPyTorch maps them (bit for bit).  The buffers and their
    names are GPyTorch's, so saved state loads either way.  Maps ``... x F`` to ``... x F``.

    The recorded :math:`(a, b)` is part of the trained model (a kernel on the features seen through it):
    :class:`~hybridpgm.gp.DeepKernelGP` records it when built and in its training steps (train mode: a step
    on the whole training data records the batch's range, a mini-batch step widens the recorded range to
    cover its batch, ``widen=True``), and keeps it when conditioned on other data.  In eval mode a feature
    outside :math:`[a, b]` is *clamped* to it, as GPyTorch's grid interpolation requires (a fixed grid refuses
    inputs outside its bounds): the GP sees it at the edge of the recorded range, so its prediction there is the
    one at the nearest edge.
    """

    def forward(self, x: torch.Tensor, widen: bool = False) -> torch.Tensor:
        """Scale ``x`` (``... x F``) into the grid's box.

        :param widen: in train mode, record (and map the batch with) the union of the recorded range and the
            batch's, :math:`[\\min(a, a_B), \\max(b, b_B)]`, instead of the batch's own range: a mini-batch step of
            :class:`~hybridpgm.gp.DeepKernelGP` (fewer rows than its training data), whose recorded range must
            not become the last batch's.  Ignored in eval mode.
        """
        if self.training and x.numel() == 0:  # no range to record (and nothing to scale)
            return x.clone()
        if self.training:
            min_val, max_val = x.min(), x.max()
            if widen:  # the gradient flows through the batch's minimum or maximum where it sets the range
                min_val, max_val = torch.minimum(self.min_val, min_val), torch.maximum(self.max_val, max_val)
            min_val, max_val = _padded(min_val, max_val, self.lower_bound, self.upper_bound)
            self.min_val.data = min_val
            self.max_val.data = max_val
        else:
            min_val = self.min_val
            max_val = self.max_val
            x = x.clamp(min_val, max_val)
        diff = max_val - min_val
        return (x - min_val) * (0.95 * (self.upper_bound - self.lower_bound) / diff) + 0.95 * self.lower_bound


def _padded(low: torch.Tensor, high: torch.Tensor, lower_bound: float,
            upper_bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A range ``(low, high)`` as recorded: unchanged where ``high > low``; where ``high == low`` (one example, equal
    features) widened by half the bounds' width each side, or at huge values by enough to stay distinct from the
    value.  No host read (``torch.where``)."""
    degenerate = high == low
    pad = torch.clamp(low.abs().detach() * (4 * torch.finfo(low.dtype).eps), min=0.5 * (upper_bound - lower_bound))
    return torch.where(degenerate, low - pad, low), torch.where(degenerate, high + pad, high)


class RunningScaleToGrid(ScaleToGrid):
    """:class:`ScaleToGrid` whose recorded range is the running minimum and maximum over every batch seen in
    train mode (for mini-batch training: SV-DKL on a grid), not the last batch's.

    In train mode a batch of range :math:`[a_B, b_B]` updates the record to
    :math:`[\\min(a, a_B), \\max(b, b_B)]` (the batch's own range for the first batch) and is mapped with it;
    eval mode maps (and clamps) with the record, so predictions do not depend on which batch came last (a
    last batch of one example, of equal features, or of part of the range).  The range only grows: features
    that drift during training keep the widest extent seen.  The buffer ``recorded`` (whether a batch was
    seen) is saved with ``min_val`` and ``max_val``; state saved before it existed loads as recorded.  In
    train mode the gradient flows through the batch's minimum or maximum where it sets the range (as it flows
    through GPyTorch's batch range), and the first batch is mapped as :class:`ScaleToGrid` maps it.
    """

    def __init__(self, lower_bound: float, upper_bound: float):
        super().__init__(lower_bound, upper_bound)
        self.register_buffer("recorded", torch.tensor(False))

    def forward(self, x: torch.Tensor, widen: bool = True) -> torch.Tensor:
        """Scale ``x`` (``... x F``) into the grid's box; ``widen`` is ignored (the range is always the running
        one)."""
        if self.training and x.numel() == 0:
            return x.clone()
        if self.training:  # no host read: the union is taken with torch.where
            recorded = self.recorded.clone()  # the flag is updated below, after autograd saved it
            low = torch.where(recorded, torch.minimum(self.min_val, x.min()), x.min())
            high = torch.where(recorded, torch.maximum(self.max_val, x.max()), x.max())
            low, high = _padded(low, high, self.lower_bound, self.upper_bound)
            self.min_val.data = low.detach()
            self.max_val.data = high.detach()
            self.recorded.fill_(True)
        else:
            low, high = self.min_val, self.max_val
            x = x.clamp(low, high)
        return (x - low) * (0.95 * (self.upper_bound - self.lower_bound) / (high - low)) + 0.95 * self.lower_bound

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "min_val" in state_dict and prefix + "recorded" not in state_dict:
            state_dict[prefix + "recorded"] = torch.tensor(True)  # saved by ScaleToGrid: a last batch's range
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
