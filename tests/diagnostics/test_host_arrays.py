"""Diagnostics take what training leaves behind: tensors that require grad (and, where CUDA exists, on the
device), as well as arrays."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from hybridpgm.diagnostics.check_vi import pareto_khat
from hybridpgm.diagnostics.host_arrays import as_host_array
from hybridpgm.diagnostics.plots import plot_khat


def test_a_tensor_that_requires_grad_becomes_a_host_array_of_the_dtype_asked():
    t = torch.tensor([1.0, 2.0], requires_grad=True) * 2
    got = as_host_array(t, np.float64)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.tolist() == [2.0, 4.0]
    assert as_host_array([1, 2]).tolist() == [1, 2]


def test_pareto_khat_and_plot_khat_take_tensors_that_require_grad():
    """Before, both called numpy.asarray on the tensor: 'Can't call numpy() on Tensor that requires grad'."""
    g = torch.Generator().manual_seed(0)
    log_weights = torch.randn(3, 200, generator=g, dtype=torch.float64).requires_grad_()
    smoothed, khat = pareto_khat(log_weights)
    expected_smoothed, expected_khat = pareto_khat(log_weights.detach().numpy())
    assert np.array_equal(khat, expected_khat) and np.array_equal(smoothed, expected_smoothed)
    assert isinstance(plot_khat(torch.as_tensor(khat).requires_grad_()), Figure)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="reads CUDA tensors")
def test_pareto_khat_takes_cuda_tensors():
    log_weights = torch.randn(2, 100, dtype=torch.float64)
    assert np.array_equal(pareto_khat(log_weights.cuda())[1], pareto_khat(log_weights.numpy())[1])


@pytest.mark.parametrize("dtype, numpy_dtype", [(torch.bfloat16, np.float32), (torch.float8_e4m3fn, np.float32),
                                                (torch.float8_e5m2, np.float32), (torch.float16, np.float16)])
def test_floating_point_dtypes_numpy_lacks_become_float32_exactly(dtype, numpy_dtype):
    """Before: torch's raw TypeError 'Got unsupported ScalarType BFloat16' from Tensor.numpy()."""
    t = torch.tensor([0.5, -1.5, 2.0, 3.0]).to(dtype).requires_grad_(dtype.is_floating_point and dtype.itemsize > 1)
    got = as_host_array(t)
    assert got.dtype == numpy_dtype and got.tolist() == [0.5, -1.5, 2.0, 3.0]
    assert as_host_array(t, np.float64).dtype == np.float64


def test_complex32_becomes_complex64_and_a_quantized_tensor_is_named():
    import warnings

    from hybridpgm.errors import DataError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "ComplexHalf support is experimental"
        got = as_host_array(torch.tensor([1 + 2j, -0.5j], dtype=torch.complex64).to(torch.complex32))
        quantized = torch.quantize_per_tensor(torch.tensor([1.0, 2.0]), 0.1, 0, torch.qint8)
    assert got.dtype == np.complex64 and got.tolist() == [1 + 2j, -0.5j]
    with pytest.raises(DataError, match=r"dtype torch.qint8 \(shape \(2,\)\) has no NumPy equivalent"):
        as_host_array(quantized)



