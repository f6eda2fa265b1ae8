"""A sigmoid belief net's likelihoods take one example ``[D]`` and any batch shape ``[..., D]``; its Pyro programs
and objectives refuse one example, saying that the batch dimension is missing (hybridpgm/generative/sbn.py,
sbn_exact.py and the shared hybridpgm/batch_shapes.py).  The Gibbs sampler takes ``[..., D]`` too
(tests/generative/test_sbn_gibbs_batch_shapes.py).

Audit (audit_empty): ``sbn.log_likelihood(x[0])`` and ``sbn.exact_log_likelihood(x[0])`` were refused
(``DataError: SigmoidBeliefNet site 'x' expects data of shape [B, 4], got (4,)``), and a ``[2, 3, D]`` batch too,
where the RBM, BayesNet, MarkovNet and CRF answer.  Now the likelihoods answer ``[...]``, the numbers of the rows;
the programs that need a plate over rows keep refusing one example, with a message that shows ``x[None]``.
"""

from __future__ import annotations

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.infer import SVIObjective, WakeSleep

from tests.generative.sbn_brute_force import binary, log_marginal, random_sbn, single_thread  # noqa: F401


def _gen():
    return torch.Generator().manual_seed(5)


CALLS = {
    "log_likelihood": lambda sbn, x, g: sbn.log_likelihood(x, num_samples=7, chunk_size=3, generator=g),
    "exact_log_likelihood": lambda sbn, x, g: sbn.exact_log_likelihood(x),
}


@pytest.mark.parametrize("method", list(CALLS))
def test_one_example_answers_as_its_row(method):
    """Fails on the old code: ``x[0]`` was refused."""
    sbn, x = random_sbn([4, 3, 2], 0), binary(6, 4, 1)
    one = CALLS[method](sbn, x[2], _gen())
    assert one.shape == ()
    assert torch.equal(one, CALLS[method](sbn, x[2:3], _gen())[0])


def test_one_example_is_exact():
    """The one-row enumeration (where the data plate's size-1 dim is packed away) against brute force."""
    sbn, x = random_sbn([4, 3, 2], 0), binary(6, 4, 1)
    with torch.no_grad():
        torch.testing.assert_close(sbn.exact_log_likelihood(x[2]), log_marginal(sbn, x[2:3])[0])


@pytest.mark.parametrize("method", list(CALLS))
def test_a_batch_shape_answers_as_its_rows_reshaped(method):
    """Fails on the old code: ``[2, 3, D]`` was refused."""
    sbn, x = random_sbn([4, 3, 2], 0), binary(6, 4, 1)
    nested = CALLS[method](sbn, x.reshape(2, 3, 4), _gen())
    assert nested.shape == (2, 3)
    assert torch.equal(nested, CALLS[method](sbn, x, _gen()).reshape(2, 3))
    assert CALLS[method](sbn, x.reshape(2, 3, 4)[:, :0], _gen()).shape == (2, 0)


@pytest.mark.parametrize("method", list(CALLS))
def test_zero_rows_answer_as_before(method):
    sbn, x = random_sbn([4, 3], 0), binary(6, 4, 1)
    assert CALLS[method](sbn, x[:0], _gen()).shape == (0,)


def test_the_exact_likelihood_of_one_example_keeps_its_gradient():
    sbn, x = random_sbn([4, 3], 0), binary(6, 4, 1)
    sbn.exact_log_likelihood(x[2]).backward()
    one = [p.grad.clone() for p in sbn.model_parameters()]
    sbn.zero_grad()
    sbn.exact_log_likelihood(x[2:3]).sum().backward()
    for a, b in zip(one, (p.grad for p in sbn.model_parameters())):
        assert torch.equal(a, b)


def test_a_wrong_width_names_the_callers_shape():
    sbn = random_sbn([4, 3], 0)
    with pytest.raises(DataError, match=r"SigmoidBeliefNet\.exact_log_likelihood: x has shape \(5,\), expected "
                                        r"\(\.\.\., 4\)"):
        sbn.exact_log_likelihood(torch.ones(5))


ONE_EXAMPLE = (r"SigmoidBeliefNet site 'x' has shape \(4,\), expected \(batch, 4\): one example without the batch "
               r"dimension, which this method needs.*pass x\[None\], of shape \(1, 4\) \(the evaluation methods, "
               r"log_likelihood and exact_log_likelihood, take one example as it is\)")


@pytest.mark.parametrize("program", ["model", "guide", "enumerated_model", "wake_sleep", "svi"])
def test_the_programs_refuse_one_example_showing_x_none(program):
    """Fails on the old code: the message said only ``expects data of shape [B, 4], got (4,)``."""
    sbn, x = random_sbn([4, 3], 0), binary(6, 4, 1)
    calls = {"model": sbn.model, "guide": sbn.guide, "enumerated_model": sbn.enumerated_model,
             "wake_sleep": lambda data: WakeSleep(sbn.model, sbn.guide).loss("wake", data),
             "svi": lambda data: SVIObjective(sbn.model, sbn.guide).loss("elbo", data)}
    with pytest.raises(DataError, match=ONE_EXAMPLE):
        calls[program](x[0])
    calls[program](x[:1])  # the same example as a batch of one row
