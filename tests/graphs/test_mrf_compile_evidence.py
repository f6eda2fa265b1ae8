"""MarkovNet evidence follows the one convention BayesNet's follows too (:func:`hybridpgm.graphs.mrf_compile
.evidence_states`): ``-1`` (in an integer or a float tensor) or ``NaN`` (float) is unobserved; any other negative
value, and any non-integer, raises an ``EvidenceError`` naming the variable, the value and its row, at every
entry point that takes evidence."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import MarkovNet
from hybridpgm.graphs.mrf_compile import evidence_states


def _net():
    g = torch.Generator().manual_seed(3)
    m = MarkovNet({"a": 2, "b": 3, "c": 2})
    m.add_factor("ab", ["a", "b"], torch.randn(2, 3, generator=g, dtype=torch.float64))
    m.add_factor("bc", ["b", "c"], torch.randn(3, 2, generator=g, dtype=torch.float64))
    return m


QUERIES = {
    "log_partition exact": lambda m, e: m.log_partition("exact", evidence=e),
    "log_partition bp": lambda m, e: m.log_partition("bp", evidence=e),
    "log_partition mean_field": lambda m, e: m.log_partition("mean_field", evidence=e),
    "marginals": lambda m, e: m.marginals("exact", evidence=e),
    "map_assignment": lambda m, e: m.map_assignment(evidence=e),
    "sample": lambda m, e: m.sample(4, evidence=e, generator=torch.Generator().manual_seed(1)),
    "distribution": lambda m, e: m.distribution(e).log_prob(torch.tensor([0, 1, 0])),
    "factor_graph": lambda m, e: m.factor_graph(e).valid,
}


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return torch.equal(a, b)


@pytest.mark.parametrize("query", sorted(QUERIES))
@pytest.mark.parametrize("value, shown", [
    (torch.tensor([0, -2, 1]), r"evidence for 'b' has value\(s\) \[-2\] outside 0..2 \(the first in row 1\)"),
    (torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64),
     r"evidence for 'b' has value\(s\) \[-2.0\] outside 0..2 \(the first in row 2\)"),
    (torch.tensor([-1.5, 0.0, 1.0]), r"evidence for 'b' holds non-integer values \[-1.5\] \(the first in row 0\)"),
    (torch.tensor([[0, -1, 1], [2, -7, -1]]),
     r"evidence for 'b' has value\(s\) \[-7\] outside 0..2 \(the first at index \(1, 1\)\)"),
    (torch.tensor(-3), r"evidence for 'b' has value\(s\) \[-3\] outside 0..2 \(a scalar\)"),
])
def test_negatives_other_than_minus_one_and_non_integers_are_refused_by_name(query, value, shown):
    """Before: -2, -2.0, -7 and -3 were read as unobserved (the answer without evidence in that row); -1.5 was
    refused without its row."""
    with pytest.raises(EvidenceError, match=shown):
        QUERIES[query](_net(), {"b": value})


@pytest.mark.parametrize("query", sorted(QUERIES))
def test_minus_one_in_a_float_tensor_is_unobserved(query):
    """A guard (passes before and after): float -1.0, integer -1 and NaN are the same 'unobserved'."""
    m, ask = _net(), QUERIES[query]
    as_long = ask(m, {"b": torch.tensor([2, -1, 0]), "a": torch.tensor([-1, 1, -1])})
    as_float = ask(m, {"b": torch.tensor([2.0, -1.0, 0.0]), "a": torch.tensor([-1.0, 1.0, -1.0])})
    as_nan = ask(m, {"b": torch.tensor([2.0, math.nan, 0.0]), "a": torch.tensor([math.nan, 1.0, math.nan])})
    assert _same(as_float, as_long) and _same(as_nan, as_long)


def test_uint8_and_bool_evidence_hold_states_only():
    """A guard: a uint8 255 is out of range (never 'unobserved', though it equals -1 as a wrapped int8), and
    bool evidence is the states 0 / 1."""
    m = _net()
    with pytest.raises(EvidenceError, match=r"evidence for 'a' has value\(s\) \[255\] outside 0..1"):
        m.log_partition(evidence={"a": torch.tensor([1, 255], dtype=torch.uint8)})
    assert torch.equal(m.log_partition(evidence={"a": torch.tensor([True, False])}),
                       m.log_partition(evidence={"a": torch.tensor([1, 0])}))


class _Ops(TorchDispatchMode):
    """Counts the aten ops run under it, host reads (``_local_scalar_dense``) apart."""

    def __init__(self):
        super().__init__()
        self.ops, self.reads = [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads += 1
        else:
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("evidence, most", [(torch.tensor([2, -1, 0, 1] * 25), 3),
                                            (torch.tensor([2.0, -1.0, math.nan, 1.0] * 25), 6)])
def test_the_check_of_good_evidence_is_one_pass_and_one_read(evidence, most):
    """Review B F1: good evidence costs a clamp, a comparison and a reduction (float: with the NaN replaced and
    the values rounded first, and the cast), then one host read.  Before: a mask per rule -- 11 ops for integer
    evidence (4x slower), 22 for float; the masks naming the bad values are built on the error path only."""
    with _Ops() as counted:
        states = evidence_states("b", evidence, 3)
    assert states.dtype == torch.long and states.tolist() == [2, -1, -1 if evidence.is_floating_point() else 0, 1] * 25
    assert counted.reads == 1 and len(counted.ops) <= most, counted.ops


@pytest.mark.parametrize("dtype, value", [(torch.uint8, 255), (torch.bool, True)])
def test_unsigned_and_bool_evidence_is_told_it_has_no_missing_marker(dtype, value):
    """Review B F5: before, the message said "only -1 (or NaN in a float tensor) means unobserved", which a uint8
    or bool tensor cannot hold."""
    m = MarkovNet({"a": 1}).add_factor("a", ["a"], torch.zeros(1))
    with pytest.raises(EvidenceError, match=rf"value\(s\) \[{int(value)}\] outside 0..0 \(the first in row 1\); "
                                            rf"dtype {dtype} has no marker for unobserved"):
        m.log_partition(evidence={"a": torch.tensor([0, value], dtype=dtype)})


@pytest.mark.parametrize("dtype, card", [(torch.bfloat16, 300), (torch.float16, 2052)])
def test_a_half_precision_state_equal_to_the_cardinality_is_refused(dtype, card):
    """The bound ``card - 1`` is compared in float32: in bfloat16 299 rounds to 300 (in float16 2051 to 2052),
    so the value ``card`` passed the check and failed later inside ``one_hot`` with torch's raw error; a state
    below the bound still reads exactly."""
    with pytest.raises(EvidenceError, match=rf"value\(s\) \[{card}\.0\] outside 0\.\.{card - 1}"):
        evidence_states("x", torch.tensor([float(card)], dtype=dtype), card)
    assert evidence_states("x", torch.tensor([256.0, -1.0], dtype=dtype), card).tolist() == [256, -1]


def test_without_a_cardinality_an_infinity_is_no_state():
    """``card=None`` (a direct call) has no upper bound, yet ``+inf`` is no state: refused and named, as ``-inf``
    is (it was read as a huge state)."""
    for value in (math.inf, -math.inf):
        with pytest.raises(EvidenceError, match=rf"value\(s\) \[{value}\] outside 0, 1, \.\.\."):
            evidence_states("x", torch.tensor([1.0, value]))
    assert evidence_states("x", torch.tensor([1e6, float("nan")])).tolist() == [1000000, -1]
