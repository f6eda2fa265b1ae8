"""InfoGAN: a GAN with an inference model over a structured code.

Chen et al.'s InfoGAN [1] feeds the generator a structured code :math:`c`
(a categorical part :math:`c_\\text{cat} \\sim \\mathrm{Cat}(1/C)` and a
continuous part :math:`c_\\text{cont} \\sim \\mathcal U(-1, 1)^m`) besides the
noise :math:`z`, and adds an inference model :math:`q_\\eta(c \\mid x)` that
recovers the code from the sample, maximising a variational lower bound on the
mutual information :math:`I(c; G_\\theta(z, c))`.  Hu et al. [2] write it as
the GAN of :mod:`~hybridpgm.infer.adversarial.gan` with the code joining the
latent variables:

.. math::

    \\max_{\\phi, \\eta}\\; \\mathbb E_{p_\\theta(x \\mid y) p(y)}\\big[\\log q_\\phi(y \\mid x)\\big]
        + \\lambda\\, \\mathbb E_{p(c)\\, p(z)}\\big[\\log q_\\eta(c \\mid G_\\theta(z, c))\\big],

.. math::

    \\max_\\theta\\; \\mathbb E_{p(c)\\, p(z)}\\big[\\log q^r_\\phi(0 \\mid G_\\theta(z, c))
        + \\lambda \\log q_\\eta(c \\mid G_\\theta(z, c))\\big],

with :math:`q_\\eta(c \\mid x) = \\mathrm{Cat}(c_\\text{cat}; \\mathrm{softmax}\\,\\ell_\\eta(x))
\\,\\mathcal N(c_\\text{cont}; \\mu_\\eta(x), I)`.  The categorical code is not
promised to pick up a class: on digits (``load_dataset("digits")``, 10 classes) with MLP networks, batch 64 and
2000 steps, its clustering accuracy of the test digits
(:func:`hybridpgm.diagnostics.gan_metrics.clustering_accuracy`) was 0.28 +- 0.05 over 4 seeds, and 0.25 +- 0.05
for a plain InfoGAN loop with the same networks; the adversarial game keeps the code's information low at that
budget (the lower bound on its mutual information 0.0 to 1.8 nats of :math:`\\log 10 = 2.3`, by seed).

References:

1. X. Chen, Y. Duan, R. Houthooft, J. Schulman, I. Sutskever, P. Abbeel,
   *InfoGAN: Interpretable Representation Learning by Information Maximizing
   Generative Adversarial Nets*, NeurIPS 2016.
2. Z. Hu, Z. Yang, R. Salakhutdinov, E. P. Xing, *On Unifying Deep Generative
   Models*, ICLR 2018.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hybridpgm.checks import as_integer, generator_or_none, positive_int, positive_real, sample_count
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.infer.adversarial.dry_run import floating_like
from hybridpgm.infer.adversarial.gan import GAN
from hybridpgm.keyword_alias import renamed_keyword
from hybridpgm.module_modes import keeping_modes
from hybridpgm.network_checks import check_network, check_output
from hybridpgm.precision_scope import exact_precision
from hybridpgm.rng_scope import seeded_globally_from
from hybridpgm.tensor_arguments import require_tensor
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["InfoGAN"]


class InfoGAN(GAN):
    """InfoGAN: players ``"discriminator"`` (:math:`\\phi` and :math:`\\eta`) and
    ``"generator"`` (:math:`\\theta`).

    The generator's input is ``[z, onehot(c_cat), c_cont]`` of dimension
    ``generator.noise_dim = noise + num_categories + num_continuous``.

    :param generator: ``batch x generator.noise_dim`` -> ``batch x event_shape``.
    :param discriminator: ``batch x event_shape`` -> logits ``batch``.
    :param code_posterior: :math:`q_\\eta`, ``batch x event_shape`` ->
        ``batch x (num_categories + num_continuous)`` (category logits, then
        the means of the continuous codes; ``batch`` for a code of width one).
    :param num_categories: :math:`C` (``0``: no categorical code).
    :param num_continuous: :math:`m` (``0``: no continuous code).
    :param info_weight: :math:`\\lambda`.
    :param k: discriminator steps per generator step.
    :param noise_dim: the generator's *total* input dimension (default ``generator.noise_dim``).
    :raises ModelSpecError: a code size that is not a non-negative integer, no code at all, or networks
        whose shapes do not fit the code.
    :raises ConfigError: ``info_weight`` is not a finite number >= 0, or ``k < 1``.
    """

    _SETTINGS = ("num_categories", "num_continuous", "info_weight")

    def __init__(self, generator: nn.Module, discriminator: nn.Module, code_posterior: nn.Module, *,
                 num_categories: int = 10, num_continuous: int = 2, info_weight: float = 1.0, k: int = 1,
                 noise_dim: int | None = None):
        check_network(code_posterior, "the code posterior")
        total = getattr(generator, "noise_dim", None) if noise_dim is None else noise_dim
        num_categories = positive_int(num_categories, "InfoGAN num_categories", error=ModelSpecError, minimum=0)
        num_continuous = positive_int(num_continuous, "InfoGAN num_continuous", error=ModelSpecError, minimum=0)
        info_weight = positive_real(info_weight, "InfoGAN info_weight", allow_zero=True)
        if num_categories < 0 or num_continuous < 0 or num_categories + num_continuous < 1:
            raise ModelSpecError(f"InfoGAN needs a code: num_categories={num_categories}, "
                                 f"num_continuous={num_continuous}")
        if as_integer(total) is not None and total <= num_categories + num_continuous:
            raise ModelSpecError(f"the generator's input ({total}) must exceed the code "
                                 f"({num_categories} categories + {num_continuous} continuous) by the noise")
        self.num_categories, self.num_continuous, self.info_weight = num_categories, num_continuous, info_weight
        super().__init__(generator, discriminator, k=k, noise_dim=total)
        self.module["code_posterior"] = code_posterior
        self._discriminator_modules = ("discriminator", "code_posterior")
        self._check_code_posterior(code_posterior)

    def _like(self) -> dict:
        """``dtype`` and ``device`` of the codes, those of the noise
        (:meth:`~hybridpgm.infer.adversarial.base.AdversarialObjective.noise`): the generator's (its first
        floating parameter's, else its first floating buffer's), else the discriminator's or the code posterior's
        (:func:`~hybridpgm.infer.adversarial.dry_run.floating_like`), else torch's defaults."""
        return floating_like(self.generator, self.discriminator, *self.module.values()) or {
            "device": torch.device("cpu"), "dtype": torch.get_default_dtype()}

    def _check_code_posterior(self, code_posterior: nn.Module) -> None:
        """Dry-run ``code_posterior`` on two rows of zeros of the event shape, in the dtype of what it reads: the
        samples and the data, the discriminator's inputs (its dtype; the code posterior's own for a
        parameter-free discriminator), not the generator's noise."""
        width = self.num_categories + self.num_continuous
        with keeping_modes(code_posterior), torch.no_grad():
            code_posterior.eval()
            x = torch.zeros((2, *self.event_shape), **floating_like(self.discriminator, code_posterior))
            try:
                out = code_posterior(x)
            except (RuntimeError, ValueError) as e:
                raise ModelSpecError(f"the code posterior cannot take the generator's output of shape "
                                     f"{self.event_shape}: {e}") from e
        out = self._code_outputs(out)
        if tuple(out.shape) != (2, width):
            raise ModelSpecError(f"the code posterior must return (batch, {width}) = (batch, num_categories + "
                                 f"num_continuous), got {tuple(out.shape)} for a batch of 2")

    def _code_outputs(self, out) -> torch.Tensor:
        """The code posterior's output ``out`` as ``batch x (num_categories + num_continuous)``: refused by name
        unless one tensor (a tuple, as some networks return in training mode only); a ``batch`` output read as
        ``batch x 1`` for a code of width one (:class:`~hybridpgm.generative.gan.MLPDiscriminator` with
        ``out_dim=1``)."""
        out = check_output(out, "the code posterior")
        return out.unsqueeze(-1) if out.dim() == 1 and self.num_categories + self.num_continuous == 1 else out

    # -- codes -----------------------------------------------------------------------
    @renamed_keyword(n="num_samples")
    def sample_codes(self, num_samples: int, *, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input, c_cat, c_cont)``: the generator input ``num_samples x noise_dim``, the
        categories ``num_samples`` (int64) and the continuous codes ``num_samples x num_continuous``:
        :math:`z \\sim \\mathcal{N}(0, I)`, :math:`c_{cat}` uniform on ``0..num_categories - 1`` (one-hot in the
        input) and :math:`c_{cont}` uniform on :math:`[-1, 1]`, concatenated as ``[z, one_hot(c_cat), c_cont]``.

        :param num_samples: the number of codes (the old keyword ``n=`` still works for one release, with a
            :class:`FutureWarning`: :func:`~hybridpgm.keyword_alias.renamed_keyword`).
        :param generator: the *random-number* generator, a :class:`torch.Generator` on the codes' device for the
            three draws (so a latent traversal can be reproduced); ``None`` draws from torch's global stream,
            exactly as before the keyword existed.
        :raises ConfigError: ``num_samples`` is not a non-negative integer, both it and ``n`` are given, or
            ``generator`` is not a :class:`torch.Generator` or ``None``."""
        n = sample_count(num_samples, "InfoGAN.sample_codes num_samples")
        generator = generator_or_none(generator, "InfoGAN.sample_codes generator (the random-number generator, "
                                                 "not the network)")
        like = self._like()
        noise = self.noise_dim - self.num_categories - self.num_continuous
        z = torch.randn(n, noise, **like, generator=generator)
        cat = torch.randint(max(self.num_categories, 1), (n,), device=like["device"], generator=generator)
        cont = torch.rand(n, self.num_continuous, **like, generator=generator) * 2 - 1
        onehot = F.one_hot(cat, self.num_categories).to(like["dtype"]) if self.num_categories else z[:, :0]
        return torch.cat([z, onehot, cont], dim=-1), cat, cont

    @renamed_keyword(n="num_samples")
    def generate(self, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples x event_shape`` samples :math:`G_\\theta(z, c)` with fresh codes (:meth:`sample_codes`),
        differentiable; :meth:`sample` draws them without gradients and leaves the generator's buffers alone.

        :param num_samples: the number of samples (the old keyword ``n=`` still works for one release, with a
            :class:`FutureWarning`: :func:`~hybridpgm.keyword_alias.renamed_keyword`).
        :param generator: the *random-number* generator, a :class:`torch.Generator` on any device; ``None`` draws
            from torch's global stream.  The codes and the network run with torch's global streams seeded from one
            draw of it and restored afterwards (:func:`~hybridpgm.rng_scope.seeded_globally_from`), as in
            :meth:`sample`, whose samples these are for the same generator state.
        :raises ConfigError: ``num_samples`` is not a non-negative integer, both it and ``n`` are given, or
            ``generator`` is not a :class:`torch.Generator` or ``None`` (the network passed by mistake)."""
        num_samples = sample_count(num_samples, "InfoGAN.generate num_samples")
        generator = generator_or_none(generator, "InfoGAN.generate generator (the random-number generator, not the "
                                                 "network)")
        with seeded_globally_from(generator):  # no scope without one
            return self.generator(self.sample_codes(num_samples)[0])

    def code_log_prob(self, x: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        """``batch`` values of :math:`\\log q_\\eta(c \\mid x)`.

        Under :func:`torch.autocast` the code posterior runs in the autocast dtype and its output is taken on in at
        least float32 (:class:`~hybridpgm.precision_scope.exact_precision`): CPU autocast keeps ``log_softmax`` of
        a bfloat16 output in bfloat16, which put the log-probability up to 0.12 off per row (10 categories).

        :param x: ``batch x event_shape`` samples.
        :param cat: ``batch`` integer categories in ``[0, num_categories)`` (ignored without a categorical code).
        :param cont: ``batch x num_continuous`` continuous codes.
        :raises DataError: a shape other than these, integer-valued ``cont`` or non-integer ``cat``, or a
            category outside ``[0, num_categories)`` (naming its row and value; inside :func:`hybridpgm.fit` at
            the step's one host read, :func:`~hybridpgm.train.deferred_checks.check_or_defer`).
        """
        cats = self.num_categories
        require_tensor(x, "InfoGAN.code_log_prob x", arg="x")
        if x.dim() == 0 or tuple(x.shape[1:]) != self.event_shape:
            got = tuple(x.shape)
            raise DataError(f"InfoGAN.code_log_prob x must have shape (batch, {', '.join(map(str, self.event_shape))})"
                            f", got {got}")
        n = x.shape[0]
        if cats and (not isinstance(cat, torch.Tensor) or tuple(cat.shape) != (n,) or cat.is_floating_point()
                     or cat.is_complex() or cat.dtype == torch.bool):
            got = _described(cat)
            raise DataError(f"InfoGAN.code_log_prob cat must be {n} integer categories (shape ({n},)), got {got}")
        if self.num_continuous and (not isinstance(cont, torch.Tensor) or tuple(cont.shape) != (n, self.num_continuous)
                                    or not cont.is_floating_point()):
            got = _described(cont)
            raise DataError(f"InfoGAN.code_log_prob cont must be floating codes of shape ({n}, {self.num_continuous}) "
                            f"(batch, num_continuous), got {got}")
        out = self._code_outputs(self.module["code_posterior"](x))
        with exact_precision(out) as (out,):  # at least float32 under autocast (see the docstring)
            return self._code_log_prob(out, cat, cont)

    def _code_log_prob(self, out: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        """:meth:`code_log_prob` from the code posterior's output ``out`` (``batch x (C + m)``), in ``out``'s
        dtype; ``cat`` and ``cont`` checked."""
        cats = self.num_categories
        logits, mean = out[:, :cats], out[:, cats:]
        log_prob = out.new_zeros(out.shape[0])
        if cats:
            in_range = (cat >= 0) & (cat < cats)

            def out_of_range() -> DataError:
                row = int((~in_range).nonzero().flatten()[0])
                return DataError(f"InfoGAN.code_log_prob cat must lie in 0..{cats - 1} (num_categories={cats}); "
                                 f"row {row} holds {int(cat[row])}")

            check_or_defer(in_range.all(), out_of_range, f"InfoGAN.code_log_prob cat lies outside 0..{cats - 1}")
            index = torch.where(in_range, cat, 0).long()
            log_prob = log_prob + logits.log_softmax(-1).gather(-1, index[:, None]).squeeze(-1)
        if self.num_continuous:
            log_prob = log_prob - 0.5 * ((cont - mean) ** 2).sum(-1) - 0.5 * self.num_continuous * math.log(2 * math.pi)
        return log_prob

    @torch.no_grad()
    def infer_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probs, means)``: :math:`q_\\eta(c_\\text{cat} \\mid x)` ``batch x C`` and the
        continuous codes' means ``batch x m``.

        The code posterior runs in eval mode (batch norm uses its running statistics and does not update them),
        each sub-module's own mode put back after (:func:`~hybridpgm.module_modes.keeping_modes`).  Under
        :func:`torch.autocast` its output is taken on in at least float32, as in :meth:`code_log_prob` (bfloat16
        probabilities were up to 5e-4 off).

        :param x: ``batch x event_shape`` data, converted and checked as the training data are (:meth:`real`).
        :raises DataError: ``x`` of another shape, empty, of a dtype the networks do not take exactly, or with
            NaN/inf values.
        """
        x = self.real(x)
        code_posterior = self.module["code_posterior"]
        with keeping_modes(code_posterior):
            code_posterior.eval()
            out = self._code_outputs(code_posterior(x))
        with exact_precision(out) as (out,):  # a 16-bit output under autocast taken on in at least float32
            return out[:, : self.num_categories].softmax(-1), out[:, self.num_categories:]

    # -- the losses --------------------------------------------------------------------
    def discriminator_step_loss(self, batch) -> torch.Tensor:
        """The GAN discrimination loss minus ``info_weight`` times the mean :meth:`code_log_prob` of samples
        drawn (without gradients) from fresh codes: the code posterior trains with the discriminator.

        :param batch: the data ``batch x event_shape``, or a tuple whose first element it is."""
        x = self.real(batch)
        with torch.no_grad():
            inputs, cat, cont = self.sample_codes(x.shape[0])
            fake = self.generator(inputs)
        info = self.code_log_prob(fake, cat, cont).mean()
        return self.discriminator_loss(x, fake) - self.info_weight * info

    def generator_step_loss(self, batch) -> torch.Tensor:
        """The GAN generator loss minus ``info_weight`` times the mean :meth:`code_log_prob` of the samples of
        fresh codes (the mutual-information term).

        :param batch: the data ``batch x event_shape``, or a tuple whose first element it is."""
        x = self.real(batch)
        inputs, cat, cont = self.sample_codes(x.shape[0])
        fake = self.generator(inputs)
        return self.generator_loss(fake) - self.info_weight * self.code_log_prob(fake, cat, cont).mean()


def _described(t) -> str:
    """``t``'s shape and dtype for a message (its type when it is no tensor)."""
    return f"shape {tuple(t.shape)}, dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
