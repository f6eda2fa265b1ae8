"""The checks of :class:`~hybridpgm.recipes.models.CRFTagger`'s inputs, the model the CLI's crf run saves.

Found by the serving audit: a symbol id outside the vocabulary raised torch's ``IndexError: index out of range in
self``, float ids and a list of lengths raw torch errors, 0-d or wrong-size lengths an IndexError or a broadcast
error."""

from __future__ import annotations

import pytest
import torch

import hybridpgm
from hybridpgm.errors import DataError
from hybridpgm.infer.crf_likelihood import CRFLikelihood
from hybridpgm.recipes.models import CRFTagger
from hybridpgm.train.deferred_checks import deferring_checks

X = torch.tensor([[1, 2, 3, 4], [6, 5, 0, 0]])
LENGTHS = torch.tensor([4, 2])


def _tagger() -> CRFTagger:
    torch.manual_seed(0)
    return CRFTagger(num_symbols=7, num_labels=3, hidden=8)


@pytest.mark.parametrize("x, lengths, message", [
    (torch.tensor([[1, 2, 7, 4]]), torch.tensor([4]),
     "'x' must lie in 0..6 (the tagger's vocabulary of 7 symbols), got 7 at row 0, position 2 of the x given (in "
     "fit, a batch) (ids in [1, 7])"),
    (torch.tensor([[1, -1, 3, 4]]), torch.tensor([4]),
     "got -1 at row 0, position 1 of the x given (in fit, a batch) (ids in [-1, 4])"),
    (X.float(), LENGTHS, "integer symbol ids in 0..6 (7 symbols), got shape (2, 4) and dtype torch.float32"),
    (X.bool(), LENGTHS, "got shape (2, 4) and dtype torch.bool"),
    (X[0], LENGTHS, "must be an N x T tensor of integer symbol ids in 0..6 (7 symbols), got shape (4,)"),
    (X.tolist(), LENGTHS, "symbol ids 'x' must be an N x T tensor of integer symbol ids in 0..6 (7 symbols), got list"),
    (X, torch.tensor(4), "'lengths' must be a tensor of shape (2,) (one integer length per row of x (2, 4)), got "
                         "shape () and dtype torch.int64"),
    (X, torch.tensor([4, 2, 1]), "got shape (3,) and dtype torch.int64"),
    (X, [4, 2], "'lengths' must be a tensor of shape (2,) (one integer length per row of x (2, 4)), got list"),
    (X, LENGTHS.float(), "got shape (2,) and dtype torch.float32"),
])
def test_bad_inputs_raise_a_data_error_naming_them(x, lengths, message):
    with pytest.raises(DataError) as caught:
        _tagger()(x, lengths)
    assert message in str(caught.value)


def test_integer_ids_of_any_width_give_the_same_chain():
    tagger = _tagger()
    reference = tagger(X, LENGTHS).log_partition
    for dtype in (torch.int32, torch.int16, torch.uint8):
        assert torch.equal(tagger(X.to(dtype), LENGTHS.to(dtype)).log_partition, reference)


def test_inside_fits_step_the_range_check_is_deferred_and_the_embedding_stays_inside():
    """Inside fit's step the range check rides along with the step's one read (a read of its own on the CPU
    doubled the step's reads): the embedding must not index outside the vocabulary meanwhile (on a GPU a
    device-side assert), and the check raises its DataError."""
    tagger = _tagger()
    with deferring_checks() as pending:
        tagger(torch.tensor([[1, 2, 7, 4]]), torch.tensor([4]))  # no IndexError here
    with pytest.raises(DataError, match="got 7 at row 0, position 2"):
        pending.raise_first_failure()


def test_fit_names_an_id_outside_the_vocabulary():
    tagger = _tagger()
    x = X.clone()
    x[1, 1] = 9
    y = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(DataError, match=r"must lie in 0\.\.6 .*got 9 at row 1, position 1"):
        hybridpgm.fit(CRFLikelihood(tagger), (x, y, LENGTHS), max_steps=1, batch_size=2, progress=False, seed=0)


def test_the_row_named_is_the_batchs():
    """Review: inside a shuffled fit the row named is the batch's, not the data set's: the message says so."""
    with pytest.raises(DataError, match=r"got 7 at row 0, position 2 of the x given \(in fit, a batch\)"):
        _tagger()(torch.tensor([[1, 2, 7, 4]]), torch.tensor([4]))
