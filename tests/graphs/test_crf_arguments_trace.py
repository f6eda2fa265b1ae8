"""A CRF traced with torch.jit.trace keeps validation's checks (hybridpgm/graphs/crf_arguments.py): a traced decode
refuses a length past T and a NaN potential as the eager decode does, instead of answering."""

import warnings

import pytest
import torch

from hybridpgm.graphs import CRFHead


class _Decode(torch.nn.Module):
    def __init__(self, head, query):
        super().__init__()
        self.head, self.query = head, query

    def forward(self, unary, lengths):
        crf = self.head(unary, lengths)
        return crf.argmax() if self.query == "argmax" else crf.log_partition


@pytest.fixture
def validating():
    before = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(True)
    yield
    torch.distributions.Distribution.set_default_validate_args(before)


def _setup(query):
    g = torch.Generator().manual_seed(0)
    head = CRFHead(3)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(generator=g)
    unary = torch.randn(3, 5, 3, generator=g)
    module = _Decode(head, query)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings, the deprecation of torch.jit.trace, the TrainingWarning
        traced = torch.jit.trace(module, (unary, torch.tensor([5, 2, 1])), check_trace=False)
    return module, traced, unary


@pytest.mark.parametrize("query", ["argmax", "log_partition"])
def test_traced_crf_serves_valid_inputs(validating, query):
    module, traced, unary = _setup(query)
    for lengths in ([5, 2, 1], [1, 5, 3], [0, 5, 5]):
        assert torch.allclose(traced(unary, torch.tensor(lengths)), module(unary, torch.tensor(lengths)))


@pytest.mark.parametrize("query", ["argmax", "log_partition"])
def test_traced_crf_refuses_a_length_past_T(validating, query):
    module, traced, unary = _setup(query)
    with pytest.raises(torch.jit.Error, match=r"ModelSpecError: LinearChainCRF: lengths outside 0\.\.5"):
        traced(unary, torch.tensor([9, 2, 1]))


@pytest.mark.parametrize("query", ["argmax", "log_partition"])
def test_traced_crf_refuses_a_nan_potential(validating, query):
    module, traced, unary = _setup(query)
    bad = unary.clone()
    bad[0, 1, 2] = float("nan")
    with pytest.raises(torch.jit.Error, match="ModelSpecError: LinearChainCRF: unary log-potentials contain NaN"):
        traced(bad, torch.tensor([5, 2, 1]))
    padding = unary.clone()
    padding[1, 4, 0] = float("nan")  # past the second sequence's length 2: ignored, as eagerly
    assert torch.equal(traced(padding, torch.tensor([5, 2, 1])), module(padding, torch.tensor([5, 2, 1])))
