"""What :func:`hybridpgm.graphs.crf_arguments.checked_arguments` refuses without reading a value."""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import LinearChainCRF


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("lengths", [torch.tensor([4.0, 2.5, 3.0]), torch.tensor([True, True, False])],
                         ids=["float", "bool"])
def test_lengths_of_a_non_integer_dtype_are_refused_with_validation_off_too(validate, lengths):
    """INPUTS audit (session 39, finding 9): with ``validate_args=False`` float lengths ``[4., 2.5, 3]`` scored as
    ``[4, 2, 3]`` (``.long()`` truncates), silently; the dtype check reads no value, so it runs either way."""
    unary, transition = torch.zeros(3, 4, 2), torch.zeros(2, 2)
    with pytest.raises(ModelSpecError, match=rf"lengths must be integers in 0\.\.4, got dtype {lengths.dtype}"):
        LinearChainCRF(unary, transition, lengths=lengths, validate_args=validate)
    assert LinearChainCRF(unary, transition, lengths=torch.tensor([4, 2, 3]), validate_args=validate).batch_shape \
        == (3,)
