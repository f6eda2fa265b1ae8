"""What ``fit`` does with the global RNGs, with and without a ``seed``.

``seed=None`` draws the run's seed from torch's global generator (a caller's ``torch.manual_seed``
makes the run reproducible) and puts the caller's NumPy and Python RNG states back on exit; an
integer seed seeds every global RNG and leaves them where training left them.
"""

import random

import numpy as np
import pytest
import torch

from hybridpgm import fit
from hybridpgm.train import load_checkpoint
from tests.train.helpers import DivergeAt, LinearRegression, regression_data


def _noisy_objective():
    """A regression whose update uses torch's global RNG (dropout), so that the run's seed shows in the
    weights (built before the caller seeds: ``LinearRegression`` seeds torch itself)."""
    objective = LinearRegression()
    objective.module = torch.nn.Sequential(torch.nn.Dropout(0.5), objective.module)
    return objective


def _noisy_fit(objective=None, **options):
    objective = objective or _noisy_objective()
    fit(objective, regression_data(), epochs=1, batch_size=16, progress=False, **options)
    return objective.module.state_dict()


def test_an_unseeded_run_follows_the_callers_torch_seed():
    runs = []
    for caller_seed in (0, 0, 1):
        objective = _noisy_objective()
        torch.manual_seed(caller_seed)
        runs.append((_noisy_fit(objective), torch.rand(1)))
    for name, value in runs[0][0].items():
        assert torch.equal(runs[1][0][name], value), name
    assert torch.equal(runs[0][1], runs[1][1])  # and so do the random numbers after it
    assert not all(torch.equal(runs[2][0][k], v) for k, v in runs[0][0].items())  # another caller seed


def test_an_unseeded_run_records_the_seed_it_drew_from_torch(tmp_path):
    torch.manual_seed(7)
    expected = int(torch.randint(2**31, ()).item())
    objective = _noisy_objective()
    torch.manual_seed(7)
    _noisy_fit(objective, checkpoint=tmp_path / "run.pt")
    assert load_checkpoint(tmp_path / "run.pt")["seed"] == expected


def _diverging_fit():
    with pytest.raises(Exception, match="loss of player 'fit' is nan"):
        fit(DivergeAt(LinearRegression(), 0), regression_data(), batch_size=16, progress=False)


@pytest.mark.parametrize("run", [_noisy_fit, _diverging_fit], ids=["finishes", "fails"])
def test_an_unseeded_run_keeps_the_callers_numpy_and_python_streams(run):
    np.random.seed(5)
    random.seed(5)
    expected = (np.random.rand(), random.random())
    np.random.seed(5)
    random.seed(5)
    run()
    assert (np.random.rand(), random.random()) == expected


def test_a_seeded_run_seeds_the_global_rngs_and_leaves_them_seeded():
    np.random.seed(123)
    random.seed(123)
    _noisy_fit(seed=7)  # the linear model draws nothing from NumPy or Python: their state is the seed's
    after = (np.random.rand(), random.random())
    np.random.seed(7)
    random.seed(7)
    assert after == (np.random.rand(), random.random())
