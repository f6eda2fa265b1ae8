"""The int ``generator=`` seeds of :func:`from_importance` and :func:`from_mcmc`
(hybridpgm/diagnostics/sampler_data.py), found by an audit of the samplers: ``2**70`` reached torch as a raw
``ValueError: Overflow when unpacking long long`` and ``True`` was taken as the seed 1."""

import pytest
import torch

from hybridpgm.diagnostics import from_importance, from_mcmc
from hybridpgm.errors import ConfigError
from tests.diagnostics.test_sampler_data import _nuts_run, global_model

_BAD = [(True, r"must be a torch\.Generator or None \(or, deprecated, an int seed\), got bool True"),
        (2**70, r"must be an integer in \[-2\*\*63, 2\*\*64 - 1\].*got 1180591620717411303424"),
        (-2**63 - 1, r"must be an integer in \[-2\*\*63, 2\*\*64 - 1\]")]


@pytest.mark.parametrize("seed, message", _BAD, ids=["bool", "2**70", "below"])
def test_from_importance_refuses_a_seed_torch_does_not_take_by_name(seed, message):
    with pytest.raises(ConfigError, match=rf"^from_importance generator {message}"):
        from_importance(torch.zeros(3), {"x": torch.zeros(3)}, generator=seed)


def test_the_seeds_at_the_ends_of_torchs_range_are_taken():
    """Guard (passes before and after): the range checked is torch's own."""
    for seed in (-2**63, 2**64 - 1):
        with pytest.warns(FutureWarning, match=rf"generator={seed}: an int seed is deprecated"):
            data = from_importance(torch.zeros(3), {"x": torch.arange(3.0)}, generator=seed)
        assert data["posterior"]["x"].shape == (1, 3)


def test_from_mcmc_refuses_a_seed_torch_does_not_take_by_name():
    mcmc = _nuts_run(global_model, torch.linspace(-1.0, 3.0, 12), chains=1)
    for seed, message in _BAD:
        with pytest.raises(ConfigError, match=rf"^from_mcmc generator {message}"):
            from_mcmc(mcmc, generator=seed)
