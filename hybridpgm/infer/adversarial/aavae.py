"""The adversary-activated VAE (AAVAE).

In Hu et al.'s formulation [1] the VAE [2] is the adversarial game with a
*perfect*, frozen discriminator :math:`q_*(y \\mid x)`: it tells every model
sample apart, so under the reversed :math:`q^r_*` only real data feed the
reconstruction and KL terms.  The AAVAE replaces :math:`q_*` by a learned
discriminator :math:`q_\\phi` trained as in a GAN, which *activates* the model's
own samples:

.. math::

    \\max_{\\theta, \\eta}\\;
    \\mathbb E_{p_\\theta(x \\mid y) p(y)}\\Big[ q^r_\\phi(0 \\mid x)\\,
        \\big(\\mathbb E_{q_\\eta(z \\mid x)} \\log p_\\theta(x \\mid z)
        - \\mathrm{KL}(q_\\eta(z \\mid x) \\,\\|\\, p(z))\\big) \\Big]

(the :math:`y = 1` component, :math:`p_\\text{data}`, does not depend on
:math:`\\theta, \\eta`).  Each example -- real, and model samples
:math:`\\tilde x \\sim p_\\theta(x)` -- counts by :math:`q^r_\\phi(0 \\mid x) =
q_\\phi(1 \\mid x)`, the discriminator's belief that it is real: samples it
finds realistic count more.  Here the weights are held constant, normalized to
mean one within each half of the batch (``normalize_weights``) so the
real-data term keeps the ELBO's scale, and the samples' term is scaled by
``fake_weight``.  With ``fake_weight=0`` and unit weights it is the VAE.

The VAE is :class:`hybridpgm.VAE`; the per-example ELBO comes from its Pyro
model and guide (:func:`hybridpgm.infer.iwae.importance_log_weights` with one
particle).

References:

1. Z. Hu, Z. Yang, R. Salakhutdinov, E. P. Xing, *On Unifying Deep Generative
   Models*, ICLR 2018 (Section 6.2).
2. D. P. Kingma, M. Welling, *Auto-Encoding Variational Bayes*, ICLR 2014.
"""

from __future__ import annotations

import torch
from torch import nn

from hybridpgm.checks import as_integer, flag, generator_or_none, positive_real, sample_count
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.infer.adversarial.base import AdversarialGame, dry_run_discriminator
from hybridpgm.infer.adversarial.dry_run import _dtype_reference, declared_shape
from hybridpgm.infer.iwae import importance_log_weights
from hybridpgm.keyword_alias import renamed_keyword
from hybridpgm.network_checks import check_network
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["AAVAE"]


