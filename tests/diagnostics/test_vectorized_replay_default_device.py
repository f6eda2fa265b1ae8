"""``checked_rows`` with torch's default device set: its row mask and the permutation drawn from its own CPU
generator were made on the default device (``"meta"``: torch's raw error from ``nonzero``; ``"cuda"``: "Expected a
'cuda' device type for generator"), which stopped ``from_pyro_svi(..., parallel=True)``'s check.  Host rows
now, the same as without the default device."""

from __future__ import annotations

import torch

from hybridpgm.diagnostics.vectorized_replay import RANDOM_ROWS, checked_rows


def test_checked_rows_are_the_same_under_a_meta_default_device():
    draws = {"w": torch.randn(40, 3, generator=torch.Generator().manual_seed(0))}
    want = checked_rows(draws, 40)
    torch.set_default_device("meta")
    try:
        got = checked_rows(draws, 40)
    finally:
        torch.set_default_device(None)
    assert got == want and len(got) == 4 + RANDOM_ROWS  # first, last, the smallest and largest entries, random
