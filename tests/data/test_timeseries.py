import pytest
import torch

from hybridpgm.data import SERIES, load_series, make_windows, split_series, synthetic_series
from hybridpgm.errors import DataError

# a UserWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
)

EXPECTED_LENGTHS = {"sunspots": 309, "co2": 526, "nile": 100, "elnino": 732}


@pytest.mark.parametrize("name", SERIES)
def test_bundled_series_load_finite_and_ordered(name):
    series = load_series(name)
    assert len(series) == EXPECTED_LENGTHS[name]
    assert series.values.dtype == torch.float64 and torch.isfinite(series.values).all()
    assert (series.times.diff() > 0).all()


def test_known_values():
    sun = load_series("sunspots")
    assert sun.times[0] == 1700 and sun.values[:3].tolist() == [5.0, 11.0, 16.0]
    co2 = load_series("co2")
    assert 310 < co2.values[0] < 320 and co2.values[-1] > 360  # ppm, rising


@pytest.mark.parametrize("window,horizon", [(1, 1), (3, 1), (4, 2), (9, 1)])
def test_windows_match_a_loop(window, horizon):
    values = torch.arange(10.0)
    x, y = make_windows(values, window, horizon)
    n = 10 - window - horizon + 1
    assert x.shape == (n, window, 1) and y.shape == (n,)
    for i in range(n):
        assert x[i, :, 0].tolist() == values[i:i + window].tolist()
        assert y[i] == values[i + window + horizon - 1]


def test_multivariate_windows_target_the_first_column():
    values = torch.stack([torch.arange(6.0), -torch.arange(6.0)], dim=1)
    x, y = make_windows(values, 2)
    assert x.shape == (4, 2, 2) and y.tolist() == [2.0, 3.0, 4.0, 5.0]
    assert x[1].tolist() == [[1.0, -1.0], [2.0, -2.0]]


def test_bad_input_raises_named_errors():
    with pytest.raises(DataError, match="longer than the series of length 5"):
        make_windows(torch.arange(5.0), 5)
    with pytest.raises(DataError, match="NaN/inf"):
        make_windows(torch.tensor([1.0, float("nan"), 2.0, 3.0]), 2)
    with pytest.raises(DataError, match="positive integers"):
        make_windows(torch.arange(5.0), 0)
    with pytest.raises(DataError, match="unknown series"):
        load_series("airline")
    with pytest.raises(DataError, match="num_test"):
        split_series(torch.arange(5.0), 5)


def test_split_and_synthetic():
    a, b = split_series(torch.arange(10.0), 3)
    assert a.tolist() == list(range(7)) and b.tolist() == [7.0, 8.0, 9.0]
    s1, s2 = synthetic_series(200, seed=1), synthetic_series(200, seed=1)
    assert torch.equal(s1, s2) and not torch.equal(s1, synthetic_series(200, seed=2))
    clean = synthetic_series(200, noise=0.0)
    assert (synthetic_series(200, noise=0.1, seed=1) - clean).std() == pytest.approx(0.1, rel=0.2)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64, "float64", None])
def test_synthetic_series_refuses_a_non_floating_dtype_naming_it(dtype):
    """Before, torch.randn / torch.arange raised a raw NotImplementedError (or TypeError)."""
    with pytest.raises(DataError, match=rf"synthetic_series dtype must be a floating dtype .*got {dtype!r}"):
        synthetic_series(10, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_synthetic_series_in_each_floating_dtype(dtype):
    series = synthetic_series(50, seed=3, dtype=dtype)
    assert series.dtype == dtype and series.shape == (50,) and torch.isfinite(series).all()
    clean = synthetic_series(50, noise=0.0, dtype=dtype)
    assert clean.dtype == dtype and float(clean.abs().max()) <= 1.3 + 1e-2  # |sin| (1 + 0.3 |sin|)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_a_low_precision_series_is_the_float64_one_rounded(dtype):
    """Before, a 16-bit series was computed in 16 bits: bfloat16's time index repeats (256, 256, 258, ...)."""
    reference = synthetic_series(1000, noise=0.0, trend=0.5, dtype=torch.float64)
    series = synthetic_series(1000, noise=0.0, trend=0.5, dtype=dtype)
    assert series.dtype == dtype and torch.equal(series, reference.to(dtype))
    noisy = synthetic_series(300, noise=0.1, seed=3, dtype=dtype).double()
    assert (noisy - synthetic_series(300, noise=0.1, seed=3, dtype=torch.float32).double()).abs().max() < 0.02


def test_make_windows_of_a_series_without_columns():
    """Before, an (L, 0) series raised a raw IndexError."""
    with pytest.raises(DataError, match=r"series has shape \(10, 0\): no column"):
        make_windows(torch.zeros(10, 0), 2)