class AAVAE(AdversarialGame):
    """Adversary-activated VAE: players ``"discriminator"`` (:math:`\\phi`) and
    ``"generator"`` (the VAE's encoder and decoder, :math:`\\theta, \\eta`).

    :param vae: a :class:`hybridpgm.VAE` (``model``/``guide``/``sample``).
    :param discriminator: ``batch x x_dim`` -> logits ``batch`` of :math:`q_\\phi(y = 1 \\mid x)`.
    :param k: discriminator steps per generator step.
    :param fake_weight: scale of the model samples' term.
    :param normalize_weights: divide the weights by their mean over each half of the batch (``True`` or
        ``False``).  A row's weight then depends on the other rows of its batch, so the loss is not
        *decomposable* (:mod:`hybridpgm.train.objective`): :attr:`decomposable` is ``False`` and
        :func:`hybridpgm.fit` refuses ``accumulate > 1`` and several ranks; pass ``False`` to train so.
    :raises ModelSpecError: ``vae`` is not a VAE, its data shape is not the discriminator's input shape, the
        discriminator cannot take a ``2 x x_dim`` batch in the VAE's dtype, or does not return one logit per row.
    :raises ConfigError: ``fake_weight`` is not a finite number >= 0, ``normalize_weights`` is not a ``bool``,
        or ``k < 1``.
    """

    _SETTINGS = ("fake_weight", "normalize_weights")
    _REPR_EXTRAS = ("x_dim",)

    def __init__(self, vae: nn.Module, discriminator: nn.Module, *, k: int = 1, fake_weight: float = 1.0,
                 normalize_weights: bool = True):
        x_dim = getattr(vae, "x_dim", None)
        if as_integer(x_dim) is None or not all(callable(getattr(vae, m, None)) for m in ("model", "guide", "sample")):
            raise ModelSpecError(f"AAVAE needs a hybridpgm.VAE (x_dim, model, guide, sample), got {type(vae).__name__}")
        check_network(discriminator, "the discriminator")
        in_shape = declared_shape(discriminator, "in_shape", "the discriminator")
        if in_shape is not None and in_shape != (x_dim,):
            raise ModelSpecError(f"the VAE's data shape ({x_dim},) does not match the discriminator's input shape "
                                 f"{in_shape}")
        fake_weight = positive_real(fake_weight, "AAVAE fake_weight", allow_zero=True)
        normalize_weights = flag(normalize_weights, "AAVAE normalize_weights")
        _check_discriminator(vae, discriminator, as_integer(x_dim))
        self.fake_weight, self.normalize_weights = fake_weight, normalize_weights
        super().__init__(nn.ModuleDict({"vae": vae, "discriminator": discriminator}), k=k)
        self.vae = vae

    #: quoted by :func:`hybridpgm.fit` when it refuses to split a batch of normalized weights
    not_decomposable_remedy = ("pass normalize_weights=False (hybridpgm train aavae --unnormalized-weights), "
                               "or train with accumulate=1 in one process")

    @property
    def x_dim(self) -> int:
        """The VAE's data dimension: the discriminator takes ``batch x x_dim``."""
        return self.vae.x_dim

    @property
    def decomposable(self) -> bool:
        """Whether the loss of a batch is the size-weighted mean of the losses of its parts
        (:mod:`hybridpgm.train.objective`): not with ``normalize_weights``, whose weights are divided by
        their mean over the batch."""
        return not self.normalize_weights

    def data_networks(self) -> tuple[nn.Module, ...]:
        """The discriminator and the VAE both take the data: the first holding a floating parameter (or buffer)
        gives their dtype (the VAE's for a discriminator without any; construction refuses the two in different
        dtypes)."""
        return self.discriminator, self.vae

    def real(self, batch) -> torch.Tensor:
        """The data of a batch (a tensor, or the first tensor of a tuple), ``batch x x_dim``, converted and
        checked as :meth:`AdversarialObjective.real <hybridpgm.infer.adversarial.base.AdversarialObjective.real>`
        does (:meth:`~hybridpgm.infer.adversarial.base.AdversarialGame.checked_data`): bool and integer data
        become the networks' float dtype exactly.

        :param batch: a tensor ``batch x x_dim``, or a tuple (or list) whose first item is one.
        :raises DataError: no tensor of shape ``(batch, x_dim)``, an empty batch, a dtype the networks do not
            convert exactly, or NaN/inf values (inside :func:`hybridpgm.fit` in the step's one host read)."""
        x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
        require_tensor(x, "AAVAE data", arg="x")
        if x.dim() != 2 or x.shape[-1] != self.vae.x_dim:
            raise DataError(f"AAVAE expects data of shape (batch, {self.vae.x_dim}), got {tuple(x.shape)}")
        return self.checked_data(x)

    @renamed_keyword(n="num_samples")
    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples x x_dim`` draws :math:`\\tilde x \\sim p_\\theta(x)` (binary for a Bernoulli VAE),
        detached.

        :param num_samples: the number of draws (the old keyword ``n=`` still works for one release, with a
            :class:`FutureWarning`: :func:`~hybridpgm.keyword_alias.renamed_keyword`).
        :param generator: a :class:`torch.Generator` for the draws; ``None`` draws from torch's global stream.
            It is passed on to :meth:`VAE.sample <hybridpgm.VAE.sample>` (whose ``generator=`` it must take).
        :raises ConfigError: ``num_samples`` is not a non-negative integer, both it and ``n`` are given, or
            ``generator`` is neither a :class:`torch.Generator` nor ``None``."""
        num_samples = sample_count(num_samples, "AAVAE.sample num_samples")
        generator = generator_or_none(generator, "AAVAE.sample generator")
        with torch.no_grad():
            if generator is None:  # a VAE-like model whose sample takes no generator still samples
                return self.vae.sample(num_samples, mean=False)
            return self.vae.sample(num_samples, mean=False, generator=generator)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """``batch`` single-sample ELBOs :math:`\\log p_\\theta(x, z) - \\log q_\\eta(z \\mid x)`, differentiable.

        :param x: ``batch x x_dim`` data or samples."""
        log_w, _ = importance_log_weights(self.vae.model, self.vae.guide, x, num_particles=1, max_plate_nesting=1)
        return log_w.squeeze(0)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """``batch`` constant (detached) weights :math:`q^r_\\phi(0 \\mid x) = q_\\phi(1 \\mid x)`, divided by their
        mean with ``normalize_weights``.

        :param x: ``batch x x_dim`` data or samples."""
        with torch.no_grad():
            w = self.log_qr(x, 0).exp()
            return w / w.mean().clamp_min(torch.finfo(w.dtype).tiny) if self.normalize_weights else w

    def discriminator_step_loss(self, batch) -> torch.Tensor:
        """The discrimination loss of the data against as many (detached) VAE draws.

        :param batch: the data, as for :meth:`real`."""
        x = self.real(batch)
        return self.discrimination_loss(x, self.sample(x.shape[0]))

    def generator_step_loss(self, batch) -> torch.Tensor:
        """The negative :meth:`weights`-weighted mean ELBO of the data, minus ``fake_weight`` times that of as many
        VAE draws when ``fake_weight`` is not zero.

        :param batch: the data, as for :meth:`real`."""
        x = self.real(batch)
        loss = -(self.weights(x) * self.elbo(x)).mean()
        if self.fake_weight:
            fake = self.sample(x.shape[0])
            loss = loss - self.fake_weight * (self.weights(fake) * self.elbo(fake)).mean()
        return loss


def _check_discriminator(vae: nn.Module, discriminator: nn.Module, x_dim: int) -> None:
    """Dry-run ``discriminator`` on a ``2 x x_dim`` batch of zeros in the VAE's dtype and device.

    :raises ModelSpecError: the VAE and the discriminator compute in different dtypes, the discriminator
        cannot take the batch, or does not return one logit per row (naming the shapes and dtypes)."""
    ref, disc_ref = _dtype_reference(vae), _dtype_reference(discriminator)
    if ref is not None and disc_ref is not None and ref.dtype != disc_ref.dtype:
        raise ModelSpecError(f"the VAE computes in {ref.dtype}, the discriminator in {disc_ref.dtype}; move both "
                             f"to one dtype (discriminator.to({ref.dtype}))")
    ref = ref if ref is not None else disc_ref
    kwargs = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
    dry_run_discriminator(discriminator, torch.zeros(2, x_dim, **kwargs), "the VAE's data")
