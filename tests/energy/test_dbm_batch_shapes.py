"""A DBM's exact likelihoods take one example ``[V]`` and any batch shape ``[..., V]``
(hybridpgm/energy/dbm_likelihood.py and the shared hybridpgm/batch_shapes.py).

Audit (audit_empty): ``dbm.log_likelihood(v[0])`` and ``dbm.unnormalized_log_prob(v[0])`` were refused
(``DataError: DBM.log_likelihood expects v of shape (batch, 4), got (4,)``), while the DBM's ``mean_field``,
``log_likelihood_bound`` and ``energy`` and every RBM likelihood take one example.  Now they answer ``[...]``, the
values (and gradients) of the rows.
"""

from __future__ import annotations

import pytest
import torch

from hybridpgm.errors import DataError
from tests.energy.brute_force import random_dbm, single_thread  # noqa: F401

CALLS = {
    "log_likelihood": lambda dbm, v: dbm.log_likelihood(v),
    "log_likelihood with log_z": lambda dbm, v: dbm.log_likelihood(v, log_z=1.25),
    "unnormalized_log_prob": lambda dbm, v: dbm.unnormalized_log_prob(v),
    "unnormalized_log_prob in chunks": lambda dbm, v: dbm.unnormalized_log_prob(v, chunk_size=3),
}


def _data():
    g = torch.Generator().manual_seed(3)
    return torch.bernoulli(torch.full((6, 4), 0.5, dtype=torch.float64), generator=g)


@pytest.mark.parametrize("method", list(CALLS))
def test_one_example_answers_as_its_row(method):
    """Fails on the old code: ``v[0]`` was refused."""
    dbm, v = random_dbm([4, 3, 2, 2], seed=1), _data()
    one = CALLS[method](dbm, v[2])
    assert one.shape == ()
    assert torch.equal(one, CALLS[method](dbm, v[2:3])[0])


@pytest.mark.parametrize("method", list(CALLS))
def test_a_batch_shape_answers_as_its_rows_reshaped(method):
    """Fails on the old code: ``[2, 3, V]`` was refused."""
    dbm, v = random_dbm([4, 3, 2, 2], seed=1), _data()
    nested = CALLS[method](dbm, v.reshape(2, 3, 4))
    assert nested.shape == (2, 3)
    assert torch.equal(nested, CALLS[method](dbm, v).reshape(2, 3))
    assert CALLS[method](dbm, v.reshape(2, 3, 4)[:, :0]).shape == (2, 0)


@pytest.mark.parametrize("method", list(CALLS))
def test_zero_rows_answer_as_before(method):
    dbm, v = random_dbm([4, 3, 2], seed=1), _data()
    assert CALLS[method](dbm, v[:0]).shape == (0,)


def test_one_example_keeps_its_gradients():
    """The parameters' gradients (log Z enumerated with a graph) and the example's are those of its row."""
    dbm = random_dbm([4, 3, 2], seed=2)
    v = _data()[1]
    one = v.clone().requires_grad_()
    dbm.log_likelihood(one).backward()
    got = [p.grad.clone() for p in dbm.parameters()]
    dbm.zero_grad()
    row = v[None].clone().requires_grad_()
    dbm.log_likelihood(row).sum().backward()
    for a, b in zip(got, (p.grad for p in dbm.parameters()), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(one.grad, row.grad[0])


def test_a_wrong_width_names_the_callers_shape():
    dbm = random_dbm([4, 3, 2], seed=1)
    with pytest.raises(DataError, match=r"DBM\.log_likelihood: v has shape \(5,\), expected \(\.\.\., 4\)"):
        dbm.log_likelihood(torch.ones(5, dtype=torch.float64))
    with pytest.raises(DataError, match=r"DBM visible data 'v' must be binary"):
        dbm.unnormalized_log_prob(torch.full((2, 3, 4), 0.5, dtype=torch.float64))
