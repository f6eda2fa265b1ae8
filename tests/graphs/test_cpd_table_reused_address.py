"""The memos of a Table (its structural zeros, its prior's check) after ``.data =`` replacements.

Found by an audit: the memos keyed the mask and the prior on their version counter and data pointer.  ``.data =``
moves no version counter and frees the old storage, so a second replacement allocated at the old address (CUDA's
caching allocator does that at once; tests/reused_blocks.Blocks does it every time) had the memo's key, and the
table answered from the old tensor's memo.  A memo now holds the storages it read."""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import cpd
from tests.reused_blocks import Blocks


def test_a_mask_put_at_the_address_of_the_memo_s_mask_is_read():
    table, blocks = cpd.Table([[0.5, 0.5], [0.3, 0.7]], ["a"]), Blocks(16)
    table.support.data = blocks.tensor(torch.ones(2, 2, dtype=torch.bool))
    assert torch.isfinite(table.log_table()).all()  # the memo: no structural zero
    table.support.data = blocks.tensor(torch.ones(2, 2, dtype=torch.bool))  # frees the memo's mask
    table.support.data = blocks.tensor(torch.tensor([[True, True], [True, False]]))  # (was put at its address)
    # before: [[0.5, 0.5], [0.3, 0.7]], the zero at [1, 1] not applied
    torch.testing.assert_close(table.log_table(), cpd.Table([[0.5, 0.5], [1.0, 0.0]], ["a"]).log_table(),
                               rtol=0, atol=0)


def test_a_prior_put_at_the_address_of_the_checked_prior_is_checked():
    table, blocks = cpd.Table([0.5, 0.5], prior=[2.0, 2.0]), Blocks(16)
    table.prior.data = blocks.tensor(torch.tensor([2.0, 2.0]))
    table.log_prior()  # the memo: no concentration below 1
    table.prior.data = blocks.tensor(torch.tensor([3.0, 3.0]))  # frees the memo's prior
    table.prior.data = blocks.tensor(torch.tensor([0.5, 0.5]))  # (was put at its address)
    with pytest.raises(ModelSpecError, match=r"concentration 0\.5 < 1"):  # before: log_prior returned -0.4516
        table.log_prior()


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_reads_its_memos_afresh_once_the_original_is_gone(how):
    """A copy's memo keys named the original's data pointers without holding its storage (review): once the
    original was freed, a mask put at its address matched the copy's key, and the zero at [1, 1] was not applied."""
    import copy
    import gc
    import pickle

    blocks = Blocks(16)
    table = cpd.Table([[0.5, 0.5], [0.3, 0.7]], ["a"])
    table.support.data = blocks.tensor(torch.ones(2, 2, dtype=torch.bool))
    table.support.copy_(torch.ones(2, 2, dtype=torch.bool))  # version 1, as the copy's own mask will have
    assert torch.isfinite(table.log_table()).all()  # the memo: no structural zero
    copied = copy.deepcopy(table) if how == "deepcopy" else pickle.loads(pickle.dumps(table))
    del table
    gc.collect()
    copied.support.data = blocks.tensor(torch.tensor([[True, True], [True, False]]))  # at the original's address
    torch.testing.assert_close(copied.log_table(), cpd.Table([[0.5, 0.5], [1.0, 0.0]], ["a"]).log_table(),
                               rtol=0, atol=0)
