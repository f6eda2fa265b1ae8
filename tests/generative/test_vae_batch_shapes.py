"""A VAE's evaluation methods take one example ``[D]`` and any batch shape ``[..., D]``; its training programs
refuse one example, saying that the batch dimension is missing (hybridpgm/generative/vae.py, vae_sampling.py and
the shared hybridpgm/batch_shapes.py).

Audit (audit_empty): a single example without a batch dimension was taken by the RBM, BayesNet, MarkovNet and
CRF and refused by the VAE's ``log_likelihood``, ``elbo``, ``log_weights`` and ``reconstruct`` (``DataError: VAE
argument 'x' has shape (4,), expected (batch, 4)``).  The rule now: evaluation methods take ``[..., D]`` and answer
``[...]`` (``[K, ...]`` for the log-weights), the same numbers as the rows' with generators seeded alike; the
programs that need a plate over rows keep refusing one example, with a message that shows ``x[None]``.
"""

from __future__ import annotations

import pytest
import torch

from hybridpgm import VAE
from hybridpgm.errors import DataError
from hybridpgm.infer import SVIObjective


def _gen():
    return torch.Generator().manual_seed(7)


#: method -> (call with a generator, where the result's row dimension is)
CALLS = {
    "log_likelihood": (lambda vae, x, g: vae.log_likelihood(x, num_samples=5, chunk_size=2, generator=g), 0),
    "elbo": (lambda vae, x, g: vae.elbo(x, num_samples=3, generator=g), 0),
    "log_weights": (lambda vae, x, g: vae.log_weights(x, 4, chunk_size=3, generator=g), 1),
    "reconstruct": (lambda vae, x, g: vae.reconstruct(x, generator=g), 0),
}


def _vae(likelihood="bernoulli"):
    """A VAE whose decoder draws (a dropout in training mode), so that every method depends on its generator."""
    torch.manual_seed(0)
    vae = VAE(4, 2, (5,), likelihood=likelihood).double()
    vae.decoder = torch.nn.Sequential(torch.nn.Dropout(0.5), vae.decoder)
    return vae


def _data():
    return torch.bernoulli(torch.full((6, 4), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", list(CALLS))
def test_one_example_answers_as_its_row(method):
    """Fails on the old code: ``x[0]`` was refused (a DataError naming shape (4,))."""
    call, row_dim = CALLS[method]
    vae, x = _vae(), _data()
    one = call(vae, x[2], _gen())
    row = call(vae, x[2:3], _gen()).select(row_dim, 0)
    assert one.shape == row.shape
    assert torch.equal(one, row)
    assert not torch.equal(call(vae, x[2], torch.Generator().manual_seed(8)), one)  # the draws do matter


@pytest.mark.parametrize("method", list(CALLS))
def test_a_batch_shape_answers_as_its_rows_reshaped(method):
    """Fails on the old code: ``[2, 3, D]`` was refused."""
    call, row_dim = CALLS[method]
    vae, x = _vae(), _data()
    nested = call(vae, x.reshape(2, 3, 4), _gen())
    rows = call(vae, x, _gen())
    shape = (*rows.shape[:row_dim], 2, 3, *rows.shape[row_dim + 1:])
    assert nested.shape == shape
    assert torch.equal(nested, rows.reshape(shape))
    empty = {"log_likelihood": (2, 0), "elbo": (2, 0), "log_weights": (4, 2, 0), "reconstruct": (2, 0, 4)}[method]
    assert call(vae, x.reshape(2, 3, 4)[:, :0], _gen()).shape == empty


@pytest.mark.parametrize("method", list(CALLS))
def test_zero_rows_answer_as_before(method):
    call, _ = CALLS[method]
    vae, x = _vae(), _data()
    expected = {"log_likelihood": (0,), "elbo": (0,), "log_weights": (4, 0), "reconstruct": (0, 4)}[method]
    assert call(vae, x[:0], _gen()).shape == expected


def test_the_checks_name_the_callers_shape():
    """Fails on the old code: the shapes below were refused as shapes, not checked for their widths and values."""
    vae, x = _vae("gaussian"), _data()
    with pytest.raises(DataError, match=r"VAE\.log_likelihood: x has shape \(2, 3, 5\), expected \(\.\.\., 4\)"):
        vae.log_likelihood(torch.zeros(2, 3, 5, dtype=torch.float64))
    bad = x.reshape(2, 3, 4).clone()
    bad[1, 2, 0] = float("nan")
    with pytest.raises(DataError, match=r"VAE argument 'x' \(shape \(2, 3, 4\)\) holds 1 NaN/inf value\(s\), the "
                                        r"first in row 1"):
        vae.elbo(bad)
    with pytest.raises(DataError, match=r"VAE argument 'x' \(shape \(4,\)\) holds 1 NaN/inf value\(s\)"):
        vae.reconstruct(bad[1, 2])


ONE_EXAMPLE = (r"VAE argument 'x' has shape \(4,\), expected \(batch, 4\): one example without the batch dimension, "
               r"which this method needs.*pass x\[None\], of shape \(1, 4\) \(the evaluation methods, log_likelihood, "
               r"elbo, log_weights and reconstruct, take one example as it is\)")


@pytest.mark.parametrize("program", ["model", "guide", "direct_elbo_loss", "objective"])
def test_the_training_programs_refuse_one_example_showing_x_none(program):
    """Fails on the old code: the message said only ``has shape (4,), expected (batch, 4)``."""
    vae, x = _vae(), _data()
    calls = {"model": vae.model, "guide": vae.guide, "direct_elbo_loss": vae.direct_elbo_loss,
             "objective": lambda data: SVIObjective(vae.model, vae.guide).loss("elbo", data)}
    with pytest.raises(DataError, match=ONE_EXAMPLE):
        calls[program](x[0])
    calls[program](x[:1])  # the same example as a batch of one row
