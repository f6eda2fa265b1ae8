"""One example without its batch dimension, given to the adversarial games: named as such (audit_empty; before,
"discriminator returned shape () for a batch of 2" and "source inputs (3,) and target inputs (3,) must share the
event shape (3,)")."""

import pytest
import torch
from torch import nn

from hybridpgm.errors import DataError, ObjectiveError
from hybridpgm.infer.adversarial import ADA, GAN, IWGAN
from tests.infer.adversarial.conftest import tiny_pair


@pytest.mark.parametrize("cls", [GAN, IWGAN])
def test_logits_of_one_example_name_the_missing_batch_dimension(cls):
    game = cls(*tiny_pair(dim=2))
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match=rf"{cls.__name__}.logits: x of shape \(2,\) is one example without its "
                                        r"batch dimension \(the inputs are \(batch, 2\)\); give one example x as "
                                        r"x\[None\]"):
        game.logits(x[0])
    torch.testing.assert_close(game.logits(x[0][None]), game.logits(x)[:1])  # the advice works


def test_a_scalar_logit_for_a_batch_hints_at_a_missing_batch_dimension():
    """A discriminator that returns one scalar: the shape is not the event shape, so only a hint."""
    game = GAN(*tiny_pair(dim=2))
    game.discriminator = lambda x: x.sum()  # after the construction's dry run, which refuses it
    with pytest.raises(ObjectiveError, match=r"returned shape \(\) for a batch of 4; expected one logit per "
                                             r"example; if x \(shape \(4, 2\)\) is one example, its batch"):
        game.logits(torch.zeros(4, 2))


def test_ada_names_one_example_without_its_batch_dimension():
    torch.manual_seed(0)
    ada = ADA(nn.Linear(3, 2), nn.Linear(2, 1), nn.Linear(2, 2), input_shape=(3,))
    g = torch.Generator().manual_seed(1)
    xs, ys, xt = torch.randn(4, 3, generator=g), torch.randint(0, 2, (4,), generator=g), torch.randn(4, 3, generator=g)
    for player in ("discriminator", "generator"):
        with pytest.raises(DataError, match=r"ADA: x_source \(3,\), x_target \(3,\), y_source \(\) without the "
                                            r"batch dimension; if the batch .* is one example, give it as "
                                            r"x_source\[None\]"):
            ada.loss(player, (xs[0], ys[0], xt[0]))
        assert torch.isfinite(ada.loss(player, (xs[0][None], ys[0][None], xt[0][None])))  # the advice works
    with pytest.raises(DataError, match=r"ADA: y_source \(\) without the batch dimension; if the batch "
                                        r"\(x_source \(3,\), y_source \(\), x_target \(3,\)\) is one example"):
        ADA(nn.Linear(3, 2), nn.Linear(2, 1), nn.Linear(2, 2)).loss("generator", (xs[0], ys[0], xt[0]))
    with pytest.raises(DataError, match=r"source labels have shape \(\), expected \(4,\)"):  # a batch: as before
        ada.loss("generator", (xs, ys[0], xt))
