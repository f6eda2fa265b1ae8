"""The seeded one-call recipes leave the caller's random streams as they were (found by an audit: each reset
torch's, NumPy's and Python's global streams to its default seed 0)."""

import random

import numpy as np
import pytest
import torch

from hybridpgm.data import make_windows, synthetic_series
from hybridpgm.diagnostics import train_classifier
from hybridpgm.errors import ConfigError
from hybridpgm.gp import train_deep_kernel, train_gp_lstm
from hybridpgm.rng_scope import keeping_global_rngs


def _draws():
    return float(torch.rand(())), float(np.random.rand()), random.random()


def _classifier():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, generator=g)
    return train_classifier(x, (x[:, 0] > 0).long(), hidden=(4,), num_steps=2, batch_size=8, device="cpu")


def _deep_kernel():
    x = torch.linspace(-1, 1, 30).unsqueeze(-1)
    with torch.random.fork_rng(devices=[]):  # the caller's own draw, not the recipe's
        extractor = torch.nn.Linear(1, 2)
    return train_deep_kernel(x, torch.sin(3 * x).squeeze(-1), extractor, max_steps=2, eval_every=1)


def _gp_lstm():
    x, y = make_windows(synthetic_series(60, seed=0).float(), 6)
    return train_gp_lstm(x, y, hidden_size=2, max_steps=2, eval_every=1)


@pytest.mark.parametrize("recipe", [_classifier, _deep_kernel, _gp_lstm], ids=lambda f: f.__name__.strip("_"))
def test_a_seeded_recipe_leaves_the_callers_streams_as_they_were(recipe):
    for caller_seed in (3, 4):
        torch.manual_seed(caller_seed)
        np.random.seed(caller_seed)
        random.seed(caller_seed)
        expected = _draws()
        torch.manual_seed(caller_seed)
        np.random.seed(caller_seed)
        random.seed(caller_seed)
        recipe()
        assert _draws() == expected


def test_a_seeded_recipe_is_reproducible_whatever_the_callers_streams():
    torch.manual_seed(5)
    first = [p.detach().clone() for p in _classifier().parameters()]
    torch.manual_seed(6)
    second = list(_classifier().parameters())
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_the_scope_restores_after_an_exception_and_seed_none_is_no_scope():
    torch.manual_seed(0)
    expected = float(torch.rand(()))
    torch.manual_seed(0)
    with pytest.raises(ValueError):
        with keeping_global_rngs(7):
            torch.rand(5)
            raise ValueError
    assert float(torch.rand(())) == expected
    torch.manual_seed(0)
    with keeping_global_rngs(None):
        inside = float(torch.rand(()))
    assert inside == expected and float(torch.rand(())) != expected


def test_restoring_scope_draws_from_the_callers_streams_and_puts_them_back():
    from hybridpgm.rng_scope import cuda_indices, restoring_global_rngs

    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    expected = _draws()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    with pytest.raises(ValueError):
        with restoring_global_rngs(["cpu"]):
            assert _draws() == expected  # the caller's streams, not a seeded one
            raise ValueError
    assert _draws() == expected
    assert cuda_indices(["cpu", torch.device("cpu")]) == []
    assert cuda_indices([torch.device("cuda", 1), "cuda:0", 1]) == [0, 1]  # no CUDA needed for an explicit index


def _dropout_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))


def test_seeded_from_generator_repeats_for_the_same_generator_and_keeps_the_global_streams():
    from hybridpgm.rng_scope import seeded_from_generator

    net, x = _dropout_net(), torch.ones(50, 2)
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    outputs = []
    for seed in (1, 1, 2):
        with seeded_from_generator(torch.Generator().manual_seed(seed), [net]):
            outputs.append(net(x))
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


class _AlwaysDropout(torch.nn.Module):
    """The MC-dropout idiom: a dropout that draws in evaluation mode too."""

    def forward(self, x):
        return torch.nn.functional.dropout(x, 0.5, training=True)


