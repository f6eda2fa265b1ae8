"""A small VAE fitted by hybridpgm.fit, and its parameters: shared by the trainer tests
(tests/train/test_trainer*.py), test_signals.py and the SIGKILL script of test_trainer.py."""

import torch

from hybridpgm import SVIObjective, VAE, fit


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _fit_vae(tmp_path=None, **kwargs):
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(96, 12, generator=torch.Generator().manual_seed(3)))
    vae = VAE(12, 3, (8,))
    options = dict(epochs=3, batch_size=16, seed=5, progress=False)
    options.update(kwargs)
    result = fit(SVIObjective(vae.model, vae.guide), x, **options)
    return vae, result
