"""``GPLSTM.forecast``'s ``generator=`` (found by an audit of the samplers: it was the fifth positional parameter,
where every other sampler of the package takes it keyword-only) and the package's ``generator=`` contract."""

import inspect

import pytest
import torch

from hybridpgm.data import make_windows, synthetic_series
from hybridpgm.errors import ConfigError
from hybridpgm.gp import GPLSTM, Forecast
from tests import generator_contract as contract

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
)


@pytest.fixture(scope="module")
def series():
    z = synthetic_series(40, period=9.0, noise=0.1, seed=0).float()
    x, y = make_windows(z, 8)
    torch.manual_seed(0)
    return GPLSTM(x, y, hidden_size=4), z[-8:]


def test_generator_is_keyword_only(series):
    assert inspect.signature(GPLSTM.forecast).parameters["generator"].kind is inspect.Parameter.KEYWORD_ONLY
    model, context = series
    by_keyword = model.forecast(context, 3, 5, 0.9, generator=torch.Generator().manual_seed(1))
    assert isinstance(by_keyword, Forecast) and by_keyword.samples.shape == (5, 3)


def test_a_positional_generator_still_works_with_a_future_warning(series):
    model, context = series
    with pytest.warns(FutureWarning, match=r"^GPLSTM.forecast: pass generator= by keyword"):
        old = model.forecast(context, 3, 5, 0.9, torch.Generator().manual_seed(1))
    new = model.forecast(context, 3, 5, 0.9, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(old, new))


def test_the_generator_contract(series):
    model, context = series
    contract.assert_generator_contract(lambda **kw: model.forecast(context, 3, 5, **kw).samples,
                                       "GPLSTM.forecast generator")


def test_one_path_is_refused_as_no_interval(series):
    """audit_empty: ``num_samples=1`` gave lower = mean = upper (the one path), while 0 is refused as undefined."""
    model, context = series
    with pytest.raises(ConfigError, match=r"num_samples must be at least 2, got 1: one path has no spread"):
        model.forecast(context, 3, 1, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ConfigError, match=r"num_samples must be at least 2, got 1: one path has no spread"):
        model.forecast(context, 0, 1)  # the horizon of no step refuses the same calls
    two = model.forecast(context, 3, 2, generator=torch.Generator().manual_seed(1))
    assert (two.upper > two.lower).all()
