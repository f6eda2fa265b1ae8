"""Importance-weighted GAN: the IWAE idea applied to the generator.

Hu et al. [1] read the GAN generator's objective as a variational bound in
which :math:`p_\\theta(x \\mid y)` plays the role of the inference model, and
derive an importance-weighted version as IWAE [2] does for the VAE.  For
:math:`y = 0` each noise vector :math:`z_i` of a group of :math:`K` gets the
weight

.. math::

    w_i = \\frac{q^r_\\phi(y \\mid x_i)}{q_\\phi(y \\mid x_i)}
        = \\frac{q_\\phi(1 \\mid x_i)}{q_\\phi(0 \\mid x_i)} = e^{D_\\phi(x_i)},
    \\qquad \\tilde w_i = \\frac{w_i}{\\sum_{j=1}^K w_j},
    \\qquad x_i = G_\\theta(z_i),

and the generator's gradient is

.. math::

    \\nabla_\\theta \\mathcal L^K_\\theta = -\\mathbb E_{z_1, \\dots, z_K}
        \\Big[\\sum_{i=1}^K \\tilde w_i\\, \\nabla_\\theta \\log q^r_\\phi(0 \\mid G_\\theta(z_i))\\Big],

the normalized weights held constant (as in the IWAE gradient): samples the
discriminator finds realistic count more.  With :math:`K = 1` this is the GAN.
By default the generated samples' term of the discriminator's loss is weighted
the same way (``weight_discriminator=True``, as in [1]'s algorithm); pass
``False`` for the unweighted discriminator of the plain GAN.

References:

1. Z. Hu, Z. Yang, R. Salakhutdinov, E. P. Xing, *On Unifying Deep Generative
   Models*, ICLR 2018 (Section 4.1).
2. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
"""

from __future__ import annotations

import torch
from torch import nn

from hybridpgm.checks import flag
from hybridpgm.infer.adversarial.base import check_k
from hybridpgm.infer.adversarial.domain_log_q import log_sigmoid, softmax_weights
from hybridpgm.infer.adversarial.gan import GAN
from hybridpgm.keyword_alias import renamed_keyword

__all__ = ["IWGAN"]


class IWGAN(GAN):
    """The importance-weighted GAN: ``num_samples`` generator samples per data
    point, combined with self-normalized weights :math:`\\tilde w \\propto q^r_\\phi / q_\\phi`.

    :param generator: noise ``batch x noise_dim`` -> samples ``batch x event_shape``.
    :param discriminator: ``batch x event_shape`` -> logits ``batch``.
    :param num_samples: importance samples :math:`K` per data point (``>= 1``).
    :param k: discriminator steps per generator step.
    :param weight_discriminator: weight the discriminator's generated-sample
        term by :math:`\\tilde w` too (``True`` or ``False``).
    :param noise_dim: noise dimension (default ``generator.noise_dim``).
    :raises ConfigError: ``num_samples`` or ``k`` is not an integer >= 1, or ``weight_discriminator`` is not
        a ``bool``.
    """

    _SETTINGS = ("num_samples", "weight_discriminator")

    def __init__(self, generator: nn.Module, discriminator: nn.Module, *, num_samples: int = 4, k: int = 1,
                 weight_discriminator: bool = True, noise_dim: int | None = None):
        self.num_samples = check_k(num_samples, "num_samples")
        self.weight_discriminator = flag(weight_discriminator, "IWGAN weight_discriminator")
        super().__init__(generator, discriminator, k=k, noise_dim=noise_dim)

    @renamed_keyword(n="num_groups")
    def grouped_samples(self, num_groups: int) -> torch.Tensor:
        """``(num_samples * num_groups) x event_shape`` samples, one group of ``num_samples`` per data point:
        group ``i`` at rows ``i, i + num_groups, ...``.  The training losses' draw
        (:meth:`~hybridpgm.infer.adversarial.base.AdversarialObjective.generate`), differentiable.

        :param num_groups: the number of groups (data points) ``n``; the old keyword ``n=`` warns
            (:func:`~hybridpgm.keyword_alias.renamed_keyword`).
        :raises ConfigError: ``num_groups`` is not an integer >= 1.
        """
        return self.generate(self.num_samples * check_k(num_groups, "IWGAN.grouped_samples num_groups"))

    def normalized_weights(self, logits: torch.Tensor) -> torch.Tensor:
        """:math:`\\tilde w` (``num_samples x n``, detached, columns summing to one): a softmax over each column,
        in at least float32 under :func:`torch.autocast`
        (:func:`~hybridpgm.infer.adversarial.domain_log_q.softmax_weights`).

        :param logits: ``num_samples x n`` discriminator logits, :math:`\\log w_i = D_\\phi(x_i)`."""
        return softmax_weights(logits, dim=0)

    def generator_step_loss(self, batch) -> torch.Tensor:
        """:math:`-\\sum_i \\tilde w_i \\log q^r_\\phi(0 \\mid x_i)` over each data point's ``num_samples`` samples,
        averaged over the ``n`` data points (0-d).

        :param batch: the data ``n x event_shape``, or a tuple whose first element it is."""
        x = self.real(batch)
        n = x.shape[0]
        logits = self.logits(self.grouped_samples(n)).reshape(self.num_samples, n)
        weights = self.normalized_weights(logits)
        log_qr = log_sigmoid(logits)  # log q^r(0|x) = log q(1|x), in at least float32 under autocast
        return -(weights * log_qr).sum(0).mean()

    def discriminator_step_loss(self, batch) -> torch.Tensor:
        """The discrimination loss, its generated-sample term over ``num_samples`` samples per data point
        weighted by :math:`\\tilde w` (:meth:`GAN.discriminator_step_loss` without ``weight_discriminator``).

        :param batch: the data ``n x event_shape``, or a tuple whose first element it is."""
        x = self.real(batch)
        n = x.shape[0]
        if not self.weight_discriminator:
            return super().discriminator_step_loss(batch)
        with torch.no_grad():
            fake = self.grouped_samples(n)
        logits = self.logits(fake)
        weights = self.normalized_weights(logits.reshape(self.num_samples, n)).reshape(-1) / n
        log_q_fake = log_sigmoid(-logits)
        return -0.5 * (self.log_q(x, 1).mean() + (weights * log_q_fake).sum())
