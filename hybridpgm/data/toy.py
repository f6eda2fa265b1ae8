"""Toy 2-D data for generative models: the ring of Gaussians.

The standard mode-collapse benchmark of [1, 2]: an equal mixture of
``num_modes`` isotropic Gaussians of standard deviation ``std`` whose means lie
evenly on a circle of radius ``radius``.

References:

1. L. Metz, B. Poole, D. Pfau, J. Sohl-Dickstein, *Unrolled Generative
   Adversarial Networks*, ICLR 2017.
2. A. Srivastava, L. Valkov, C. Russell, M. U. Gutmann, C. Sutton, *VEEGAN:
   Reducing Mode Collapse in GANs using Implicit Variational Learning*, NeurIPS 2017.
"""

from __future__ import annotations

import math

import torch

from hybridpgm.checks import flag, generator_or_none, positive_int, positive_real, sample_count
from hybridpgm.keyword_alias import keyword_only_soon

__all__ = ["ring_centers", "ring_of_gaussians"]


def ring_centers(num_modes: int = 8, radius: float = 2.0, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """``num_modes x 2`` means :math:`r(\\cos 2\\pi k/K, \\sin 2\\pi k/K)`, in ``dtype`` (``None``: torch's default
    dtype, as :func:`ring_of_gaussians`' draws) on ``device`` (``None``: torch's default device).

    :raises ConfigError: ``num_modes`` is not a positive integer (``bool`` and floats refused) or
        ``radius`` is not a finite number > 0.
    """
    num_modes = positive_int(num_modes, "ring num_modes")
    radius = positive_real(radius, "ring radius")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    angles = torch.arange(num_modes, dtype=dtype, device=device) * (2 * math.pi / num_modes)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=-1)


@keyword_only_soon("generator", "return_modes")
def ring_of_gaussians(n: int, num_modes: int = 8, radius: float = 2.0, std: float = 0.05, *,
                      generator: torch.Generator | None = None, return_modes: bool = False):
    """``n x 2`` draws from the ring mixture in torch's default dtype (float32 unless set otherwise), on the CPU
    whatever torch's default device (move them as needed).

    :param n: the number of draws, a non-negative integer (``0``: an empty ``0 x 2`` result, as other samplers).
    :param generator: a CPU :class:`torch.Generator` for reproducible draws (``None``: torch's global stream);
        keyword-only, as every sampler's (by position, after ``std``, it still works for one release, with a
        :class:`FutureWarning`).
    :param return_modes: also return the ``n`` component indices (``True`` or ``False``); keyword-only (by
        position, after ``generator``, with a :class:`FutureWarning` for one release).
    :raises ConfigError: ``n`` is not a non-negative integer or ``num_modes`` not a positive integer (``bool``
        and floats refused), ``radius`` or ``std`` is not a finite number > 0, ``return_modes`` is not a
        ``bool``, or ``generator`` is neither a :class:`torch.Generator` nor ``None`` (a seed).
    """
    return_modes = flag(return_modes, "ring_of_gaussians return_modes")
    n = sample_count(n, "ring_of_gaussians n")
    num_modes = positive_int(num_modes, "ring_of_gaussians num_modes")
    std = positive_real(std, "ring_of_gaussians std")
    generator = generator_or_none(generator, "ring_of_gaussians generator")
    modes = torch.randint(num_modes, (n,), generator=generator, device="cpu")  # the CPU generator's device
    noise = torch.randn(n, 2, generator=generator, device="cpu")
    x = ring_centers(num_modes, radius, device="cpu")[modes] + std * noise
    return (x, modes) if return_modes else x
