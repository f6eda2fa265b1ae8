"""The dtype of :meth:`~hybridpgm.generative.sbn.SigmoidBeliefNet.exact_log_likelihood` (hybridpgm/generative/
sbn_exact.py): the net's, as its other queries and the other models' queries answer.

Found by the DEPLOY audit: a bfloat16 net answered ``log_likelihood`` and ``sample`` in bfloat16 but
``exact_log_likelihood`` in float32, although its docstring said it runs in the net's dtype.  The float32 came
from the data plate's own sample site, whose zero log-density (of the default dtype) was one of the operands of
the contraction; the enumeration itself ran in bfloat16, so the float32 answer held no more digits."""

import copy
import warnings

import pytest
import torch

import hybridpgm


def _net():
    torch.manual_seed(0)
    sbn = hybridpgm.SigmoidBeliefNet([6, 4, 3])
    with torch.no_grad():
        for p in sbn.parameters():
            p.mul_(3)  # away from uniform: answers that differ between rows
    return sbn, torch.bernoulli(torch.full((8, 6), 0.5))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_exact_log_likelihood_answers_in_the_nets_dtype(dtype):
    sbn, x = _net()
    cast = copy.deepcopy(sbn).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = cast.exact_log_likelihood(x.to(dtype))
        assert got.dtype == cast.log_likelihood(x.to(dtype), num_samples=4).dtype == dtype
    # the same values: the float64 net's answer for the cast weights, to the cast dtype's rounding
    want = copy.deepcopy(cast).double().exact_log_likelihood(x.double())
    tol = 2 * torch.finfo(dtype).eps * float(want.abs().max())
    torch.testing.assert_close(got.double(), want, atol=tol, rtol=0)


def test_one_row_and_no_rows_keep_the_dtype():
    sbn, x = _net()
    cast = copy.deepcopy(sbn).to(torch.bfloat16)
    assert cast.exact_log_likelihood(x[0].bfloat16()).dtype == torch.bfloat16
    assert cast.exact_log_likelihood(x[:1].bfloat16()).dtype == torch.bfloat16
    assert cast.exact_log_likelihood(x[:0].bfloat16()).dtype == torch.bfloat16
