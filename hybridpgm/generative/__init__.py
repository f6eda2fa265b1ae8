"""Directed deep generative models: PyroModules with ``model`` and ``guide``."""

from hybridpgm.generative.vae import VAE

__all__ = [
    "VAE",
]
