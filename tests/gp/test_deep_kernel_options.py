"""DeepKernelGP's ``num_features`` and ``grid_size`` as attributes (hybridpgm/gp/deep_kernel.py): both fixed, since
``num_features`` (the feature extractor's output width) decides the kernel's dimensions and ``grid_size`` the
KISS-GP grid and the grid scaling built with the model; neither was read again after construction."""

from __future__ import annotations

import pickle

import pytest
import torch

import hybridpgm
from hybridpgm.errors import FixedOptionError
from hybridpgm.gp import DeepKernelGP, GPLSTM

# a UserWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",  # torch, once per process
    # GPyTorch, predicting at the training inputs
    "ignore:The input matches the stored training data:gpytorch.utils.warnings.GPInputWarning",
)

X = torch.linspace(-1, 1, 8, dtype=torch.float64).unsqueeze(-1)
Y = torch.sin(3 * X[:, 0])


@pytest.mark.parametrize("grid_size", [None, 16])
@pytest.mark.parametrize("name, value", [("num_features", 3), ("grid_size", 50)])
def test_num_features_and_grid_size_are_fixed(grid_size, name, value, tmp_path):
    """The audit: ``grid_size = 50`` (or ``num_features = 3``) was accepted while the kernel kept its grid of 16
    points (or its one feature), and save/load brought back the value the model was built with."""
    gp = DeepKernelGP(X, Y, grid_size=grid_size)
    before = gp.predict(X).mean
    held = getattr(gp, name)
    with pytest.raises(FixedOptionError, match=rf"DeepKernelGP.{name} is fixed when the model is built .*it is "
                                               rf"{held}, {value} was assigned; build a new DeepKernelGP"):
        setattr(gp, name, value)
    assert (gp.num_features, gp.grid_size) == (1, grid_size)
    setattr(gp, name, held)  # the value it has: nothing changes
    torch.testing.assert_close(gp.predict(X).mean, before, rtol=0.0, atol=0.0)
    loaded = hybridpgm.load(hybridpgm.save(gp, tmp_path / "gp.pt"))
    assert (loaded.num_features, loaded.grid_size) == (1, grid_size)


def test_gp_lstm_num_features_is_fixed_and_options_pickle_as_before():
    """``GPLSTM(num_features=...)`` is a constructor argument; fixed as its base class's.  The pickling half is a
    guard (passes on the old code too): both stay ``__dict__`` entries, as in the pickles of earlier releases."""
    windows = torch.randn(6, 3, 1, generator=torch.Generator().manual_seed(0))
    model = GPLSTM(windows, windows[:, -1, 0], hidden_size=4, num_features=2)
    with pytest.raises(AttributeError, match="GPLSTM.num_features is fixed"):
        model.num_features = 3
    assert (vars(model)["num_features"], vars(model)["grid_size"]) == (2, None)
    copy = pickle.loads(pickle.dumps(model))
    assert (copy.num_features, copy.grid_size) == (2, None)
