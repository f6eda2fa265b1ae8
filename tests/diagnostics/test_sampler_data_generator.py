"""``generator=`` of :func:`from_importance` and :func:`from_mcmc` means what it means everywhere else in the library
(hybridpgm/diagnostics/sampler_data.py): ``None``, the default, draws from torch's global stream, a
:class:`torch.Generator` from itself; an int seed still works, with a ``FutureWarning``.  Before, ``None`` raised
``ConfigError`` and the default was the seed 0, so every call without a generator resampled identically whatever
torch's seed."""

import numpy as np
import pytest
import torch

from hybridpgm.diagnostics import from_importance, from_mcmc
from tests.diagnostics.test_sampler_data import _nuts_run, global_model

LOG_W = torch.randn(200, generator=torch.Generator().manual_seed(0))
DRAWS = {"z": torch.randn(200, generator=torch.Generator().manual_seed(1))}


def _resampled(**kwargs):
    return np.asarray(from_importance(LOG_W, DRAWS, **kwargs)["posterior"]["z"])


def test_from_importance_default_and_none_draw_from_torchs_global_stream():
    torch.manual_seed(123)
    default = _resampled()
    torch.manual_seed(123)
    np.testing.assert_array_equal(_resampled(generator=None), default)  # None is the default
    torch.manual_seed(123)
    state = torch.get_rng_state()
    _resampled()
    assert not torch.equal(torch.get_rng_state(), state)  # the global stream moved
    torch.manual_seed(7)
    assert not np.array_equal(_resampled(), default)  # another torch seed, other draws


def test_from_importance_int_seed_warns_and_draws_as_its_generator():
    with pytest.warns(FutureWarning, match=r"from_importance generator=5: an int seed is deprecated.*"
                                           r"generator=torch\.Generator\(\)\.manual_seed\(5\)"):
        seeded = _resampled(generator=5)
    np.testing.assert_array_equal(seeded, _resampled(generator=torch.Generator().manual_seed(5)))


def _predictive(mcmc, **kwargs):
    return np.asarray(from_mcmc(mcmc, posterior_predictive=True, **kwargs)["posterior_predictive"]["x"])


def test_from_mcmc_default_and_none_follow_torchs_global_seed_and_int_seeds_warn():
    mcmc = _nuts_run(global_model, torch.linspace(-1.0, 3.0, 12), chains=1)
    torch.manual_seed(123)
    default = _predictive(mcmc)
    torch.manual_seed(123)
    np.testing.assert_array_equal(_predictive(mcmc, generator=None), default)
    torch.manual_seed(7)
    assert not np.array_equal(_predictive(mcmc), default)
    with pytest.warns(FutureWarning, match=r"from_mcmc generator=3: an int seed is deprecated"):
        seeded = _predictive(mcmc, generator=3)
    with pytest.warns(FutureWarning):
        np.testing.assert_array_equal(_predictive(mcmc, generator=3), seeded)  # an int seed replays as before
