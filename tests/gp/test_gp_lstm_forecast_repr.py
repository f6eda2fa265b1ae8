"""Forecast's summary repr (hybridpgm/gp/gp_lstm_forecast.py)."""

import torch

from hybridpgm.gp.gp_lstm_forecast import Forecast


def test_the_repr_names_shapes_not_samples():
    """The tuple's repr printed every sampled path."""
    steps, paths = 48, 2000
    forecast = Forecast(torch.zeros(steps), torch.zeros(steps), torch.ones(steps), torch.rand(paths, steps))
    assert repr(forecast) == ("Forecast(mean=[48] torch.float32, lower=[48] torch.float32, upper=[48] torch.float32, "
                              "samples=[2000, 48] torch.float32)")
    assert forecast.samples.shape == (paths, steps)  # still a NamedTuple of its tensors
