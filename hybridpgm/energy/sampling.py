"""Fast Bernoulli sampling shared by the Boltzmann machines.

``torch.rand_like(p) < p`` draws the same distribution as ``torch.bernoulli(p)``
and is several times faster on CPU, which matters inside Gibbs chains.
"""

from __future__ import annotations

import torch

__all__ = ["bernoulli"]


def bernoulli(probs: torch.Tensor) -> torch.Tensor:
    """A 0/1 sample (same shape, dtype and device as ``probs``) with :math:`P(x = 1) = ` ``probs``."""
    return (torch.rand_like(probs) < probs).to(probs.dtype)
