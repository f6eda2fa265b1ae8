"""The per-colour gather plans: every incidence in exactly one block, and the block's logits bit-for-bit the rows
of the full recomputation (:meth:`ChromaticGibbs.conditional_logits`)."""

import pytest
import torch

from hybridpgm.infer import ChromaticGibbs
from hybridpgm.infer.mrf_colour_blocks import block_logits, colour_blocks
from tests.infer.mrf_gibbs_cases import graphs


def _random_states(fg, num_chains: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(num_chains, fg.batch_size, fg.num_vars, generator=g)
    return (u * fg.cardinalities).long()


@pytest.mark.parametrize("name", list(graphs()))
def test_block_logits_are_the_rows_of_the_full_conditionals_bit_for_bit(name):
    fg = graphs()[name]
    x = _random_states(fg, 4, 0)
    full = ChromaticGibbs.conditional_logits(fg, x)
    theta = fg.masked_unary()
    for block in colour_blocks(fg):
        got = block_logits(fg, theta, block, x)
        assert got.shape == (4, fg.batch_size, block.variables.numel(), fg.num_states)
        assert torch.equal(got, full[:, :, block.variables])


@pytest.mark.parametrize("name", list(graphs()))
def test_blocks_partition_the_coloured_variables_and_incidences(name):
    fg = graphs()[name]
    colors = fg.colors if fg.colors is not None else torch.arange(fg.num_vars)
    blocks = colour_blocks(fg)
    assert len(blocks) == int(colors.max()) + 1
    for c, block in enumerate(blocks):
        assert torch.equal(block.variables, (colors == c).nonzero().reshape(-1))
    for gi, g in enumerate(fg.groups):
        count = sum(int(b.groups[gi].local.numel()) for b in blocks)
        assert count == g.variables.numel()  # every (factor, argument) pair once


def test_a_colour_without_variables_has_an_empty_block():
    fg = graphs()["colors_with_gaps"]
    blocks = colour_blocks(fg)
    empty = blocks[0]
    assert empty.variables.numel() == 0 and all(inc.local.numel() == 0 for inc in empty.groups)
    x = _random_states(fg, 2, 1)
    assert block_logits(fg, fg.masked_unary(), empty, x).shape == (2, fg.batch_size, 0, fg.num_states)
