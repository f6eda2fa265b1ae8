import functools

import pytest
import torch

from hybridpgm import SVIObjective, VAE, fit
from hybridpgm.errors import ConfigError


def _binary(n=64, d=16):
    return torch.bernoulli(torch.full((n, d), 0.3), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(precision):
    torch.manual_seed(0)
    vae = VAE(16, 2, (32,))
    x = _binary()
    before = vae.elbo(x, 20).mean()
    result = fit(SVIObjective(vae.model, vae.guide), x, epochs=40, batch_size=32, precision=precision,
                 progress=False, seed=0, optim=functools.partial(torch.optim.Adam, lr=1e-2))
    assert all(torch.isfinite(torch.tensor(result.history.loss["elbo"])))
    assert vae.elbo(x, 20).mean() > before + 1.0
    assert all(p.dtype == torch.float32 for p in vae.parameters())


def test_bf16_autocast_is_active_inside_the_loss():
    seen = []

    class Probe:
        def __init__(self):
            self.module = torch.nn.Linear(4, 1)

        def players(self):
            return {"p": list(self.module.parameters())}

        def loss(self, player, batch):
            out = self.module(batch)
            seen.append(out.dtype)
            return out.float().pow(2).mean()

    fit(Probe(), torch.randn(8, 4), batch_size=8, precision="bf16", progress=False, seed=0)
    assert seen == [torch.bfloat16]


def test_activation_checkpointing_leaves_the_run_unchanged():
    states = []
    for flag in (False, True):
        torch.manual_seed(0)
        vae = VAE(16, 2, (32, 32), checkpoint_activations=flag)
        fit(SVIObjective(vae.model, vae.guide), _binary(), epochs=2, batch_size=16, progress=False, seed=1)
        states.append(vae.state_dict())
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k])


def test_unknown_precision():
    vae = VAE(16, 2)
    with pytest.raises(ConfigError, match="precision"):
        fit(SVIObjective(vae.model, vae.guide), _binary(), precision="fp8", progress=False)
