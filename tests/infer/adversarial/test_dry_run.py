"""The construction dry run's refusal of a discriminator that returns no tensor: the message names what came back
(a tuple's, list's or dict's items with their shapes) and what is expected, as the generator's does."""

import re

import pytest
import torch
from torch import nn

from hybridpgm.errors import ModelSpecError
from hybridpgm.infer.adversarial import GAN
from hybridpgm.infer.adversarial.dry_run import dry_run_discriminator

EXPECTED = ("the discriminator must return one tensor of logits, one per example (shape (batch,) or (batch, 1): "
            "(2,) or (2, 1) for the generator's output of shape (2, 3)), got ")


class Returning(nn.Module):
    """A linear discriminator whose logits come back as ``kind`` says."""

    def __init__(self, kind: str):
        super().__init__()
        self.lin, self.kind = nn.Linear(3, 1), kind

    def forward(self, x):
        y = self.lin(x).squeeze(-1)
        return {"tuple": (y, x), "list": [y, x, 1, None, y], "dict": {"logits": y, "features": x},
                "float": 0.5, "none": None}[self.kind]


@pytest.mark.parametrize("kind, got", [
    ("tuple", "a tuple of 2 (Tensor (2,), Tensor (2, 3)) (wrap the network in a module whose forward returns the "
              "logits alone, e.g. out[0])"),
    ("list", "a list of 5 (Tensor (2,), Tensor (2, 3), int, NoneType, ...) (wrap the network in a module whose "
             "forward returns the logits alone, e.g. out[0])"),
    ("dict", "a dict of 2 ('logits': Tensor (2,), 'features': Tensor (2, 3)) (wrap the network in a module whose "
             "forward returns the logits alone, e.g. out['logits'])"),
    ("float", "a float"),
    ("none", "None"),
])
def test_a_discriminator_returning_no_tensor_is_named_with_what_it_returned(kind, got):
    """Before: "... one logit per example (shape (batch,) or (batch, 1)), got tuple for a batch of 2" (the type
    alone, for a tuple, a list, a dict, a float or None)."""
    with pytest.raises(ModelSpecError, match="^" + re.escape(EXPECTED + got) + "$"):
        GAN(nn.Linear(4, 3), Returning(kind), noise_dim=4)


def test_the_message_names_the_source_and_a_tensor_of_the_wrong_size_by_its_shape():
    with pytest.raises(ModelSpecError, match=re.escape("for the VAE's data of shape (2, 3)), got a tuple of 2")):
        dry_run_discriminator(Returning("tuple"), torch.zeros(2, 3), "the VAE's data")
    with pytest.raises(ModelSpecError, match=re.escape("one logit per example (shape (batch,) or (batch, 1)), got "
                                                       "(2, 3) for a batch of 2")):
        dry_run_discriminator(nn.Linear(3, 3), torch.zeros(2, 3), "the VAE's data")
