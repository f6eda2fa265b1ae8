import functools

import pytest
import torch
from torch import nn

from hybridpgm import fit
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.graphs import CRFHead
from hybridpgm.infer.crf_likelihood import CRFLikelihood, token_accuracy


class _Tagger(nn.Module):
    def __init__(self, symbols=4, labels=3):
        super().__init__()
        self.emit = nn.Embedding(symbols, labels)
        self.head = CRFHead(labels)

    def forward(self, x, lengths):
        return self.head(self.emit(x), lengths)


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (16, 6), generator=g)
    y = x % 3  # a deterministic tagging rule the model can learn
    return x, y, torch.full((16,), 6)


def test_loss_is_the_negative_mean_conditional_log_likelihood_and_fit_lowers_it():
    torch.manual_seed(0)
    tagger, batch = _Tagger(), _batch()
    objective = CRFLikelihood(tagger)
    x, y, lengths = batch
    assert torch.allclose(objective.loss("crf", batch), -tagger(x, lengths).log_prob(y).mean())
    before = float(objective.loss("crf", batch))
    fit(objective, batch, epochs=30, batch_size=16, progress=False, seed=0,
        optim=functools.partial(torch.optim.Adam, lr=0.1))
    assert float(objective.loss("crf", batch)) < before - 1.0


def test_token_accuracy_ignores_padding():
    y = torch.tensor([[1, 2, 0], [1, 1, 0]])
    pred = torch.tensor([[1, 0, 2], [1, 1, 2]])
    assert token_accuracy(pred, y, torch.tensor([2, 2])) == pytest.approx(3 / 4)


def test_a_batch_that_is_not_x_y_lengths_is_named():
    with pytest.raises(DataError, match=r"\(x, y, lengths\)"):
        CRFLikelihood(_Tagger()).loss("crf", torch.zeros(2, 3))


class _OneHotTagger(nn.Module):
    """Unary scores straight from the symbols: ``one_hot`` gives int64 (a ``.float()`` forgotten)."""

    def __init__(self, labels=3):
        super().__init__()
        self.head = CRFHead(labels)

    def forward(self, x, lengths):
        return self.head(nn.functional.one_hot(x % 3, 3), lengths)


def test_a_tagger_of_integer_scores_is_refused_naming_the_unary_and_its_dtype():
    """Found by the CRF audit (finding 2): integer unary scores were widened to float32 silently (inexactly past
    2**24); the loss now raises :class:`~hybridpgm.errors.ModelSpecError` from the CRF's construction."""
    with pytest.raises(ModelSpecError, match="unary log-potentials must be real floating-point scores, got dtype "
                                             "torch.int64"):
        CRFLikelihood(_OneHotTagger()).loss("crf", _batch())


@pytest.mark.parametrize("pred, y, lengths, match", [
    (torch.zeros(2, 3).long(), torch.zeros(2, 3).long(), torch.tensor([0, 0]), r"no real token \(lengths \[0, 0\]"),
    (torch.zeros(2, 3).long(), torch.zeros(2, 3).long(), torch.tensor([5, 7]), r"lie in 0..3 .*got \[5, 7\]"),
    (torch.zeros(2, 3).long(), torch.zeros(2, 3).long(), torch.tensor([2, -1]), r"lie in 0..3 .*got \[-1\]"),
    (torch.zeros(2, 3).long(), torch.zeros(2, 4).long(), torch.tensor([2, 2]), r"pred \(2, 3\) and y \(2, 4\)"),
    (torch.zeros(6).long(), torch.zeros(6).long(), torch.tensor([6]), r"pred \(6,\) and y \(6,\)"),
    (torch.zeros(2, 3).long(), torch.zeros(2, 3).long(), torch.tensor([2.0, 2.0]),
     r"integer lengths of shape \(2,\), got shape \(2,\) and dtype torch.float32"),
    (torch.zeros(2, 3).long(), torch.zeros(2, 3).long(), torch.tensor([2, 2, 2]), r"got shape \(3,\)"),
    (torch.zeros(2, 3).long(), torch.zeros(2, 3).long(), [2, 2], r"got \{'lengths': 'list'\}")])
def test_token_accuracy_refuses_what_has_no_accuracy(pred, y, lengths, match):
    """Before: all-zero lengths gave NaN silently, lengths past T were clipped silently, and mismatched
    shapes broadcast or failed with raw torch errors."""
    with pytest.raises(DataError, match=match):
        token_accuracy(pred, y, lengths)


def test_token_accuracy_counts_full_and_empty_sequences():
    y = torch.tensor([[1, 2, 0], [1, 1, 0]])
    pred = torch.tensor([[1, 0, 2], [1, 1, 2]])
    assert token_accuracy(pred, y, torch.tensor([3, 0])) == pytest.approx(1 / 3)
