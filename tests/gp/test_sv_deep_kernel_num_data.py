"""``SVDeepKernelGP.num_data``: checked against the batch, and one value for both the likelihood's ``N / B`` and the
objective's ``1 / N`` (hybridpgm.gp.sv_deep_kernel)."""

from __future__ import annotations

import pyro
import pytest
import torch

import hybridpgm
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.gp import SVDeepKernelGP

# a UserWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
)


def _data(rows=12):
    x = torch.linspace(-1, 1, rows, dtype=torch.float64).unsqueeze(-1)
    return x, torch.sin(3 * x[:, 0])


def _model(num_data):
    inducing = torch.linspace(-1, 1, 4, dtype=torch.float64).unsqueeze(-1)
    return SVDeepKernelGP(None, num_features=1, num_data=num_data, inducing_points=inducing)


def _likelihood_scale(sv, x, y):
    return pyro.poutine.trace(sv.model).get_trace(x, y).nodes["gp.y"]["scale"]


def _seeded_loss(objective, batch, seed=0):
    torch.manual_seed(seed)
    return objective.loss("elbo", batch)


@pytest.mark.parametrize("program", ["model", "guide", "objective"])
def test_a_batch_larger_than_num_data_is_refused(program):
    sv, (x, y) = _model(4), _data(12)
    run = {"model": lambda: sv.model(x, y), "guide": lambda: sv.guide(x, y),
           "objective": lambda: sv.objective(num_particles=2).loss("elbo", (x, y))}[program]
    with pytest.raises(DataError, match=r"SVDeepKernelGP: num_data=4 is smaller than the batch of 12 rows"):
        run()


def test_a_batch_of_num_data_rows_and_sampled_targets_beyond_it_are_accepted():
    """Guard (passes on the old code too): ``B = N`` trains, and ``y = None`` (sampling at more points) is not a
    training batch."""
    sv, (x, y) = _model(12), _data(12)
    assert _likelihood_scale(sv, x, y) == 1.0
    assert sv.objective(num_particles=2).loss("elbo", (x, y)).isfinite()
    assert pyro.poutine.trace(_model(4).model).get_trace(x, None).nodes["gp.y"]["value"].shape == (12,)


def test_num_data_set_after_construction_moves_the_likelihood_scale_and_the_objective():
    x, y = _data(12)
    batch = (x[:3], y[:3])
    sv = _model(12)
    sv.num_data = 1200
    assert sv.num_data == 1200 and sv.likelihood.num_data == 1200
    assert _likelihood_scale(sv, *batch) == 400.0  # N / B = 1200 / 3
    # the loss is that of a model built with num_data=1200 (each compared on its first call: GPyTorch draws the
    # initial q(u) then), from an objective made before the change (its 1 / N read at each call) or after
    expected = _seeded_loss(_model(1200).objective(num_particles=4), batch)
    before = _model(12)
    objective = before.objective(num_particles=4)
    before.num_data = 1200
    torch.testing.assert_close(_seeded_loss(objective, batch), expected, rtol=1e-12, atol=0.0)
    after = _model(12)
    after.num_data = 1200
    torch.testing.assert_close(_seeded_loss(after.objective(num_particles=4), batch), expected, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("value", [0, -3, 2.5, "12", True, None])
def test_num_data_set_to_a_non_positive_integer_is_refused(value):
    sv = _model(12)
    with pytest.raises(ModelSpecError, match="SVDeepKernelGP num_data"):
        sv.num_data = value
    assert sv.num_data == 12 and sv.likelihood.num_data == 12


def test_save_records_the_current_num_data_and_the_state_dict_is_unchanged(tmp_path):
    sv = _model(12)
    keys = list(sv.state_dict())
    sv.num_data = 1200
    assert list(sv.state_dict()) == keys  # num_data is no state-dict entry, before or after
    loaded = hybridpgm.load(hybridpgm.save(sv, tmp_path / "sv.pt"))
    assert loaded.num_data == 1200 and loaded.likelihood.num_data == 1200
    assert list(loaded.state_dict()) == keys
    for name, value in sv.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0.0, atol=0.0)
    fresh = _model(12)
    assert hybridpgm.load(hybridpgm.save(fresh, tmp_path / "fresh.pt")).num_data == 12
