"""``ADA.paired_data`` with torch's default device set: the target permutation, drawn from a CPU generator, was
made on the default device (``"meta"``: torch's raw "Cannot copy out of meta tensor"; ``"cuda"``: "Expected a
'cuda' device type for generator").  It is a host index now: the same pairs as without the default device."""

from __future__ import annotations

import torch

from hybridpgm.infer.adversarial import ADA


def test_paired_data_gives_the_same_cpu_pairs_under_a_meta_default_device():
    xs, ys, xt = torch.randn(10, 3), torch.randint(0, 2, (10,)), torch.randn(4, 3)
    want = ADA.paired_data(xs, ys, xt, seed=5)
    torch.set_default_device("meta")
    try:
        got = ADA.paired_data(xs, ys, xt, seed=5)
    finally:
        torch.set_default_device(None)
    assert all(a.device.type == "cpu" and torch.equal(a, b) for a, b in zip(got, want))
