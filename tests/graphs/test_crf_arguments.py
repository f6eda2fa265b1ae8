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


@pytest.mark.parametrize("validate", [True, False])
def test_lengths_of_a_batch_that_the_transitions_make_are_taken(validate):
    """REVIEWA (session 39): one ``unary [T, L]`` under a batch of ``B`` transitions is a batch of ``B`` CRFs, and
    ``[B]`` lengths give one length to each; 313140a compared the lengths with ``unary``'s batch shape alone and
    refused them ("would enlarge the sequences' batch shape () to (2,)").  Each CRF scores as it does alone."""
    torch.manual_seed(0)
    unary, transition, lengths = torch.randn(4, 3), torch.randn(2, 3, 3), torch.tensor([4, 2])
    crf = LinearChainCRF(unary, transition, lengths=lengths, validate_args=validate)
    assert crf.batch_shape == (2,)
    y = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0]])
    for b in range(2):
        alone = LinearChainCRF(unary[: lengths[b]], transition[b], validate_args=validate)
        torch.testing.assert_close(crf.log_prob(y)[b], alone.log_prob(y[b, : lengths[b]]))
    with pytest.raises(ModelSpecError, match=r"lengths of shape \(2, 1\) would enlarge the sequences' batch shape "
                                             r"\(2,\) to \(2, 2\)"):
        LinearChainCRF(unary, transition, lengths=lengths[:, None], validate_args=validate)
