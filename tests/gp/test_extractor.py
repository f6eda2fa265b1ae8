"""A feature extractor's failure is a DataError naming the inputs, and the autocast precision where one is on
(hybridpgm/gp/extractor.py)."""

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.gp.extractor import extract_features


class NoReducedPrecision(torch.nn.Module):
    """Fails as a kernel without a reduced-precision implementation does (oneDNN's CPU LSTM under bf16)."""

    def forward(self, x):
        if torch.is_autocast_enabled(x.device.type):
            raise RuntimeError("could not create a primitive descriptor")
        return x.flatten(1)


def test_features_pass_through():
    x = torch.randn(3, 2, 2)
    assert torch.equal(extract_features(NoReducedPrecision(), x), x.flatten(1))


def test_a_failure_under_autocast_names_the_precision():
    """Before, the message blamed the inputs' shape alone (``hybridpgm train gp-lstm --precision bf16`` on a CPU)."""
    x = torch.randn(3, 2, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(DataError, match=r"shape \(3, 2, 2\) and dtype torch.float32 under autocast to "
                                            r"torch.bfloat16 on cpu .*full precision.*primitive descriptor"):
            extract_features(NoReducedPrecision(), x)


def test_a_shape_failure_names_the_shape_only():
    with pytest.raises(DataError, match=r"shape \(3, 5\) and dtype torch.float32: mat1 and mat2") as info:
        extract_features(torch.nn.Linear(4, 2), torch.randn(3, 5))
    assert "autocast" not in str(info.value)


def test_float32_inputs_to_a_double_network_name_the_networks_dtype_and_the_cast():
    """Found by an API audit: an SVDeepKernelGP made ``.double()`` and given float32 inputs said only torch's
    'mat1 and mat2 must have the same dtype'; the message now says which dtype the network holds."""
    with pytest.raises(DataError, match=r"dtype torch.float32 \(the network's parameters are torch.float64: pass "
                                        r"the inputs in that dtype, x.to\(torch.float64\)\): mat1 and mat2"):
        extract_features(torch.nn.Linear(4, 2).double(), torch.randn(3, 4))


class _OutOfMemory(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.fail = False

    def forward(self, x):
        if self.fail:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.lin(x)


def test_out_of_memory_reaches_the_caller_as_it_is():
    """Before, a torch.OutOfMemoryError became a DataError blaming the inputs: a caller's
    ``except torch.OutOfMemoryError`` (retry with a smaller batch) no longer caught it."""
    from hybridpgm.gp import DeepKernelGP

    net = _OutOfMemory()
    gen = torch.Generator().manual_seed(0)
    gp = DeepKernelGP(torch.randn(10, 2, generator=gen), torch.randn(10, generator=gen), net).eval()
    net.fail = True
    with pytest.raises(torch.OutOfMemoryError, match="out of memory") as info:
        gp.predict(torch.randn(3, 2, generator=gen))
    assert not isinstance(info.value, DataError)
    with pytest.raises(torch.OutOfMemoryError) as info:
        extract_features(net, torch.zeros(3, 2))
    assert not isinstance(info.value, DataError)


def test_the_probe_of_deep_kernel_gp_names_the_training_inputs_shape():
    """INPUTS audit (session 39, finding 9): ``DeepKernelGP(train_x=int64 (20, 3), ...)`` said "cannot take inputs
    of shape (2, 3)", the shape of its probe of the first two rows, not the user's ``train_x``."""
    from hybridpgm.gp import DeepKernelGP

    with pytest.raises(DataError, match=r"feature extractor cannot take inputs of shape \(20, 3\) and dtype "
                                        r"torch\.int64"):
        DeepKernelGP(torch.randint(0, 3, (20, 3)), torch.randn(20), feature_extractor=torch.nn.Linear(3, 2))
    with pytest.raises(DataError, match=r"inputs of shape \(7, 3\) and dtype torch\.int64"):
        extract_features(torch.nn.Linear(3, 2), torch.zeros(2, 3, dtype=torch.long), shape=(7, 3))
