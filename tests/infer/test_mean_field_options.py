"""MeanField's options assigned after construction: checked as the constructor checks them.

``mf.damping = 1.0`` used to be accepted and returned the initial ``q`` flagged ``converged``; ``num_iters = 0``
ran no sweep and ``tol = -1`` never converged, without an error."""

import base64
import pickle

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import MeanField
from tests.option_contract import assert_refused_as_by_the_constructor

#: ``pickle.dumps(MeanField(20, 0.1, 1e-5), protocol=4)`` made by the release before the options were checked
#: attributes (HEAD 82e8bc4)
OLD_PICKLE = ("gASVZAAAAAAAAACMGmh5YnJpZHBnbS5pbmZlci5tZWFuX2ZpZWxklIwJTWVhbkZpZWxklJOUKYGUfZQojAludW1faXRlcnOU"
              "SxSMB2RhbXBpbmeURz+5mZmZmZmajAN0b2yURz7k+LWI42jxdWIu")


def chain():
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.tensor([[2.0, -1.0], [-1.0, 2.0]]))
    mrf.add_factor("bc", ["b", "c"], torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    return mrf.factor_graph(None, None)


BAD = [("num_iters", 0), ("num_iters", 2.5), ("num_iters", True), ("damping", 1.0), ("damping", -0.1),
       ("damping", "0.5"), ("tol", -1.0), ("tol", float("nan")), ("tol", None)]


@pytest.mark.parametrize("option, value", BAD)
def test_an_assigned_option_is_refused_as_by_the_constructor(option, value):
    assert_refused_as_by_the_constructor(lambda: MeanField(**{option: value}), MeanField(), option, value)


def test_damping_one_assigned_later_no_longer_answers_the_initial_q_as_converged():
    fg = chain()
    fresh = MeanField()(fg)
    mf = MeanField()
    with pytest.raises(ConfigError, match=r"MeanField damping must be a real number in \[0, 1\), got 1.0"):
        mf.damping = 1.0
    res = mf(fg)
    assert res.converged and torch.equal(res.marginals, fresh.marginals)


def test_a_valid_assignment_takes_effect():
    """Guard (passes before the fix too): a valid option set later is the one the next call uses."""
    fg = chain()
    mf = MeanField(tol=0.0)
    mf.num_iters, mf.damping = 3, 0.4
    got, want = mf(fg), MeanField(3, 0.4, 0.0)(fg)
    assert got.num_iters == 3 and torch.equal(got.marginals, want.marginals)


def test_an_engine_pickled_by_the_earlier_release_loads_and_checks_later_assignments():
    mf = pickle.loads(base64.b64decode(OLD_PICKLE))
    assert (mf.num_iters, mf.damping, mf.tol) == (20, 0.1, 1e-5)
    assert mf(chain()).marginals.shape == (1, 3, 2)
    with pytest.raises(ConfigError, match="MeanField num_iters"):
        mf.num_iters = 0
