"""A chain MRF whose pairwise tables all carry one constant: the inputs of the shift-invariance tests.

Every entry is a multiple of 1/64 below 4 in size, so an entry plus a power of two up to :math:`2^{16}` is exact in
float32 (24 significant bits): a float32 answer's error is the algorithm's rounding, not the input's.  A constant
:math:`c` added to each of the :math:`n-1` pairwise tables moves :math:`\\log Z` and every score by exactly
:math:`(n-1)c` and leaves :math:`\\log p(x)`, the marginals and the entropy as they are.
"""

import torch

from hybridpgm.graphs import MarkovNet


def chain_tables(n: int = 8, card: int = 3, seed: int = 1) -> tuple[list, list]:
    """``(pairwise [card, card] * (n-1), unary [card] * n)`` float64 tables, multiples of 1/64."""
    g = torch.Generator().manual_seed(seed)
    pair = [torch.round(torch.randn(card, card, generator=g, dtype=torch.float64) * 64) / 64 for _ in range(n - 1)]
    unary = [torch.round(torch.randn(card, generator=g, dtype=torch.float64) * 64) / 64 for _ in range(n)]
    return pair, unary


def shifted_chain(pair: list, unary: list, dtype: torch.dtype, shift: float = 0.0,
                  learn: bool = False) -> MarkovNet:
    """The chain ``x0 - x1 - ...`` of those tables in ``dtype``, every pairwise table plus ``shift`` (learnable
    :class:`~torch.nn.Parameter` where ``learn``: ``m.parameters()`` are the pairwise tables, in chain order)."""
    m = MarkovNet({f"x{i}": unary[i].shape[0] for i in range(len(unary))})
    for i, t in enumerate(pair):
        t = (t + shift).to(dtype)
        m.add_factor(f"p{i}", [f"x{i}", f"x{i + 1}"], torch.nn.Parameter(t) if learn else t)
    for i, u in enumerate(unary):
        m.add_factor(f"u{i}", [f"x{i}"], u.to(dtype))
    return m
