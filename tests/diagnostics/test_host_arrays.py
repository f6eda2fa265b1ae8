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

