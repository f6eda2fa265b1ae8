"""The table cache of exact BN queries (hybridpgm.infer.bn_factors.node_table) after ``.data =`` replacements.

Found by an audit: the cache keyed a table on its version counter and data pointer.  ``logits.data = new`` moves
no version counter, and the old storage was freed, so a second replacement allocated at the old address (CUDA's
caching allocator does that at once; tests/reused_blocks.Blocks does it every time) had the key the table was
cached under, and queries answered from the old table, without an error.  The cache entry now holds the storage
it read, whose address nothing else can take while it lives."""

import pytest
import torch

from hybridpgm.graphs import BayesNet, cpd
from tests.reused_blocks import Blocks


def _net(first, learnable):
    return (BayesNet().add("rain", cpd.Table(first, learnable=learnable))
            .add("wet", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["rain"], learnable=learnable)))


@pytest.mark.parametrize("learnable", [True, False], ids=["parameter", "buffer"])
def test_a_replacement_at_the_address_of_the_cached_table_is_read(learnable):
    bn, blocks = _net([0.8, 0.2], learnable), Blocks(64)
    logits = bn.cpds["rain"].logits
    ev = {"wet": torch.tensor([1, 0])}
    with torch.no_grad():
        logits.data = blocks.tensor(torch.tensor([0.8, 0.2]).log())
        torch.testing.assert_close(bn.posterior("rain", ev), _net([0.8, 0.2], learnable).posterior("rain", ev),
                                   rtol=0, atol=0)  # the table cached
        logits.data = blocks.tensor(torch.tensor([0.5, 0.5]).log())  # frees the cached table's storage
        logits.data = blocks.tensor(torch.tensor([0.1, 0.9]).log())  # (was put at its address)
        want = _net([0.1, 0.9], learnable)
        # before: p(rain | wet = 1) = [0.3333, 0.6667], the old table's answer, against [0.0137, 0.9863]
        torch.testing.assert_close(bn.posterior("rain", ev), want.posterior("rain", ev), rtol=0, atol=0)
        torch.testing.assert_close(bn.log_evidence(ev), want.log_evidence(ev), rtol=0, atol=0)


_CYCLE = [[0.7, 0.2, 0.1], [0.1, 0.7, 0.2], [0.2, 0.1, 0.7]]  # rows and columns sum to 1: so does the transpose


@pytest.mark.parametrize("learnable", [True, False], ids=["parameter", "buffer"])
def test_a_square_table_transposed_in_place_of_its_data_is_read(learnable):
    """``logits.data = logits.t()`` puts a view of the same storage in place, at the same address and version: the
    cache keyed on those two answered from the table before the transpose.  It keys the strides too now."""
    def net(probs):
        return (BayesNet().add("rain", cpd.Table([0.5, 0.3, 0.2], learnable=learnable))
                .add("wet", cpd.Table(probs, ["rain"], learnable=learnable)))

    bn, ev = net(_CYCLE), {"wet": torch.tensor([1, 2])}
    with torch.no_grad():
        bn.posterior("rain", ev)  # the table cached
        logits = bn.cpds["wet"].logits
        logits.data = logits.t()
        want = net(torch.tensor(_CYCLE).t())
        # before: p(rain | wet = 1) = [0.3030, 0.6364, 0.0606], the table before the transpose, against
        # [0.1667, 0.7000, 0.1333]
        torch.testing.assert_close(bn.posterior("rain", ev), want.posterior("rain", ev), rtol=0, atol=0)
        torch.testing.assert_close(bn.log_evidence(ev), want.log_evidence(ev), rtol=0, atol=0)
