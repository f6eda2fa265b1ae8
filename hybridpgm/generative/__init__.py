"""Directed deep generative models: PyroModules with ``model`` and ``guide``."""

from hybridpgm.generative.gan import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator, gan_networks
from hybridpgm.generative.sbn import SigmoidBeliefNet
from hybridpgm.generative.sbn_gibbs import SBNGibbs
from hybridpgm.generative.vae import VAE

__all__ = [
    "ConvDiscriminator",
    "ConvGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "SBNGibbs",
    "SigmoidBeliefNet",
    "VAE",
    "gan_networks",
]
