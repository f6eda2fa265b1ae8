import functools

import pytest
import torch
from torch import nn

from hybridpgm import fit
from hybridpgm.errors import DataError
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
