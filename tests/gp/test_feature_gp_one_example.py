"""A Gaussian process refuses one example without its batch dimension, saying why and how to pass it
(hybridpgm/gp/feature_gp.py, ``check_inputs``).

Audit (audit_empty): the model families disagreed on one example ``[D]``; the VAE, SBN and DBM likelihoods now
take it (tests/generative/test_vae_batch_shapes.py, ...), but a GP cannot: its ``[N]`` input would be ambiguous
with ``N`` one-feature points.  The refusal only said ``expected (N, ...) with at least two dimensions``; it now
names the ambiguity and both ways out.
"""

from __future__ import annotations

import pytest
import torch

from hybridpgm import GPLSTM, DeepKernelGP, SVDeepKernelGP
from hybridpgm.errors import DataError

AMBIGUOUS = (r"x has shape \(2,\), expected \(N, \.\.\.\) with at least two dimensions: a 1-d input is ambiguous \(2 "
             r"one-feature points, or one example of 2 features\), so a GP takes no example without its batch "
             r"dimension; pass x\[:, None\] for the points, x\[None\] for the one example")


def test_a_1d_input_is_refused_as_ambiguous():
    """Fails on the old code: the message stopped at 'with at least two dimensions'."""
    torch.manual_seed(0)
    x, y = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    gp = DeepKernelGP(x, y)
    sv = SVDeepKernelGP(None, num_features=2, num_data=4, inducing_points=torch.randn(3, 2))
    for call in (gp.predict, gp.posterior, gp.features, lambda t: gp.marginal_log_likelihood(t, y[:1]),
                 lambda t: sv.predict(t.float())):
        with pytest.raises(DataError, match=AMBIGUOUS):
            call(x[0])
    assert gp.predict(x[0][None]).mean.shape == (1,)


def test_one_sequence_without_its_batch_dimension_shows_x_none():
    """Fails on the old code: the message was only 'expected (N, 2, 1)'."""
    torch.manual_seed(0)
    xw, yw = torch.randn(3, 2, 1), torch.randn(3)
    model = GPLSTM(xw, yw, hidden_size=2, num_features=1)
    with pytest.raises(DataError, match=r"x has shape \(2, 1\), expected \(N, 2, 1\): one example without its "
                                        r"batch dimension; pass x\[None\]"):
        model.predict(xw[0])
    with pytest.raises(DataError, match=r"x has shape \(3, 1\), expected \(N, 2, 1\)$"):
        model.predict(torch.randn(3, 1))
