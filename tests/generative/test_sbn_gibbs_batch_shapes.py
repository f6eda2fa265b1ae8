"""``SBNGibbs.sample`` takes one example ``[D]`` and any batch shape ``[..., D]``, as the evaluation methods of
every family do (hybridpgm/generative/sbn_gibbs.py; the rule of hybridpgm/batch_shapes.py ``over_batch_shape``).

Carried audit item: ``SBNGibbs(sbn).sample(x[0], 2)`` was refused (``DataError: SigmoidBeliefNet site 'x' has shape
(4,), expected (batch, 4) ...``), and ``[2, 3, D]`` too (``SBNGibbs.sample expects x of shape [B, D]``).  Now each
layer is ``[num_samples, num_chains, *batch_shape, H_l]``, the draws of the rows flattened, bit for bit.
"""

from __future__ import annotations

import re

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.generative.sbn_gibbs import SBNGibbs

from tests.generative.sbn_brute_force import binary, random_sbn, single_thread  # noqa: F401


def _sample(sbn, x, init):
    return SBNGibbs(sbn).sample(x, 3, warmup=2, num_chains=2, init=init, seed=5).layers


@pytest.mark.parametrize("init", ["guide", "zeros"])
def test_one_example_gives_the_samples_of_its_row(init):
    """Fails on the old code: ``x[2]`` was refused."""
    sbn, x = random_sbn([4, 3, 2], 0), binary(6, 4, 1)
    one, row = _sample(sbn, x[2], init), _sample(sbn, x[2:3], init)
    assert [tuple(h.shape) for h in one] == [(3, 2, 3), (3, 2, 2)]
    for a, b in zip(one, row, strict=True):
        assert torch.equal(a, b[:, :, 0])


@pytest.mark.parametrize("init", ["guide", "zeros"])
def test_a_batch_shape_gives_the_samples_of_its_rows_reshaped(init):
    """Fails on the old code: ``[2, 3, D]`` was refused."""
    sbn, x = random_sbn([4, 3, 2], 0), binary(6, 4, 1)
    nested, rows = _sample(sbn, x.reshape(2, 3, 4), init), _sample(sbn, x, init)
    assert [tuple(h.shape) for h in nested] == [(3, 2, 2, 3, 3), (3, 2, 2, 3, 2)]
    for a, b in zip(nested, rows, strict=True):
        assert torch.equal(a, b.reshape(3, 2, 2, 3, -1))
    assert [tuple(h.shape) for h in _sample(sbn, x.reshape(2, 3, 4)[:, :0], init)] == [(3, 2, 2, 0, 3),
                                                                                      (3, 2, 2, 0, 2)]


@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 5)])
def test_a_0d_input_or_a_wrong_width_is_refused_naming_the_shape(shape):
    sbn = random_sbn([4, 3], 0)
    with pytest.raises(DataError, match=re.escape(f"SBNGibbs.sample: x has shape {shape}, expected (..., 4)")):
        SBNGibbs(sbn).sample(torch.ones(shape), 2, warmup=1)


def test_one_example_still_has_its_values_checked():
    sbn = random_sbn([4, 3], 0)
    with pytest.raises(DataError, match="binary"):
        SBNGibbs(sbn).sample(torch.full((4,), 0.5), 2, warmup=1)
