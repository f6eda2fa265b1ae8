"""MarkovNet.model under Pyro's JitTraceEnum_ELBO: a compiled check names the eager error's class and the problem,
and a check of the model's tables does not blame the batch."""

import warnings

import pyro
import pytest
import torch
from pyro.infer import JitTraceEnum_ELBO

from hybridpgm.graphs import MarkovNet

VALUES = {"a": torch.tensor([0, 1, 1, 1]), "b": torch.tensor([1, 1, 1, 0])}


@pytest.fixture(autouse=True)
def param_store():
    with pyro.get_param_store().scope():
        yield


def _compiled():
    """A chain a - b - c and its JitTraceEnum_ELBO loss compiled on VALUES."""
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.nn.Parameter(torch.zeros(2, 2)))
    mrf.add_factor("bc", ["b", "c"], torch.nn.Parameter(torch.zeros(2, 2)))
    elbo = JitTraceEnum_ELBO(max_plate_nesting=1)
    model, guide = mrf.model, (lambda values: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings, the deprecation of torch.jit.trace, the TrainingWarning
        elbo.differentiable_loss(model, guide, VALUES)
    return mrf, lambda values: elbo.differentiable_loss(model, guide, values)


def test_a_state_outside_a_variable_is_an_evidence_error():
    """Before: ``hybridpgm.errors.DataError: check 'error' of assignment_states`` (the builder's name)."""
    _, loss = _compiled()
    with pytest.raises(torch.jit.Error) as refused:
        loss({"a": torch.tensor([0, 1, 2, 1]), "b": VALUES["b"]})
    assert ("hybridpgm.errors.EvidenceError: MarkovNet.model: the values of 'a' hold values that are not states "
            "0..1 [a hybridpgm data check compiled by torch.jit.trace") in str(refused.value)


def test_a_non_finite_table_is_a_model_spec_error_not_the_batchs():
    """Before: ``hybridpgm.errors.DataError: check 'ModelSpecError' [... evaluate this batch with the eager ELBO
    ...]`` for a table that a diverged step made NaN."""
    mrf, loss = _compiled()
    with torch.no_grad():
        for p in mrf.parameters():
            p.fill_(float("nan"))
    with pytest.raises(torch.jit.Error) as refused:
        loss(VALUES)
    message = str(refused.value)
    assert ("hybridpgm.errors.ModelSpecError: MarkovNet: factor 'ab' has non-finite log-potentials (NaN or inf) "
            "[a hybridpgm check of the model, not of the batch") in message
    assert "evaluate this batch" not in message
