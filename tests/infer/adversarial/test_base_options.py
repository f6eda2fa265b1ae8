"""AdversarialGame's ``k`` assigned after construction: checked as the constructor checks it.

``game.k = 0`` used to be accepted: the schedule became ``["generator"]`` and the discriminator was never
trained again, silently."""

import copy
import pickle

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.infer.adversarial import GAN
from hybridpgm.infer.adversarial.base import AdversarialGame
from tests.infer.adversarial.conftest import tiny_pair
from tests.option_contract import assert_refused_as_by_the_constructor


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_k_assigned_later_is_refused_as_by_the_constructor(value):
    game = GAN(*tiny_pair(), k=2)
    assert_refused_as_by_the_constructor(lambda: GAN(*tiny_pair(), k=value), game, "k", value)
    assert game.k == 2 and game.schedule == ["discriminator", "discriminator", "generator"]


def test_k_zero_no_longer_drops_the_discriminator_from_the_schedule():
    game = GAN(*tiny_pair())
    with pytest.raises(ConfigError, match="k must be an integer >= 1, got 0"):
        game.k = 0
    assert "discriminator" in game.schedule


def test_a_valid_k_takes_effect_and_travels_with_copies():
    """``k`` set later is in the schedule, the settings and copies, where it stays checked."""
    game = GAN(*tiny_pair())
    game.k = 3
    assert game.schedule == ["discriminator"] * 3 + ["generator"] and game.settings()["k"] == 3
    for other in (copy.deepcopy(game), pickle.loads(pickle.dumps(game))):
        assert other.k == 3
        with pytest.raises(ConfigError):
            other.k = 0


@pytest.mark.parametrize("names", ["head", ("head", 3)])
def test_discriminator_modules_must_be_a_list_of_names(names):
    """A bare string was read as its letters: 'the module has no network named 'h', 'e', 'a', 'd''."""
    module = torch.nn.ModuleDict({"discriminator": torch.nn.Linear(2, 1), "head": torch.nn.Linear(2, 2)})
    with pytest.raises(ConfigError, match="discriminator_modules"):
        AdversarialGame(module, discriminator_modules=names)
    AdversarialGame(module, discriminator_modules=["head"])


def test_discriminator_modules_may_be_any_iterable_of_names():
    """Review F: ``module.keys()``, a set or a generator of names are accepted, as before the bare string was
    refused."""
    module = torch.nn.ModuleDict({"discriminator": torch.nn.Linear(2, 1), "head": torch.nn.Linear(2, 2)})
    for names in ({"head"}, (n for n in ["head"]), {"head": 0}.keys()):
        AdversarialGame(module, discriminator_modules=names)


def test_a_set_of_names_gives_one_order_whatever_the_hash_seed():
    """Review G: a set's order follows Python's hash seed, so the discriminator player's parameters (and a
    checkpoint's record of them) came in another order in another process: a set is taken sorted."""
    from hybridpgm.checks import name_list

    assert name_list({"b", "c", "a"}, "names") == ["a", "b", "c"]
