"""``hybridpgm.graphs.mrf_compile``: values that are not numbers at all (a string, ``None``, a dict, an object)
are refused with an :class:`~hybridpgm.errors.EvidenceError` naming the variable and the value (the checks of
values that are numbers but not states are in ``test_mrf_evidence_checks.py``)."""

import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import MarkovNet


def _net():
    table = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], table)


class _Thing:
    def __repr__(self):
        return "<a thing>"


NOT_NUMBERS = [("1", "str '1'"), (None, "NoneType None"), ({"x": 1}, r"dict \{'x': 1\}"),
               (_Thing(), "_Thing <a thing>"), ([1, "a"], r"list \[1, 'a'\]"), (b"1", "bytes b'1'")]


@pytest.mark.parametrize("value, shown", NOT_NUMBERS)
@pytest.mark.parametrize("query", ["marginals", "log_partition", "sample"])
def test_evidence_that_is_not_a_number_is_named(query, value, shown):
    """Before: a raw TypeError or RuntimeError from ``torch.as_tensor`` (``new(): invalid data type 'str'``)."""
    m = _net()
    with pytest.raises(EvidenceError, match=r"MarkovNet evidence: the value of 'a' must be a state number or a "
                                            r"tensor of states, got " + shown):
        getattr(m, query)(**({"num_samples": 2} if query == "sample" else {}), evidence={"a": value})


@pytest.mark.parametrize("value, shown", [NOT_NUMBERS[0], NOT_NUMBERS[2]])  # None: b unobserved in model
def test_an_assignment_that_is_not_a_number_is_named(value, shown):
    m = _net()
    with pytest.raises(EvidenceError, match=r"MarkovNet.score: the value of 'a' .*got " + shown):
        m.score({"a": value, "b": torch.tensor(0)})
    with pytest.raises(EvidenceError, match=r"MarkovNet.model: the value of 'b' .*got " + shown):
        TraceEnum_ELBO(max_plate_nesting=1).loss(m.model, lambda *a, **k: None, {"a": torch.tensor([1]), "b": value})


def test_numbers_lists_and_arrays_are_still_evidence():
    import numpy as np

    m = _net()
    want = m.marginals(evidence={"a": torch.tensor([1, -1])})["b"]
    for value in ([1, -1], np.array([1, -1]), (1.0, float("nan"))):
        assert torch.allclose(m.marginals(evidence={"a": value})["b"], want, atol=1e-12)
    assert torch.allclose(m.marginals(evidence={"a": 1})["b"], want[0], atol=1e-12)
