"""Fast Bernoulli sampling shared by the Boltzmann machines.

``torch.rand_like(p) < p`` draws the same distribution as ``torch.bernoulli(p)``
and is several times faster on CPU, which matters inside Gibbs chains.  The
comparison is written in place into the uniform draws (``u.lt_(p)`` stores
:math:`\\mathbb 1[u < p]` as 0/1 in ``u``'s floating dtype), which gives the
same numbers as ``(u < p).to(p.dtype)`` without the boolean temporary and
the conversion pass.
"""

from __future__ import annotations

import torch

__all__ = ["bernoulli"]


def bernoulli(probs: torch.Tensor) -> torch.Tensor:
    """A 0/1 sample (same shape, dtype and device as ``probs``) with :math:`P(x = 1) = ` ``probs``.

    The sample carries no gradient (``probs`` is detached), as ``torch.bernoulli``'s.
    """
    return torch.rand_like(probs).lt_(probs.detach())
