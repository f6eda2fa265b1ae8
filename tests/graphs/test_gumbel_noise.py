"""The Gumbel noise of the categorical samplers (:mod:`hybridpgm.graphs.gumbel_noise`).

Found by an audit: the CRF sampler raised its uniforms to ``tiny``, :class:`~hybridpgm.infer.ChromaticGibbs` to
``1e-20`` (0 in float16) and cut them at ``1 - 1e-7``; one helper now serves both.
"""

import pytest
import torch

from hybridpgm.graphs.gumbel_noise import log_exponential_


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_the_noise_is_finite_at_both_ends_of_torch_rand(dtype):
    """Fails for the old Gibbs bounds in float16 (``1e-20`` is 0 there: ``-inf`` at ``u = 0``)."""
    largest = torch.tensor(1.0, dtype=dtype).nextafter(torch.tensor(0.0, dtype=dtype))
    u = torch.stack([torch.zeros((), dtype=dtype), largest])
    log_e = log_exponential_(u)
    assert bool(torch.isfinite(log_e).all())
    assert log_e[0] > log_e[1]  # u = 0: the largest E, the smallest noise


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_nonzero_uniform_gives_the_plain_transform_bit_for_bit(dtype):
    """Guard: the seeded draws of every sampler are unchanged where no 0 is drawn."""
    u = torch.rand(100000, dtype=dtype, generator=torch.Generator().manual_seed(1))
    u = u[u > 0]
    assert torch.equal(log_exponential_(u.clone()), torch.log(-torch.log(u)))


def test_it_writes_into_its_argument_and_runs_under_vmap_with_different_randomness():
    """Guard: in place (no copy), and batched under ``vmap(randomness="different")`` as the CRF sampler needs."""
    u = torch.tensor([0.0, 0.5])
    assert log_exponential_(u) is u
    out = torch.func.vmap(lambda x: x + log_exponential_(torch.rand(3)), randomness="different")(torch.zeros(4))
    assert out.shape == (4, 3) and bool(torch.isfinite(out).all()) and not torch.equal(out[0], out[1])
