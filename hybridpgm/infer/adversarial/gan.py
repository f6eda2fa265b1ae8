"""The generative adversarial network as variational EM.

Goodfellow et al.'s GAN [1], in the formulation of Hu et al. [2]: the
discriminator :math:`q_\\phi(y \\mid x)` tells data (:math:`y = 1`) from samples
:math:`x = G_\\theta(z)` (:math:`y = 0`), and the generator maximises the
likelihood of the *reversed* discriminator :math:`q^r_\\phi(y \\mid x) = q_\\phi(1 - y \\mid x)`:

.. math::

    \\mathcal L_\\phi = -\\mathbb E_{p_\\theta(x \\mid y) p(y)}\\big[\\log q_\\phi(y \\mid x)\\big]
      = -\\tfrac12\\,\\mathbb E_{p_\\text{data}}\\log q_\\phi(1 \\mid x)
        -\\tfrac12\\,\\mathbb E_{z}\\log q_\\phi(0 \\mid G_\\theta(z)),

.. math::

    \\mathcal L_\\theta = -\\mathbb E_{z}\\big[\\log q^r_\\phi(0 \\mid G_\\theta(z))\\big]
      = -\\mathbb E_z \\log \\sigma\\big(D_\\phi(G_\\theta(z))\\big),

the non-saturating game of [1] (only the :math:`y = 0` half of
:math:`\\mathbb E_{p(y)}` depends on :math:`\\theta`).  At the optimal
discriminator, :math:`\\nabla_\\theta \\mathcal L_\\theta = 2\\,\\nabla_\\theta\\big[\\tfrac12
\\mathrm{KL}(p_{g_\\theta} \\| p_\\text{data}) - \\mathrm{JSD}(p_{g_\\theta} \\| p_\\text{data})\\big]`
(Lemma 1 of [2], checked in the tests): the generator minimises a reverse KL,
mode-seeking like variational inference.

References:

1. I. Goodfellow, J. Pouget-Abadie, M. Mirza, B. Xu, D. Warde-Farley, S. Ozair,
   A. Courville, Y. Bengio, *Generative Adversarial Nets*, NeurIPS 2014.
2. Z. Hu, Z. Yang, R. Salakhutdinov, E. P. Xing, *On Unifying Deep Generative
   Models*, ICLR 2018.
"""

from __future__ import annotations

import torch
from torch import nn

from hybridpgm.infer.adversarial.base import AdversarialObjective, weighted_mean

__all__ = ["GAN"]


class GAN(AdversarialObjective):
    """The (non-saturating) GAN as an objective of :func:`hybridpgm.fit`.

    Players: ``"discriminator"`` (:math:`\\phi`, stepped ``k`` times) and
    ``"generator"`` (:math:`\\theta`); each step draws as many samples as the
    batch has data points.  The batch is the data ``batch x event_shape``, or a
    tuple whose first element it is (labels are ignored).

    :param generator: noise ``batch x noise_dim`` -> samples ``batch x event_shape``
        (e.g. :class:`hybridpgm.generative.gan.MLPGenerator`).
    :param discriminator: ``batch x event_shape`` -> logits ``batch``
        (e.g. :class:`hybridpgm.generative.gan.MLPDiscriminator`).
    :param k: discriminator steps per generator step.
    :param noise_dim: noise dimension (default ``generator.noise_dim``).

    >>> from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator
    >>> gan = GAN(MLPGenerator(8, (2,)), MLPDiscriminator((2,)), k=2)
    >>> gan.schedule
    ['discriminator', 'discriminator', 'generator']
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, *, k: int = 1, noise_dim: int | None = None):
        super().__init__(generator, discriminator, k=k, noise_dim=noise_dim)

    def discriminator_loss(self, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        """:math:`\\mathcal L_\\phi`, the discrimination loss (0-d).

        :param x_real: data ``batch x event_shape``.
        :param x_fake: model samples ``batch x event_shape``."""
        return self.discrimination_loss(x_real, x_fake)

    def generator_loss(self, x_fake: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`\\mathcal L_\\theta = -\\mathbb E \\log q^r_\\phi(0 \\mid x)` over the samples (0-d).

        :param x_fake: model samples ``batch x event_shape``.
        :param weights: optional ``batch`` weights summing to one (a weighted sum); ``None``: the mean."""
        return -weighted_mean(self.log_qr(x_fake, 0), weights)

    def discriminator_step_loss(self, batch) -> torch.Tensor:
        """:meth:`discriminator_loss` of the data and as many samples, drawn without gradients.

        :param batch: the data ``batch x event_shape``, or a tuple whose first element it is."""
        x = self.real(batch)
        with torch.no_grad():
            fake = self.generate(x.shape[0])
        return self.discriminator_loss(x, fake)

    def generator_step_loss(self, batch) -> torch.Tensor:
        """:meth:`generator_loss` of as many fresh samples as ``batch`` has data points.

        :param batch: the data ``batch x event_shape``, or a tuple whose first element it is."""
        x = self.real(batch)
        return self.generator_loss(self.generate(x.shape[0]))
