"""The ``lengths`` argument of the sequence models (:class:`~hybridpgm.graphs.LinearChainCRF`,
:func:`~hybridpgm.data.hmm_tagging.hmm_posterior`) as a tensor, read the same way by both."""

from __future__ import annotations

import torch

from hybridpgm.checks import torch_readable

__all__ = ["lengths_tensor"]


def lengths_tensor(lengths, batch_shape: torch.Size, steps: int, device: torch.device, what: str,
                   error: type[Exception], lowest: int = 1) -> torch.Tensor:
    """``lengths`` as a tensor on ``device``: ``None`` is every sequence at its full length ``steps``
    (``[*batch_shape]`` of ``steps``, int64); a pandas ``Series`` gives its values
    (:func:`~hybridpgm.checks.torch_readable`), whatever its index.  The lengths are one number per sequence:
    a shape that broadcasting would *enlarge* ``batch_shape`` with -- a column ``[B, 1]`` against ``[B]``
    sequences, which would score every sequence at every length as a ``[B, B]`` batch -- is refused.  The values
    themselves (integers in ``lowest..steps``) and a shape that does not broadcast at all are the caller's to
    check.

    :param what: the call, as the messages name it (``"LinearChainCRF"``).
    :param error: the exception type for what torch cannot read as a tensor.
    :param lowest: the shortest length the caller takes, as its messages name the range (default 1; 0 where an
        empty sequence is defined).
    :raises error: ``lengths`` is not a tensor, a number, or a nested sequence of numbers, or its shape enlarges
        ``batch_shape`` (named with both shapes)."""
    if lengths is None:
        return torch.full(batch_shape, steps, dtype=torch.long, device=device)
    lengths = torch_readable(lengths, f"{what} lengths")
    try:
        lengths = torch.as_tensor(lengths, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise error(f"{what}: lengths must be integers in {lowest}..{steps}, got {type(lengths).__name__}"
                    f" of dtype {getattr(lengths, 'dtype', None)}: {lengths!r:.60}") from None
    try:
        enlarged = torch.broadcast_shapes(batch_shape, lengths.shape) != batch_shape
    except RuntimeError:  # no broadcast at all: the caller's message names its other shapes
        enlarged = False
    if enlarged:
        raise error(f"{what}: lengths of shape {tuple(lengths.shape)} would enlarge the sequences' batch shape "
                    f"{tuple(batch_shape)} to {tuple(torch.broadcast_shapes(batch_shape, lengths.shape))}: give "
                    f"one length per sequence (a column [B, 1]: lengths.reshape(-1))")
    return lengths
