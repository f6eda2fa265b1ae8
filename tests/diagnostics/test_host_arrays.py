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
