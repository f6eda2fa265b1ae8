"""A VAE whose encoder or decoder was replaced by another module trains and samples.

Before, the VAE read its dtype and device from ``encoder[0].weight`` (the data check of ``model`` and ``guide``)
and ``decoder[0].weight`` (``sample``): a custom module raised ``TypeError: 'Enc' object is not subscriptable``
and a ``Sequential`` starting with ``Dropout`` ``AttributeError: 'Dropout' object has no attribute 'weight'``.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from hybridpgm import SVIObjective, VAE, fit
from hybridpgm.errors import ModelSpecError
from pyro.infer import Trace_ELBO

X_DIM, Z_DIM = 8, 2


class _Encoder(nn.Module):
    """Not indexable: one named linear layer."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(X_DIM, 2 * Z_DIM)

    def forward(self, x):
        return self.proj(x)


_REPLACEMENTS = {
    "custom-encoder": ("encoder", _Encoder),
    "dropout-first-encoder": ("encoder", lambda: nn.Sequential(nn.Dropout(0.1), nn.Linear(X_DIM, 2 * Z_DIM))),
    "dropout-first-decoder": ("decoder", lambda: nn.Sequential(nn.Dropout(0.1), nn.Linear(Z_DIM, X_DIM))),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(_REPLACEMENTS))
def test_a_vae_with_a_replaced_network_trains_a_step_and_samples(case, dtype):
    role, make = _REPLACEMENTS[case]
    torch.manual_seed(0)
    vae = VAE(X_DIM, z_dim=Z_DIM, hidden=[6])
    setattr(vae, role, make())
    vae = vae.to(dtype)
    data = torch.bernoulli(torch.full((16, X_DIM), 0.5, dtype=dtype), generator=torch.Generator().manual_seed(1))
    before = [p.detach().clone() for p in getattr(vae, role).parameters()]
    fit(SVIObjective(vae.model, vae.guide, Trace_ELBO()), data, max_steps=1, batch_size=16, progress=False, seed=0,
        optim=functools.partial(torch.optim.SGD, lr=0.1))
    after = list(getattr(vae, role).parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))  # the replaced network was trained
    samples = vae.sample(3)
    assert samples.shape == (3, X_DIM) and samples.dtype == dtype and bool(((samples >= 0) & (samples <= 1)).all())


def test_a_parameter_free_network_takes_the_dtype_of_the_rest_and_none_at_all_is_named():
    vae = VAE(X_DIM, z_dim=Z_DIM, hidden=[]).double()
    vae.encoder = nn.Sequential(nn.Linear(X_DIM, 2 * Z_DIM).double(), nn.Identity())
    vae.decoder = nn.Identity()  # z_dim -> "logits" of width z_dim: only the dtype is asked here
    assert vae._reference("decoder").dtype == torch.float64
    bare = VAE(Z_DIM, z_dim=Z_DIM, hidden=[])
    bare.encoder, bare.decoder = nn.Identity(), nn.Identity()
    with pytest.raises(ModelSpecError, match="decoder"):
        bare.sample(2)
