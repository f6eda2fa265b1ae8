"""GANs as variational EM: GAN, InfoGAN, IWGAN, AAVAE and ADA.

Every objective is written through the discriminator :math:`q_\\phi(y \\mid x)`
and its reversal :math:`q^r_\\phi(y \\mid x) = q_\\phi(1 - y \\mid x)`
(:mod:`~hybridpgm.infer.adversarial.base`), following Hu et al., *On Unifying
Deep Generative Models* (ICLR 2018).  Players: ``"discriminator"`` (stepped
``k`` times) and ``"generator"``.
"""

from hybridpgm.infer.adversarial.aavae import AAVAE
from hybridpgm.infer.adversarial.ada import ADA
from hybridpgm.infer.adversarial.base import AdversarialGame, AdversarialObjective, adversarial_optim
from hybridpgm.infer.adversarial.gan import GAN
from hybridpgm.infer.adversarial.infogan import InfoGAN
from hybridpgm.infer.adversarial.iwgan import IWGAN

__all__ = [
    "AAVAE",
    "ADA",
    "AdversarialGame",
    "AdversarialObjective",
    "GAN",
    "IWGAN",
    "InfoGAN",
    "adversarial_optim",
]
