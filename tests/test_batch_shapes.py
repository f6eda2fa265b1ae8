"""The shared helper of the evaluation methods over any batch shape (hybridpgm/batch_shapes.py).

The families' own tests (tests/generative/test_vae_batch_shapes.py, test_sbn_batch_shapes.py,
tests/energy/test_dbm_batch_shapes.py) check the decorated methods; these check the decorator's contract on a toy
model: which inputs reach the method as they are, how the rows come back, and the messages.
"""

from __future__ import annotations

import pytest
import torch

from hybridpgm.batch_shapes import as_given, over_batch_shape, refuse_one_example
from hybridpgm.errors import DataError


class Rows:
    """A toy row-wise model of width 3, recording what its methods were given."""

    width = 3

    def __init__(self):
        self.seen: list = []

    @over_batch_shape("Rows", lambda m: m.width)
    def total(self, x, scale=1.0):
        """``[rows]``: each row's sum times ``scale``."""
        self.seen.append(x)
        return x.sum(-1) * scale

    @over_batch_shape("Rows", lambda m: m.width, row_dim=1)
    def draws(self, x, k):
        """``[k, rows]``: the row sums plus ``0..k-1``."""
        return x.sum(-1) + torch.arange(k, dtype=x.dtype)[:, None]

    @over_batch_shape("Rows", lambda m: m.width)
    def same(self, x):
        """``[rows, 3]``: ``x`` itself."""
        return x

    @over_batch_shape("Rows", lambda m: m.width, name="v")
    def given(self, x):
        """``[rows]``; records the shapes :func:`as_given` gives back for ``x``, a copy of it and its first two
        columns."""
        self.seen.append([tuple(as_given(t).shape) for t in (x, x.clone(), x[:, :2])])
        return x.sum(-1)


def test_a_batch_shape_is_flattened_into_rows_and_restored():
    m, x = Rows(), torch.arange(24.0).reshape(2, 4, 3)
    assert torch.equal(m.total(x, scale=2.0), x.sum(-1) * 2)
    assert m.seen[-1].shape == (8, 3)
    assert torch.equal(m.draws(x, 5), x.sum(-1) + torch.arange(5.0)[:, None, None])
    assert torch.equal(m.same(x), x)
    one = torch.tensor([1.0, 2.0, 4.0])
    assert m.total(one).shape == () and m.total(one) == 7.0
    assert m.draws(one, 2).tolist() == [7.0, 8.0]
    assert torch.equal(m.same(one), one)
    assert m.total(torch.zeros(2, 0, 3)).shape == (2, 0) and m.draws(torch.zeros(0, 2, 3), 4).shape == (4, 0, 2)


def test_rows_reach_the_method_as_they_are():
    """A 2-d x (zero rows too) and a non-tensor are the method's to check; a 0-d one is refused naming (..., D)
    (reviewB: it went to the method, whose message said "expected (batch, D)", one example being taken now)."""
    m = Rows()
    x = torch.ones(4, 3)
    m.total(x)
    assert m.seen[-1] is x
    m.total(x[:0])
    assert m.seen[-1].shape == (0, 3)
    m.total(torch.ones(4, 5))  # a wrong width in two dimensions: the method's own check, here none
    assert m.seen[-1].shape == (4, 5)
    with pytest.raises(DataError, match=r"Rows\.total: x has shape \(\), expected \(\.\.\., 3\)"):
        m.total(torch.tensor(2.0))
    with pytest.raises(AttributeError):
        m.total([1.0, 2.0, 3.0])


def test_a_wrong_width_is_named_with_the_callers_shape():
    m = Rows()
    with pytest.raises(DataError, match=r"Rows\.total: x has shape \(2, 4, 5\), expected \(\.\.\., 3\): one example "
                                        r"\(3,\) or a batch of any shape \(\.\.\., 3\)"):
        m.total(torch.ones(2, 4, 5))
    with pytest.raises(DataError, match=r"Rows\.given: v has shape \(2,\), expected \(\.\.\., 3\)"):
        m.given(torch.ones(2))


def test_as_given_gives_the_checks_the_callers_shape_inside_the_call_only():
    m = Rows()
    m.given(torch.ones(2, 4, 3))
    assert m.seen[-1] == [(2, 4, 3), (2, 4, 3), (8, 2)]  # rows of the caller's width only
    m.given(torch.ones(3))
    assert m.seen[-1] == [(3,), (3,), (1, 2)]
    m.given(torch.ones(8, 3))
    assert m.seen[-1] == [(8, 3), (8, 3), (8, 2)]
    x = torch.ones(8, 3)
    assert as_given(x) is x  # outside any call


def test_one_example_is_refused_by_the_training_programs_with_x_none():
    with pytest.raises(DataError, match=r"M argument 'x' has shape \(3,\), expected \(batch, 3\): one example "
                                        r"without the batch dimension, which this method needs \(a Pyro program's "
                                        r"plate runs over the rows\); pass x\[None\], of shape \(1, 3\) \(the "
                                        r"evaluation methods, a and b, take one example as it is\)"):
        refuse_one_example(torch.ones(3), 3, "M argument 'x'", "a and b")
    for other in (torch.ones(1, 3), torch.ones(4), torch.tensor(1.0), [1.0, 2.0, 3.0]):
        refuse_one_example(other, 3, "M argument 'x'", "a and b")  # the caller's checks name these
