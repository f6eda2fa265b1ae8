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


def test_a_prior_transposed_in_place_of_its_data_is_checked():
    """``prior.data = prior.t()``: the same storage, address and version; the memo keyed on those two kept the
    check of the prior before the transpose, whose 0.5 sat on the structural zero [0, 1] (left out), not on [1, 0]."""
    table = cpd.Table([[1.0, 0.0], [0.5, 0.5]], ["a"], prior=[[2.0, 0.5], [2.0, 2.0]])
    table.log_prior()  # the memo: no concentration below 1 on the support
    table.prior.data = table.prior.t()
    with pytest.raises(ModelSpecError, match=r"concentration 0\.5 < 1"):  # before: log_prior returned a value
        table.log_prior()


def test_a_mask_viewed_anew_at_the_same_address_and_version_is_read():
    """``support.data = view`` of other elements of the same storage (the memo's mask had no zero): the memo keyed
    on version and data pointer said "no structural zero", and the zero [1, 1] of the mask in place was not applied.
    """
    table = cpd.Table([[0.5, 0.5], [0.3, 0.7]], ["a"])
    base = torch.tensor([True, True, True, True, False])
    table.support.data = base[:4].view(2, 2)
    assert torch.isfinite(table.log_table()).all()  # the memo: no structural zero
    table.support.data = base.as_strided((2, 2), (3, 1))  # [[T, T], [T, F]] at the same address
    torch.testing.assert_close(table.log_table(), cpd.Table([[0.5, 0.5], [1.0, 0.0]], ["a"]).log_table(),
                               rtol=0, atol=0)

