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
