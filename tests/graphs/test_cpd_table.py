"""The factories of :class:`~hybridpgm.graphs.cpd.Table` (:mod:`hybridpgm.graphs.cpd_table`): ``uniform`` and
``random`` check their sizes, and ``random`` with a generator leaves every global generator alone."""

import numpy as np
import pytest
import torch

from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.graphs.cpd import Table


def _random_recording_cuda_seeds(monkeypatch, *args, **kwargs):
    """``(Table.random(*args, **kwargs), the seeds it gave CUDA's generators)``: ``torch.manual_seed`` seeds
    them (or, before CUDA starts, queues a seed for every device), recorded without a GPU."""
    calls = []
    with monkeypatch.context() as patch:
        patch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(("all", seed)))
        patch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(("current", seed)))
        table = Table.random(*args, **kwargs)
    return table, calls


@pytest.mark.parametrize("concentration", [1.0, 0.5, 2.0])
def test_random_with_a_generator_seeds_no_cuda_generator(monkeypatch, concentration):
    """Before, ``concentration != 1`` ran ``torch.manual_seed`` inside ``fork_rng(devices=[])``: the CUDA
    generators were seeded (or queued a seed) and not restored."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    first, calls = _random_recording_cuda_seeds(monkeypatch, 4, [3], ["a"], concentration=concentration,
                                                generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.rand(3), expected)  # the caller's CPU stream did not move
    assert calls == []
    again = Table.random(4, [3], ["a"], concentration=concentration, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first.probs, again.probs)
    assert torch.allclose(first.probs.sum(-1), torch.ones(3, dtype=first.probs.dtype))


FACTORIES = {"uniform": Table.uniform, "random": Table.random}


@pytest.mark.parametrize("factory", sorted(FACTORIES))
@pytest.mark.parametrize("args, argument", [
    ((0,), "cardinality"), ((-1,), "cardinality"), ((2.5,), "cardinality"), ((True,), "cardinality"),
    (("3",), "cardinality"), ((2, [-1], ["p"]), r"parent_cards\[0\]"), ((2, [3, 0], ["p", "q"]), r"parent_cards\[1\]"),
    ((2, [2.5], ["p"]), r"parent_cards\[0\]"), ((2, 3, ["p"]), "parent_cards"),
])
def test_bad_sizes_raise_a_named_model_spec_error(factory, args, argument):
    """Before: ZeroDivisionError, TypeError or RuntimeError from torch."""
    with pytest.raises(ModelSpecError, match=rf"Table\.{factory} {argument} must be"):
        FACTORIES[factory](*args)


@pytest.mark.parametrize("parent_cards", [[3], (3,), torch.Size([3]), np.array([3]), torch.tensor([3])])
def test_sizes_of_any_integer_sequence_pass(parent_cards):
    for factory in FACTORIES.values():
        assert factory(np.int64(2), parent_cards, ["p"]).probs.shape == (3, 2)
    assert torch.allclose(Table.uniform(2, parent_cards, ["p"]).probs, torch.full((3, 2), 0.5))


def test_random_refuses_a_generator_that_is_not_one():
    with pytest.raises(ConfigError, match="Table.random generator must be a torch.Generator or None, got int"):
        Table.random(2, generator=3)


def test_a_new_support_mask_at_the_old_ones_address_and_version_is_read_again():
    """The structural-zero memo compares the mask itself, not only its (version, address): a new mask on the old
    one's storage at the same version (here a view of other strides; a freed mask's address reused by its
    replacement is the same case) is read again, so its zero is kept."""
    storage = torch.tensor([True, True, True, True, True, False])
    table = Table([[0.2, 0.3, 0.5], [0.1, 0.3, 0.6]], ["a"], learnable=False)
    table.support = storage.as_strided((2, 3), (0, 1))  # rows [T, T, T]: no zero
    torch.testing.assert_close(table.probs, torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.3, 0.6]]))
    table.support = storage.view(2, 3)  # row 1 [T, T, F]: same data pointer, same version counter
    torch.testing.assert_close(table.probs, torch.tensor([[0.2, 0.3, 0.5], [0.25, 0.75, 0.0]]))


def test_a_new_support_mask_at_the_old_ones_address_and_version_is_checked_against_the_prior_again():
    """As above for the memo of the prior's alpha < 1 check: the new mask lets a state of alpha 0.5 in, which
    has no MAP, so ``log_prior`` refuses it."""
    storage = torch.tensor([True, True, True, True, True, False])
    table = Table([[0.2, 0.3, 0.5], [0.1, 0.3, 0.6]], ["a"], prior=[[2.0, 2.0, 2.0], [2.0, 2.0, 0.5]])
    table.support = storage.view(2, 3)  # the alpha of 0.5 is on a structural zero: left out
    table.log_prior()
    table.support = storage.as_strided((2, 3), (0, 1))  # same data pointer and version: that state is in
    with pytest.raises(ModelSpecError, match="Dirichlet prior concentration 0.5 < 1"):
        table.log_prior()


def test_random_with_a_generator_holds_the_global_state_lock_while_it_reseeds(monkeypatch):
    """Found by an audit: ``concentration != 1`` with a generator forked and reseeded torch's CPU generator without
    hybridpgm's lock, so another thread's seeded scope (``GAN.sample(generator=...)``) could reseed or rewind it
    before the Dirichlet draw (4 of 400 tables differed from the seed's with such a thread running).  The draw now
    runs holding the lock; the table is still the seed's."""
    from hybridpgm.global_state_lock import held_depth

    depths, sample = [], torch.distributions.Dirichlet.sample

    def recording(self, *args, **kwargs):
        depths.append(held_depth())
        return sample(self, *args, **kwargs)

    expected = Table.random(4, [3], ["x"], concentration=0.5, generator=torch.Generator().manual_seed(0)).log_table()
    monkeypatch.setattr(torch.distributions.Dirichlet, "sample", recording)
    outside = held_depth()
    table = Table.random(4, [3], ["x"], concentration=0.5, generator=torch.Generator().manual_seed(0))
    assert depths == [outside + 1] and torch.equal(table.log_table(), expected)
