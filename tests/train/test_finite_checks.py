"""The finiteness tests of losses, gradients and parameters (hybridpgm/train/finite_checks.py)."""

import pytest
import torch

from hybridpgm.errors import TrainingDivergedError
from hybridpgm.train.finite_checks import _all_finite, check_finite_parameters


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
def test_all_finite_sees_every_non_finite_value(bad):
    tensors = [torch.randn(3, 4), torch.empty(0), torch.randn(5, dtype=torch.float64)]
    if bad is not None:
        tensors[2][3] = bad
    assert bool(_all_finite(tensors, torch.device("cpu"))) is (bad is None)
    assert bool(_all_finite([torch.tensor(1e300, dtype=torch.float64), torch.ones(2)], torch.device("cpu")))


def test_parameters_whose_sum_overflows_are_finite_and_a_nan_among_them_is_found():
    """The one-sum screen of check_finite_parameters cannot tell huge finite values from an overflow:
    the exact check decides."""
    module = torch.nn.Linear(4, 3)
    with torch.no_grad():
        module.weight.fill_(3e38)
    check_finite_parameters(module, {}, step=5, checkpoint=None)
    with torch.no_grad():
        module.bias[1] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"parameters \['bias'\].*after step 5"):
        check_finite_parameters(module, {}, step=5, checkpoint=None)
