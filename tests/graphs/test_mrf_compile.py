"""``hybridpgm.graphs.mrf_compile``: values that are not numbers at all (a string, ``None``, a dict, an object)
are refused with an :class:`~hybridpgm.errors.EvidenceError` naming the variable and the value (the checks of
values that are numbers but not states are in ``test_mrf_evidence_checks.py``)."""

import gc
import weakref

import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import MarkovNet, mrf_compile


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


def test_float16_evidence_gives_float32s_answers():
    """Found by an audit: float16 evidence crashed compiling (``clamp_max(2.0 ** 62)`` overflows float16); its
    small whole states now read as float32's do."""
    mrf = MarkovNet({"a": 3, "b": 2}).add_factor("ab", ["a", "b"], torch.randn(3, 2, generator=torch.Generator()
                                                                               .manual_seed(0)))
    want = mrf.marginals(evidence={"a": torch.tensor([1.0, float("nan")])})
    got = mrf.marginals(evidence={"a": torch.tensor([1.0, float("nan")], dtype=torch.float16)})
    for v in want:
        torch.testing.assert_close(got[v], want[v], rtol=0, atol=0)
    half = {"a": torch.tensor([2.0, -1.0], dtype=torch.float16)}
    assert mrf.map_assignment(method="exact", evidence=half)["a"].tolist()[0] == 2
    torch.testing.assert_close(mrf.log_partition(evidence=half),
                               mrf.log_partition(evidence={"a": torch.tensor([2.0, -1.0])}), rtol=0, atol=0)


def _pairwise_families(families: int) -> MarkovNet:
    g = torch.Generator().manual_seed(0)
    net = MarkovNet({v: 2 for v in "abcd"}).add_factors("ring", [["a", "b"], ["b", "c"], ["c", "d"]],
                                                           torch.randn(3, 2, 2, generator=g))
    return net.add_factor("chord", ["d", "a"], torch.randn(2, 2, generator=g)) if families == 2 else net


@pytest.mark.parametrize("families", [1, 2])
def test_every_compile_of_a_net_gives_the_same_variables_tensor(families):
    """Before, ``torch.cat`` built a new ``[F, k]`` tensor at every compile, so the engines' caches keyed on it
    (:func:`hybridpgm.infer.bp_engine._structure`) missed at every query."""
    net = _pairwise_families(families)
    variables = net.factor_graph().groups[0].variables
    assert net.factor_graph().groups[0].variables is variables
    assert net.factor_graph({"a": torch.tensor([0, 1])}).groups[0].variables is variables
    assert variables.tolist() == [[0, 1], [1, 2], [2, 3]] + ([[3, 0]] if families == 2 else [])


def test_a_changed_scope_is_compiled_afresh_and_nothing_outlives_the_net():
    net = _pairwise_families(2)
    before = net.factor_graph().groups[0].variables
    with torch.no_grad():
        net._scope_1[0] = torch.tensor([3, 1])  # an in-place change (its version counter moves)
    after = net.factor_graph().groups[0].variables
    assert after is not before and after.tolist() == [[0, 1], [1, 2], [2, 3], [3, 1]]
    assert any(entry[2] is after for entry in mrf_compile._GROUP_VARIABLES[net].values())
    refs = [weakref.ref(net), weakref.ref(after)]
    del net, before, after
    gc.collect()
    assert all(ref() is None for ref in refs)  # the compiled variables went with the net
