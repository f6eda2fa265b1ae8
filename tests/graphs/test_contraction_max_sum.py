"""max_sum (the MAP step) reduces block by block: the same value, argmax, tie-breaking and gradient as one
``max`` over the whole broadcast sum, with memory of the order of the step's output."""

import random

import pytest
import torch


import hybridpgm.graphs.contraction_steps as steps
from hybridpgm.graphs.contraction_steps import max_sum
from tests.graphs.largest_tensor import LargestTensor


def naive_max_sum(args, ins, out):
    """The reference: form the broadcast sum over every dim of the step, then one ``max`` over the summed-out
    ones (the first maximum wins a tie)."""
    union = list(out) + sorted({d for dims in ins for d in dims} - set(out), key=str)
    total = None
    for t, dims in zip(args, ins):
        perm = sorted(range(len(dims)), key=lambda i: union.index(dims[i]))
        t = t.permute(perm)
        present = {dims[i] for i in perm}
        it = iter(t.shape)
        t = t.reshape([next(it) if d in present else 1 for d in union])
        total = t if total is None else total + t
    if total.dim() == len(out):
        return total.clone() if len(args) == 1 else total
    return total.reshape(*total.shape[:len(out)], -1).max(-1).values


def random_step(rng: random.Random, gen: torch.Generator):
    """Two (or one) operands over up to six named dims of sizes 1-3, values from a small set (ties) with some
    -inf entries, and an output of some of their dims."""
    names = [f"v{i}" for i in range(rng.randint(2, 6))]
    sizes = {d: rng.randint(1, 3) for d in names}
    ins = []
    for _ in range(rng.choice([1, 2, 2, 2])):
        dims = tuple(rng.sample(names, rng.randint(1, len(names))))
        ins.append(dims)
    held = sorted({d for dims in ins for d in dims})
    out = tuple(rng.sample(held, rng.randint(0, len(held))))
    args = []
    for dims in ins:
        shape = [sizes[d] for d in dims]
        t = torch.randint(0, 3, shape, generator=gen).double()  # few distinct values: many ties
        t[torch.rand(shape, generator=gen) < 0.2] = float("-inf")
        args.append(t.requires_grad_())
    return args, ins, out


@pytest.mark.parametrize("chunk", [1, 4, 1 << 20])
def test_max_sum_equals_one_max_over_the_broadcast_sum(monkeypatch, chunk):
    """Values, and the gradients (which configuration wins each output, ties included), equal the naive
    reference's exactly, for blocks of every size (a chunk of 1 walks every summed-out configuration alone)."""
    monkeypatch.setattr(steps, "MAX_SUM_CHUNK_ELEMENTS", chunk)
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    for _ in range(300):
        args, ins, out = random_step(rng, gen)
        got = max_sum(args, ins, out)
        want = naive_max_sum(args, ins, out)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        weights = torch.randint(1, 5, want.shape, generator=gen).double()  # integers: any order of adding is exact
        finite = want.isfinite()  # an all -inf output has no maximising configuration to send a gradient to
        if not finite.any():
            continue
        g_got = torch.autograd.grad((got[finite] * weights[finite]).sum(), args, allow_unused=True)
        g_want = torch.autograd.grad((want[finite] * weights[finite]).sum(), args, allow_unused=True)
        for a, b in zip(g_got, g_want):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("chunk", [1 << 12, 1 << 14])
def test_max_sum_never_forms_the_whole_broadcast_sum(monkeypatch, chunk):
    """A step with a 2^10 output and 2^10 summed-out configurations: one max over the broadcast sum forms a
    tensor of 2^20 entries (what the memory guards, which count outputs, never saw); block by block no tensor
    exceeds max(output, MAX_SUM_CHUNK_ELEMENTS)."""
    monkeypatch.setattr(steps, "MAX_SUM_CHUNK_ELEMENTS", chunk)
    gen = torch.Generator().manual_seed(0)
    shared = tuple(f"r{i}" for i in range(8))
    ins = [tuple(f"o{i}" for i in range(5)) + shared + ("a",), tuple(f"o{i}" for i in range(5, 10)) + shared + ("b",)]
    out = tuple(f"o{i}" for i in range(10))
    args = [torch.randn([2] * 14, generator=gen, dtype=torch.float64, requires_grad=True) for _ in ins]
    want = naive_max_sum(args, ins, out)
    with LargestTensor() as seen:
        got = max_sum(args, ins, out)
        grads = torch.autograd.grad(got.sum(), args)
    assert seen.largest <= max(chunk, want.numel(), *(a.numel() for a in args)) < 1 << 20  # inputs: 2^14
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    for g, h in zip(grads, torch.autograd.grad(want.sum(), args)):
        torch.testing.assert_close(g, h, rtol=0, atol=0)
