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


@pytest.mark.parametrize("given", ["tensor", "list"])
@pytest.mark.parametrize("length", [-1, -3, 5])
def test_a_length_outside_0_to_T_is_refused_with_validation_off_too_where_reading_is_free(length, given):
    """VAESPLIT (session 40): with ``validate_args=False`` a negative length gave a finite log Z and log-probability
    (of no labelling at all) and one above ``T`` a raw ``RuntimeError`` from the forward recursion's indexing.  On
    the host the check reads no device memory, so it runs with validation off too: validation's message."""
    unary, transition = torch.zeros(3, 4, 2), torch.zeros(2, 2)
    lengths = [4, length, 2]
    lengths = torch.tensor(lengths) if given == "tensor" else lengths
    with pytest.raises(ModelSpecError, match=rf"lengths must be integers in 0\.\.4, got {length} at index \[1\] "
                                             r"\(1 of 3 outside\)"):
        LinearChainCRF(unary, transition, lengths=lengths, validate_args=False)
    assert LinearChainCRF(unary, transition, lengths=[4, 0, 2], validate_args=False).log_partition[1] == 0


def test_lengths_on_an_accelerator_are_checked_inside_fits_step_only(monkeypatch):
    """Where reading the lengths would synchronise a device (taken as such here), validation off checks them only
    inside fit's step, deferred to its one host read (:func:`~hybridpgm.train.deferred_checks.deferring_checks`),
    and not at all outside it: no host read of its own either way."""
    from hybridpgm.graphs import crf_arguments
    from hybridpgm.train.deferred_checks import deferring_checks

    monkeypatch.setattr(crf_arguments, "reading_is_free", lambda t: False)
    unary, transition, lengths = torch.zeros(3, 4, 2), torch.zeros(2, 2), torch.tensor([4, 7, 2])
    LinearChainCRF(unary, transition, lengths=lengths, validate_args=False)  # not read: documented
    with deferring_checks() as pending:
        LinearChainCRF(unary, transition, lengths=lengths, validate_args=False)  # recorded, not read
    assert len(pending.flags) == 1
    with pytest.raises(ModelSpecError, match=r"lengths must be integers in 0\.\.4, got 7 at index \[1\]"):
        pending.raise_first_failure()  # the step's read


@pytest.mark.parametrize("given", ["list", "numpy"])
def test_lengths_given_as_numbers_to_a_crf_on_an_accelerator_are_checked_on_the_host(monkeypatch, given):
    """REVIEWB (session 40): numbers are host memory whatever the CRF's device, so with validation off they are
    checked outside fit too (as the docs say of "lengths given on the host (a CPU tensor, numbers)"), without a
    read of the CRF's own tensors (taken here as on an accelerator); before, only a CPU tensor was."""
    import numpy as np

    from hybridpgm.graphs import crf_arguments

    monkeypatch.setattr(crf_arguments, "reading_is_free", lambda t: False)  # the CRF's tensors on an accelerator
    unary, transition = torch.zeros(3, 4, 2), torch.zeros(2, 2)
    lengths = [4, 7, 2] if given == "list" else np.array([4, 7, 2])
    with pytest.raises(ModelSpecError, match=r"lengths must be integers in 0\.\.4, got 7 at index \[1\] "
                                             r"\(1 of 3 outside\)"):
        LinearChainCRF(unary, transition, lengths=lengths, validate_args=False)
    ok = [4, 0, 2] if given == "list" else np.array([4, 0, 2])
    assert LinearChainCRF(unary, transition, lengths=ok, validate_args=False).log_partition[1] == 0
