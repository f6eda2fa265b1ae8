"""The labels a :class:`~hybridpgm.graphs.LinearChainCRF` scores: integer label sequences that end in its event
shape ``(T,)`` and broadcast with its batch shape, each label (within its sequence's length) in ``0..L-1``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hybridpgm.errors import EvidenceError

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.crf import LinearChainCRF

__all__ = ["check_labels"]


def check_labels(crf: "LinearChainCRF", value: torch.Tensor) -> None:
    """Check labels ``value`` of ``crf`` that broadcast with its ``batch_shape + (T,)`` (extra leading dims are
    sample or particle dims), as :meth:`LinearChainCRF.score <hybridpgm.graphs.LinearChainCRF.score>` takes them.

    :raises EvidenceError: a value that does not end in ``(T,)``, does not broadcast with the batch shape,
        is not integer, or (with validation on) holds a label outside ``0..L-1`` at a position within its
        sequence's length, naming the shapes or the label and its index; a value that is not a tensor, naming
        its type.
    """
    if not torch.is_tensor(value):
        raise EvidenceError(f"LinearChainCRF: labels must be a torch.Tensor of label indices, got "
                            f"{type(value).__name__} (convert it: torch.as_tensor(labels))")
    if value.shape[-1:] != crf.event_shape:
        raise EvidenceError(f"LinearChainCRF: labels must end in {tuple(crf.event_shape)}, "
                            f"got shape {tuple(value.shape)}")
    try:
        torch.broadcast_shapes(value.shape[:-1], crf.batch_shape)
    except RuntimeError:
        raise EvidenceError(f"LinearChainCRF: labels of shape {tuple(value.shape)} do not broadcast with the "
                            f"batch shape {tuple(crf.batch_shape)} + event shape {tuple(crf.event_shape)}"
                            ) from None
    if value.dtype.is_floating_point and bool(((value != value.round()) | value.isinf()).any()):
        raise EvidenceError("LinearChainCRF: labels must be integers (finite, integer-valued)")
    if crf._validate_args:
        value, mask = torch.broadcast_tensors(value, crf._mask())
        bad = mask & ((value < 0) | (value >= crf.num_labels))
        if bool(bad.any()):
            pos = bad.nonzero()[0].tolist()
            raise EvidenceError(f"LinearChainCRF: label {value[tuple(pos)].item()} at index {pos} is outside "
                                f"the label set 0..{crf.num_labels - 1}")
