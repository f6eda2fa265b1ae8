"""BeliefPropagation's options assigned after construction: checked as the constructor checks them.

``bp.damping = 1.0`` used to be accepted and answered the initial (uniform) beliefs flagged ``converged``;
``num_iters = 0`` gave a misleading NaN error and ``tol = -1`` never converged, without an error."""

import base64
import pickle

import pytest
import torch

import hybridpgm.infer.belief_propagation as bp_module
from hybridpgm.errors import ConfigError
from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import BeliefPropagation
from tests.option_contract import assert_refused_as_by_the_constructor

#: ``pickle.dumps(BeliefPropagation(30, 0.2, 1e-5, max_product=True, check_every=5), protocol=4)`` made by the
#: release before the options were checked attributes (HEAD 82e8bc4)
OLD_PICKLE = ("gASVnAAAAAAAAACMImh5YnJpZHBnbS5pbmZlci5iZWxpZWZfcHJvcGFnYXRpb26UjBFCZWxpZWZQcm9wYWdhdGlvbpSTlCmB"
              "lH2UKIwJbnVtX2l0ZXJzlEsejAdkYW1waW5nlEc/yZmZmZmZmowDdG9slEc+5Pi1iONo8YwLbWF4X3Byb2R1Y3SUiIwLY2hl"
              "Y2tfZXZlcnmUSwWMBV9tZW1vlE51Yi4=")


def chain():
    """A 3-variable chain a - b - c (a tree: BP is exact), exact P(c = 1) = 0.8501."""
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.tensor([[2.0, -1.0], [-1.0, 2.0]]))
    mrf.add_factor("bc", ["b", "c"], torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    return mrf


BAD = [("num_iters", 0), ("num_iters", 2.5), ("num_iters", True), ("check_every", 0), ("damping", 1.0),
       ("damping", -0.1), ("damping", "0.5"), ("tol", -1.0), ("tol", float("nan")), ("tol", None),
       ("max_product", "yes"), ("max_product", 1)]


@pytest.mark.parametrize("option, value", BAD)
def test_an_assigned_option_is_refused_as_by_the_constructor(option, value):
    assert_refused_as_by_the_constructor(lambda: BeliefPropagation(**{option: value}), BeliefPropagation(), option,
                                         value)


def test_damping_one_assigned_later_no_longer_answers_uniform_beliefs_as_converged():
    fg = chain().factor_graph(None, None)
    exact = chain().marginals("exact")["c"].reshape(-1)[1]
    bp = BeliefPropagation()
    with pytest.raises(ConfigError, match=r"damping must be a real number in \[0, 1\), got 1.0"):
        bp.damping = 1.0
    res = bp(fg)
    assert res.converged and float(res.marginals[0, 2, 1]) == pytest.approx(float(exact), abs=1e-5)


def test_a_valid_assignment_takes_effect():
    """Guard (passes before the fix too): a valid option set later is the one the next call uses."""
    fg = chain().factor_graph(None, None)
    bp = BeliefPropagation(tol=0.0)
    bp.num_iters, bp.damping, bp.max_product = 7, 0.5, True
    want = BeliefPropagation(7, 0.5, 0.0, max_product=True)(fg)
    got = bp(fg)
    assert got.num_iters == 7 and torch.equal(got.marginals, want.marginals)


def test_no_option_is_checked_while_iterating(monkeypatch):
    """Guard: the checks run on assignment only; a call reads the options without checking them (the hot loop
    reads ``tol``, ``check_every`` and ``num_iters`` every step)."""
    calls = []
    for name in ("positive_int", "positive_real", "damping_of", "flag"):
        real = getattr(bp_module, name)
        monkeypatch.setattr(bp_module, name, lambda *a, _real=real, **k: calls.append(a) or _real(*a, **k))
    bp = BeliefPropagation(num_iters=40, tol=0.0)
    assert len(calls) == 5  # the constructor's
    bp(chain().factor_graph(None, None))
    assert len(calls) == 5


def test_an_engine_pickled_by_the_earlier_release_loads_and_checks_later_assignments():
    bp = pickle.loads(base64.b64decode(OLD_PICKLE))
    assert (bp.num_iters, bp.damping, bp.tol, bp.max_product, bp.check_every) == (30, 0.2, 1e-5, True, 5)
    res = bp(chain().factor_graph(None, None))
    assert res.marginals.shape == (1, 3, 2)
    with pytest.raises(ConfigError, match="BeliefPropagation damping"):
        bp.damping = 1.0


def test_pickle_and_copy_keep_the_options():
    """The options travel with a pickled engine, and stay checked there."""
    bp = BeliefPropagation(12, 0.3, 1e-4, max_product=True, check_every=3)
    other = pickle.loads(pickle.dumps(bp))
    assert (other.num_iters, other.damping, other.tol, other.max_product, other.check_every) == (12, 0.3, 1e-4,
                                                                                                 True, 3)
    with pytest.raises(ConfigError):
        other.check_every = 0
