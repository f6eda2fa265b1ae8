"""The options of fit (:mod:`hybridpgm.train.fit_options`); fit's refusals of them are in test_trainer.py."""

import numpy as np
import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.train.fit_options import callback_list, check_counts, check_factory, per_player


def test_rng_seed_stays_below_numpys_bound():
    """A run resumed on another number of ranks reseeds from seed, rank and step: past 2**32 NumPy refused the
    seed (a resume after about 270,000 steps failed)."""
    from hybridpgm.train.fit_options import SEED_BOUND, rng_seed

    assert rng_seed(5, 0, 0) == 5  # a fresh single-process run is seeded with its seed
    for seed, rank, step in [(2**31, 3, 300_000), (2**32 - 1, 7, 10**9), (2**32 - 1, 0, 0)]:
        value = rng_seed(seed, rank, step)
        assert 0 <= value < SEED_BOUND and type(value) is int
        np.random.seed(value)


def test_rng_seeds_of_runs_ranks_and_restarts_are_distinct():
    """Before, the seed was seed + rank + 7919 * step: rank 1 of the run of seed 0 drew the random numbers of rank
    0 of the run of seed 1, so a sweep over seeds on several ranks trained on correlated streams."""
    from hybridpgm.train.fit_options import rng_seed

    triples = [(seed, rank, step) for seed in range(20) for rank in range(8) for step in (0, 1, 7919, 10**6)]
    seeds = {rng_seed(*t) for t in triples}
    assert len(seeds) == len(triples)
    assert rng_seed(3, 1, 0) == rng_seed(3, 1, 0)  # a function of its arguments


def test_check_counts_returns_plain_ints():
    counts = check_counts(np.int64(3), np.int32(8), 2, None, np.int64(10), np.float32(1.5), np.int64(7), None)
    assert counts == (3, 8, 2, None, 10, 1.5, 7, None)
    assert all(type(c) is int for c in counts[:2] + counts[4:5] + counts[6:7])


def test_per_player_names_missing_and_unknown_players():
    assert per_player(1, ["a", "b"], "optim") == {"a": 1, "b": 1}
    with pytest.raises(ConfigError, match=r"missing \['b'\], unknown \['c'\]"):
        per_player({"a": 1, "c": 2}, ["a", "b"], "optim")


def test_factories_and_callback_lists():
    check_factory({"a": torch.optim.SGD}, "optim")
    assert callback_list(()) == []
    with pytest.raises(ConfigError, match="instance of Adam"):
        check_factory(torch.optim.Adam(torch.nn.Linear(1, 1).parameters()), "optim")
    with pytest.raises(ConfigError, match="got int"):
        callback_list(3)