# --------------------------------------------------------------------------- the result owns its memory
def _alias_cases():
    """``(convert, make, read)``: a converter run on the caller's tensor ``make()``, and where the result holds
    it (``read(idata)`` -> the array)."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer.autoguide import AutoNormal

    from hybridpgm.diagnostics import from_categorical, from_importance, from_pyro_svi, make_inference_data

    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("n", y.shape[0]):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    def svi(y):
        with pyro.settings.context(module_local_params=True):
            guide = AutoNormal(model)
            guide(y)
            return from_pyro_svi(model, guide, y, num_samples=5)

    return {
        "make_inference_data": (lambda t: make_inference_data({"posterior": {"a": t}}), lambda: torch.randn(1, 4, 2),
                                lambda d: d.posterior["a"].values),
        "make_inference_data (array)": (lambda t: make_inference_data({"posterior": {"a": t.numpy()}}),
                                        lambda: torch.randn(1, 4, 2), lambda d: d.posterior["a"].values),
        "from_categorical": (lambda t: from_categorical({"x": t}), lambda: torch.softmax(torch.randn(4, 3), -1),
                             lambda d: d.posterior["x"].values),
        "from_pyro_svi observed_data": (svi, lambda: torch.randn(6), lambda d: d.observed_data["y"].values),
        "from_importance log_weight": (lambda t: from_importance(t, {"z": torch.randn(40, 2)}),
                                       lambda: torch.randn(40), lambda d: d.sample_stats["log_weight"].values),
        "from_importance proposal draws": (lambda t: from_importance(torch.randn(40), {"z": t}),
                                           lambda: torch.randn(40, 2), lambda d: d.sample_stats["proposal_z"].values),
    }


_CASES = _alias_cases()


@pytest.mark.parametrize("case", list(_CASES))
def test_a_later_edit_of_the_callers_tensor_does_not_reach_the_inference_data(case):
    """Before: a CPU tensor reached ArviZ as ``Tensor.numpy()``, a view of its storage, so ``t.add_(1)`` after
    the call changed the InferenceData (on CUDA the move to the host copied: device-dependent)."""
    convert, make, read = _CASES[case]
    torch.manual_seed(0)
    given = make()
    idata = convert(given)
    kept = read(idata).copy()
    given.mul_(0.5).add_(1.0)  # the caller reuses the tensor, e.g. standardises it in place
    assert np.array_equal(read(idata), kept)


@pytest.mark.parametrize("case", list(_CASES))
def test_editing_the_inference_data_does_not_write_into_the_callers_tensor(case):
    """Before: ``idata.posterior["x"].values[...] = 0`` wrote zeros into the caller's tensor (say a
    ``BayesNet.posterior`` result still in use)."""
    convert, make, read = _CASES[case]
    torch.manual_seed(0)
    given = make()
    before = given.clone()
    idata = convert(given)
    read(idata)[...] = 0.0
    assert torch.equal(given, before)


def test_as_host_array_copies_a_cpu_tensor_and_an_array_once():
    """Before: a view of the tensor's storage (``Tensor.numpy()``) and the array itself (``numpy.asarray``).
    The result owns its memory: one copy, not a view of a copy."""
    t = torch.arange(6.0).reshape(2, 3)
    expected = np.arange(6.0).reshape(2, 3)
    # t's storage as a tensor, an array, a transposed view and a tensor that requires grad
    for value, want in ((t, expected), (t.numpy(), expected), (t.T, expected.T),
                        (t.detach().requires_grad_(), expected)):
        got = as_host_array(value)
        assert not np.shares_memory(got, t.numpy()) and got.flags.owndata
        assert np.array_equal(got, want)
    got = as_host_array(t, np.float64)  # the dtype conversion is the one copy
    assert got.dtype == np.float64 and got.flags.owndata


def _numpy_peak_bytes(call) -> int:
    """The peak of the memory NumPy (and Python) allocate during ``call()``, which :mod:`tracemalloc` traces (a
    tensor's storage is torch's, not traced)."""
    import tracemalloc

    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_large_draws_are_copied_once_on_their_way_to_arviz():
    """8 MB of draws cost one 8 MB NumPy copy in make_inference_data and from_importance's proposal draws (not
    two: a copy in the converter and another in as_host_array); and a bfloat16 tensor, already copied by its
    conversion to float32, is not copied again.  Before: no copy (a view of the caller's tensor)."""
    from hybridpgm.diagnostics import from_importance, make_inference_data

    make_inference_data({"posterior": {"warm": torch.zeros(1, 2)}})  # ArviZ's imports, outside the measure
    draws = torch.randn(1, 1000, 1000, dtype=torch.float64)
    peak = _numpy_peak_bytes(lambda: make_inference_data({"posterior": {"a": draws}}))
    assert draws.nbytes <= peak < 1.5 * draws.nbytes
    z = draws[0]
    peak = _numpy_peak_bytes(lambda: from_importance(torch.zeros(1000), {"z": z}, psis=False))
    assert 2 * z.nbytes <= peak < 2.5 * z.nbytes  # the proposal draws and the resampled ones, once each
    half = torch.randn(1000, 1000).to(torch.bfloat16)
    assert _numpy_peak_bytes(lambda: as_host_array(half)) < 0.1 * half.nbytes


def test_conjugated_and_negated_views_are_resolved_for_the_converters_and_the_khat_helpers():
    """Before: torch's raw RuntimeError "Can't call numpy() on Tensor that has negative bit set" (conjugate bit
    for ``z.conj()``) from every converter, pareto_khat and plot_khat."""
    from hybridpgm.diagnostics import from_importance, make_inference_data

    z = torch.randn(1, 200, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    negated = z.conj().imag  # a real float64 view of z with the negative bit set
    assert negated.is_neg() and not negated.is_complex()
    got = as_host_array(negated)
    assert np.array_equal(got, -z.imag.numpy()) and not np.shares_memory(got, z.imag.numpy())
    conjugated = as_host_array(z.conj())
    assert conjugated.dtype == np.complex128 and np.array_equal(conjugated, np.conj(z.numpy()))
    idata = make_inference_data({"posterior": {"x": negated, "w": z.conj()}})
    assert np.array_equal(idata.posterior["x"].values, -z.imag.numpy())
    z.imag.mul_(2.0)  # a later edit of the caller's tensor does not reach the resolved copy
    assert np.array_equal(idata.posterior["x"].values, got)
    smoothed, khat = pareto_khat(negated)
    expected_smoothed, expected_khat = pareto_khat(negated.resolve_neg().numpy())
    assert np.array_equal(khat, expected_khat) and np.array_equal(smoothed, expected_smoothed)
    khat = torch.complex(torch.zeros(2), torch.tensor([-0.2, -0.8])).conj().imag  # [0.2, 0.8], negative bit
    fig = plot_khat(khat)
    assert np.allclose(fig.axes[0].collections[0].get_offsets()[:, 1], [0.2, 0.8])
    resampled = from_importance(negated[0], {"x": negated[0]}, psis=False)
    assert set(np.unique(resampled.posterior["x"].values)) <= set(negated[0].resolve_neg().numpy().tolist())

