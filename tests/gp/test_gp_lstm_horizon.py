"""``GPLSTM.horizon`` set after construction: checked as the constructor checks it and saved with the model
(hybridpgm.gp.gp_lstm)."""

from __future__ import annotations

import pytest
import torch

import hybridpgm
from hybridpgm.data import make_windows, synthetic_series
from hybridpgm.errors import ConfigError
from hybridpgm.gp import GPLSTM

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
)


def test_the_horizon_is_fixed_when_the_model_is_built(tmp_path):
    """The horizon says how far ahead the stored training targets lie: ``horizon = 1`` set later on a model of
    3-step-ahead targets would feed 3-step-ahead predictions back as next values in ``forecast`` without an error
    (and ``horizon = 3`` set later came back 1 from save/load, review E and the audit): it is fixed, the same value
    may be assigned again, and save/load keeps the constructor's."""
    from hybridpgm.errors import FixedOptionError

    z = synthetic_series(60, period=9.0, noise=0.1, seed=0).float()
    x, y = make_windows(z, 8, horizon=3)
    torch.manual_seed(0)
    model = GPLSTM(x, y, hidden_size=4, horizon=3)
    for other in (1, 0, "3"):
        with pytest.raises(FixedOptionError, match="GPLSTM.horizon is fixed"):
            model.horizon = other
    model.horizon = 3  # the value it holds
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "h3.pt"))
    assert model.horizon == loaded.horizon == 3
    for m in (model, loaded):
        with pytest.raises(ConfigError, match=r"horizon=3"):
            m.forecast(z[-8:], steps=2, num_samples=4)