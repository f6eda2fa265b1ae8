"""Data checks at the door: the dtype rule, the memory-lean NaN scan, NaN in binarizers."""

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from hybridpgm.data import DynamicBinarized, binarize_static
from hybridpgm.data.validation import (SCAN_CHUNK, as_model_dtype, batch_origin, check_binary, check_features,
                                       check_finite, check_model_input, check_no_extra_arguments, check_num_data,
                                       count_nonfinite)
from hybridpgm.errors import DataError


@pytest.mark.parametrize("source", [torch.bool, torch.uint8, torch.int8, torch.int32, torch.int64,
                                    torch.float16, torch.bfloat16])
def test_exact_conversions_are_made(source):
    x = torch.tensor([[0, 1, 1], [1, 0, 1]]).to(source)
    y = as_model_dtype(x, torch.float32, "x")
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, torch.tensor([[0.0, 1, 1], [1, 0, 1]]))
    assert as_model_dtype(y, torch.float64).dtype == torch.float64  # widening is exact too


def test_integers_beyond_the_exact_range_are_refused():
    big = torch.tensor([0, 2 ** 24 + 1])
    with pytest.raises(DataError, match=r"counts has dtype torch.int64.*torch.float32"):
        as_model_dtype(big, torch.float32, "counts")
    assert as_model_dtype(big, torch.float64).tolist() == [0.0, 2.0 ** 24 + 1]


@pytest.mark.parametrize("source", [torch.uint16, torch.uint32, torch.uint64])
def test_wide_unsigned_integers_are_converted_as_signed_ones_are(source):
    """torch has no min/max for uint16/32/64: the range is read through int64, not a raw NotImplementedError."""
    x = torch.tensor([[0, 1, 1], [1, 0, 1]]).to(source)
    y = as_model_dtype(x, torch.float32, "x")
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, torch.tensor([[0.0, 1, 1], [1, 0, 1]]))


def test_wide_unsigned_integers_beyond_the_exact_range_are_refused_with_their_true_range():
    with pytest.raises(DataError, match=r"counts has dtype torch.uint32 with values in \[0, 33554432\].*float32"):
        as_model_dtype(torch.tensor([0, 2 ** 25]).to(torch.uint32), torch.float32, "counts")
    # uint64 values >= 2**63 wrap negative in int64: still refused, and named by their unsigned value
    huge = torch.from_numpy(np.array([3, 2 ** 64 - 1], dtype=np.uint64))
    with pytest.raises(DataError, match=r"torch.uint64 with values in \[3, 18446744073709551615\]"):
        as_model_dtype(huge, torch.float64, "counts")


@pytest.mark.parametrize("source,target", [(torch.float64, torch.float32), (torch.float32, torch.float16),
                                           (torch.bfloat16, torch.float16), (torch.complex64, torch.float32)])
def test_rounding_conversions_are_refused_naming_both_dtypes(source, target):
    with pytest.raises(DataError, match=rf"pixels has dtype {source}.*{target}"):
        as_model_dtype(torch.zeros(2, 3, dtype=source), target, "pixels")


def test_nonfinite_scan_finds_count_and_first_row():
    x = torch.zeros(5000, 300)
    assert count_nonfinite(x) == (0, None)
    x[3777, 5] = float("nan")
    x[4001, 7] = float("-inf")
    assert count_nonfinite(x) == (2, 3777)
    with pytest.raises(DataError, match=r"train \(shape \(5000, 300\)\) holds 2 NaN/inf.*row 3777"):
        check_finite(x, "train")
    assert count_nonfinite(torch.arange(3)) == (0, None)
    assert count_nonfinite(torch.tensor(float("nan"))) == (1, 0)
    assert count_nonfinite(torch.zeros(0, 4)) == (0, None)


def _largest_allocation_and_net(fn):
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    largest = max((e.cpu_memory_usage for e in prof.events()), default=0)
    net = sum(e.self_cpu_memory_usage for e in prof.key_averages())
    return largest, net


