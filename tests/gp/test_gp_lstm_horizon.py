"""``GPLSTM.horizon`` set after construction: checked as the constructor checks it and saved with the model
(hybridpgm.gp.gp_lstm)."""

from __future__ import annotations

import pytest
import torch

import hybridpgm
from hybridpgm.data import make_windows, synthetic_series
from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.gp import GPLSTM

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


def test_a_horizon_set_later_is_checked_and_saved(tmp_path):
    """The audit: ``horizon = 3`` set after construction came back 1 from save/load, and the loaded model then
    forecast (fed 3-step-ahead predictions back as next values) where the saved one refused."""
    z = synthetic_series(60, period=9.0, noise=0.1, seed=0).float()
    x, y = make_windows(z, 8, horizon=3)
    torch.manual_seed(0)
    model = GPLSTM(x, y, hidden_size=4)
    for bad in (0, -1, 1.5, "3", True):
        with pytest.raises(ModelSpecError, match="GPLSTM horizon"):
            model.horizon = bad
    assert model.horizon == 1
    model.horizon = 3
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "h3.pt"))
    assert loaded.horizon == 3
    for m in (model, loaded):
        with pytest.raises(ConfigError, match=r"horizon=3"):
            m.forecast(z[-8:], steps=2, num_samples=4)