def test_seeded_from_generator_seeds_whatever_the_modes_and_is_no_scope_without_a_generator():
    """Before, it seeded only when some module was in training mode: in evaluation mode a network that draws anyway
    followed torch's global seed and moved the caller's stream, and the generator advanced by one draw in training
    mode and none in evaluation mode (so a deterministic network's samples depended on its mode)."""
    from hybridpgm.rng_scope import seeded_from_generator

    net, x = torch.nn.Sequential(torch.nn.Linear(2, 8), _AlwaysDropout()).eval(), torch.ones(50, 2)
    one_draw = torch.Generator().manual_seed(1)
    torch.randint(2**62, (), generator=one_draw)
    outputs = []
    for global_seed, seed in ((3, 1), (4, 1), (3, 2)):
        torch.manual_seed(global_seed)
        before = torch.get_rng_state()
        g = torch.Generator().manual_seed(seed)
        with seeded_from_generator(g, [net]):
            outputs.append(net(x))
        assert torch.equal(torch.get_rng_state(), before)  # the caller's stream did not move
        if seed == 1:
            assert torch.equal(g.get_state(), one_draw.get_state())  # one draw, in evaluation mode too
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])
    net.train()
    g = torch.Generator().manual_seed(1)
    with seeded_from_generator(g, [net]):
        assert torch.equal(net(x), outputs[0])  # the same draws in training mode
    assert torch.equal(g.get_state(), one_draw.get_state())
    torch.manual_seed(0)
    expected = float(torch.rand(()))
    torch.manual_seed(0)
    with seeded_from_generator(None, [net]):
        assert float(torch.rand(())) == expected  # the caller's stream, advanced
    assert float(torch.rand(())) != expected


@pytest.mark.parametrize("seed", [1.5, "7", True, 2**64, -2**63 - 1])
def test_the_seeded_scope_refuses_a_seed_torch_refuses_with_a_config_error(seed):
    """Before, the seed reached ``torch.default_generator.manual_seed``: a raw RuntimeError (a float, a string)
    or ValueError (out of range)."""
    torch.manual_seed(0)
    expected = float(torch.rand(()))
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match=r"^recipe seed must be an integer"):
        with keeping_global_rngs(seed, what="recipe seed"):
            pass
    assert float(torch.rand(())) == expected  # nothing was seeded


def _recipe_with_seed(name, seed):
    x = torch.linspace(-1, 1, 30).unsqueeze(-1)
    windows, targets = make_windows(synthetic_series(30, seed=0).float(), 4)
    return {"train_classifier": lambda: train_classifier(x, (x[:, 0] > 0).long(), hidden=(2,), num_steps=1,
                                                         device="cpu", seed=seed),
            "train_deep_kernel": lambda: train_deep_kernel(x, x[:, 0], max_steps=1, seed=seed),
            "train_gp_lstm": lambda: train_gp_lstm(windows, targets, hidden_size=2, max_steps=1, seed=seed)}[name]


@pytest.mark.parametrize("name", ["train_classifier", "train_deep_kernel", "train_gp_lstm"])
@pytest.mark.parametrize("seed", [1.5, "7", 2**64])
def test_a_recipe_refuses_a_bad_seed_with_a_config_error(name, seed):
    with pytest.raises(ConfigError, match=rf"^{name} seed must be an integer"):
        _recipe_with_seed(name, seed)()


def test_fixed_rng_holds_the_global_state_lock_from_its_fork_to_its_restore():
    """Found by an audit: ``fixed_rng`` forked and reseeded torch's CPU generator without hybridpgm's lock, so
    another thread's seeded scope (``GAN.sample(generator=...)``) could reseed or rewind it in between
    (``from_mcmc``'s replay, a deep-kernel GP's log-determinant probes).  The lock is re-entrant: a call inside
    that takes it again runs."""
    from hybridpgm.global_state_lock import held_depth, holding_global_state
    from hybridpgm.rng_scope import fixed_rng

    outside = held_depth()
    with fixed_rng("cpu", 3):
        assert held_depth() == outside + 1
        with holding_global_state():
            first = torch.rand(3)
    assert held_depth() == outside
    with fixed_rng("cpu", 3):
        assert torch.equal(torch.rand(3), first)