def test_nonfinite_scan_memory_is_bounded_and_released():
    x = torch.rand(4 * SCAN_CHUNK // 256, 256)  # 16 MiB of float32
    largest, net = _largest_allocation_and_net(lambda: check_finite(x, "x"))
    # one chunk of temporaries at a time, whatever the size of the data
    assert largest <= SCAN_CHUNK * x.element_size() + 4096 < x.nbytes / 3
    assert net <= 0  # nothing held after the scan returns
    # the measurement sees a whole-tensor scan (the scan this replaces)
    largest_whole, _ = _largest_allocation_and_net(lambda: bool(torch.isfinite(x).all()))
    assert largest_whole >= x.nbytes


@pytest.mark.parametrize("make", [lambda x: DynamicBinarized(x), lambda x: binarize_static(x)])
def test_binarizers_catch_nan(make):
    x = torch.rand(6, 4)
    x[2, 1] = float("nan")
    with pytest.raises(DataError, match=r"(DynamicBinarized|binarize_static) input.*1 NaN/inf.*row 2"):
        make(x)


def test_binarizers_take_bool_and_integer_grey_levels():
    data = DynamicBinarized(torch.tensor([[0, 1], [1, 1]], dtype=torch.uint8))
    assert data.x.dtype == torch.get_default_dtype()
    assert binarize_static(torch.tensor([[True, False]])).tolist() == [[1.0, 0.0]]
    with pytest.raises(DataError, match=r"DynamicBinarized input.*range \[0.0, 255.0\]"):
        DynamicBinarized(torch.tensor([[0, 255]], dtype=torch.uint8))


def test_model_input_names_model_argument_shape_and_origin():
    with pytest.raises(DataError, match=r"VAE argument 'x' has shape \(3,\), expected \(batch, 4\)"):
        check_model_input(torch.zeros(3), features=4, dtype=torch.float32, model="VAE")
    with pytest.raises(DataError, match=r"tuple of 2 elements.*\(x, labels\)"):
        check_model_input((torch.zeros(3, 4), torch.zeros(3)), features=4, dtype=torch.float32, model="VAE")
    bad = torch.zeros(3, 4)
    bad[1, 1] = float("nan")
    with batch_origin("training data, step 12"):
        with pytest.raises(DataError, match=r"VAE argument 'x' \(training data, step 12\).*1 NaN/inf"):
            check_model_input(bad, features=4, dtype=torch.float32, model="VAE")
    with pytest.raises(DataError) as info:
        check_model_input(bad, features=4, dtype=torch.float32, model="VAE")
    assert "step" not in str(info.value)  # outside batch_origin: no stale origin


def test_num_data_refuses_labels_and_non_integers():
    assert check_num_data(100, 10, model="VAE") == 100
    assert check_num_data(torch.tensor(100), 10, model="VAE") == 100
    with pytest.raises(DataError, match=r"VAE got a tensor of shape \(10,\).*\(x, labels\)"):
        check_num_data(torch.arange(10), 10, model="VAE")
    with pytest.raises(DataError, match="VAE: num_data must be an int"):
        check_num_data(2.5, 2, model="VAE")
    with pytest.raises(DataError, match="num_data=5 is smaller than the batch of 10"):
        check_num_data(5, 10, model="VAE")


def test_defer_finite_waits_inside_a_step_and_raises_check_finites_error():
    from hybridpgm.data.validation import defer_finite
    from hybridpgm.train.deferred_checks import deferring_checks

    x = torch.zeros(4, 3)
    x[2, 1] = float("-inf")
    with pytest.raises(DataError, match=r"w \(shape \(4, 3\)\) holds 1 NaN/inf value\(s\), the first in row 2"):
        defer_finite(x, "w")
    with deferring_checks() as pending:
        assert defer_finite(x, "w") is x  # no raise yet
        defer_finite(torch.zeros(0, 3), "empty")  # nothing to check
        defer_finite(torch.ones(2, dtype=torch.long), "integers")  # always finite
    assert len(pending.flags) == 1 and not bool(pending.flags[0])
    with pytest.raises(DataError, match=r"w \(shape \(4, 3\)\)"):
        pending.raise_first_failure()


def test_check_model_input_takes_leading_dimensions_only_when_asked():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(DataError, match=r"VAE argument 'x' has shape \(2, 3, 4\), expected \(batch, 4\)$"):
        check_model_input(x, features=4, dtype=torch.float32, model="VAE")
    assert check_model_input(x, features=4, dtype=torch.float32, model="VAE", leading_dims=True) is x
    with pytest.raises(DataError, match=r"has shape \(4,\), expected \(batch, 4\) or \(\.\.\., batch, 4\)"):
        check_model_input(torch.zeros(4), features=4, dtype=torch.float32, model="VAE", leading_dims=True)


def test_check_no_extra_arguments_names_what_came_after_x():
    check_no_extra_arguments((), model="M", method="model", keywords="num_data=...")
    with batch_origin("training data, step 3"):
        with pytest.raises(DataError, match=r"M.guide\(x, \.\.\.\) got 2 positional argument\(s\) after x "
                                            r"\(training data, step 3\), the first a tensor of shape \(5,\) and "
                                            r"dtype torch.int64: was the batch an \(x, labels\) tuple\?.*"
                                            r"keywords \(num_data=\.\.\.\)"):
            check_no_extra_arguments((torch.arange(5), 1), model="M", method="guide", keywords="num_data=...")


@pytest.mark.parametrize("x, kind", [([0, 1, 1], "list"), (None, "NoneType"), (np.array([0.0, 1.0]), "ndarray")])
def test_check_binary_refuses_a_non_tensor_by_name(x, kind):
    """Before: a raw AttributeError (``'bool' object has no attribute 'all'``), and a NumPy array was returned
    unchecked."""
    with pytest.raises(DataError, match=f"^pixels is a {kind}, expected a tensor of 0/1 entries$"):
        check_binary(x, "pixels")


@pytest.mark.parametrize("x, kind", [([0, 1, 1], "list"), (None, "NoneType"), (np.array([0.0, 1.0]), "ndarray")])
def test_check_features_refuses_a_non_tensor_by_name(x, kind):
    """Before: a raw AttributeError (``... object has no attribute 'dim'``)."""
    with pytest.raises(DataError, match=rf"^features is a {kind}, expected a tensor of shape \(N, 4\)$"):
        check_features(x, 4, "features")


def test_check_binary_and_check_features_take_good_tensors_and_refuse_bad_ones():
    """Guard (passes before and after): tensors are checked as before."""
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    assert check_binary(x) is x and check_features(x, 4) is x
    with pytest.raises(DataError, match=r"pixels \(shape \(2,\)\) must be binary"):
        check_binary(torch.tensor([0.0, float("nan")]), "pixels")
    with pytest.raises(DataError, match=r"features has shape \(4,\), expected \(N, 4\)"):
        check_features(x[0], 4, "features")


@pytest.mark.parametrize("source", [torch.uint8, torch.int32, torch.int64])
def test_integer_data_cost_one_host_read(host_reads, source):
    """Fails on the old code: the range of integer data was read as its minimum and its maximum, one by one (two
    ``__int__``, on CUDA two synchronisations); now one flag, ``model_dtype_checks``' own."""
    x = torch.tensor([[0, 1, 7], [1, 0, 100]]).to(source)
    host_reads.clear()
    y = as_model_dtype(x, torch.float32, "x")
    assert len(host_reads) == 1, host_reads
    assert y.dtype == torch.float32 and y.tolist() == x.tolist()
    from hybridpgm.data.validation import model_dtype_checks  # new with the one flag

    converted, outside, error = model_dtype_checks(torch.tensor([2 ** 24 + 1]), torch.float32, "x")
    assert bool(outside) and converted.dtype == torch.float32
    with pytest.raises(DataError, match=r"x has dtype torch.int64 with values in \[16777217, 16777217\]"):
        raise error()
