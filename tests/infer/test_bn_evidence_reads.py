"""What reading BayesNet evidence costs (:func:`hybridpgm.infer.bn_evidence._states`): one host read per node,
integer or float, and under :func:`torch.func.vmap` the queries' own ``ConfigError`` for either dtype; the
messages for an unsigned or ``bool`` dtype, which has no marker for "not observed", and for an infinity, outside
the states in both families."""

import math

import pytest
import torch
from torch.overrides import TorchFunctionMode

from hybridpgm.errors import ConfigError, EvidenceError
from hybridpgm.graphs import MarkovNet
from hybridpgm.infer.bn_evidence import _states
from tests.graphs.bn_helpers import single_thread, sprinkler  # noqa: F401 (autouse fixture)

_READS = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "equal", "numpy"}


class _Reads(TorchFunctionMode):
    """Counts the tensor methods that read values to the host."""

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in _READS:
            self.reads.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("evidence, everywhere, nowhere", [
    (torch.tensor([1, 0, 1]), True, False), (torch.tensor([1, -1, 0]), False, False),
    (torch.tensor([-1, -1]), False, True), (torch.tensor(1), True, False),
    (torch.tensor([1.0, math.nan, -1.0]), False, False), (torch.tensor([True, False]), True, False)])
def test_evidence_of_a_node_costs_one_host_read(evidence, everywhere, nowhere):
    """Review B F3: before, integer evidence read its minimum and its maximum one by one (two ``__int__``),
    though the docstring said one read (the float case, one read before too, is a guard)."""
    with _Reads() as counted:
        states, all_rows, no_row = _states("b", evidence, 2)
    assert len(counted.reads) == 1, counted.reads
    assert (all_rows, no_row) == (everywhere, nowhere) and states.dtype == torch.long


@pytest.mark.parametrize("rows", [torch.tensor([0, 1, 1]), torch.tensor([0.0, 1.0, 1.0])])
def test_vmap_over_integer_or_float_evidence_gets_the_queries_config_error(rows):
    """The one read is a ``tolist``, whose error under vmap does not name it; the query still says that vmap is
    not supported.  Before: float evidence gave torch's "Cannot access data pointer of Tensor that doesn't have
    storage" (a RuntimeError); the integer case is a guard."""
    bn = sprinkler()
    with pytest.raises(ConfigError, match=r"BayesNet\.posterior .*torch\.func\.vmap"):
        torch.func.vmap(lambda x: bn.posterior("rain", {"wet": x}))(rows)


@pytest.mark.parametrize("dtype, value", [(torch.uint8, 255), (torch.bool, True)])
def test_unsigned_and_bool_evidence_is_told_it_has_no_missing_marker(dtype, value):
    """Review B F5: before, "...; only -1 means not observed", a value these dtypes cannot hold."""
    with pytest.raises(EvidenceError, match=rf"value {int(value)} out of range for 'b' \(cardinality 1\) in row 1; "
                                            rf"dtype {dtype} has no marker for not observed"):
        _states("b", torch.tensor([0, value], dtype=dtype), 1)
    with pytest.raises(EvidenceError, match=r"value -2 out of range .*; only -1 means not observed"):
        _states("b", torch.tensor([0, -2], dtype=torch.int8), 2)


def test_minus_inf_is_outside_the_states_in_both_families():
    """Review B F5: BayesNet said "out of range", MarkovNet (before) "holds non-integer values [-inf]"."""
    evidence = {"wet": torch.tensor([1.0, -math.inf, 0.0])}
    with pytest.raises(EvidenceError, match=r"value -inf out of range for 'wet' \(cardinality 2\) in row 1"):
        sprinkler().log_evidence(evidence)
    mrf = MarkovNet({"wet": 2}).add_factor("w", ["wet"], torch.zeros(2))
    with pytest.raises(EvidenceError, match=r"evidence for 'wet' has value\(s\) \[-inf\] outside 0..1 "
                                            r"\(the first in row 1\)"):
        mrf.log_partition(evidence=evidence)
