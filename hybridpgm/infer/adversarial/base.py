"""The shared machinery of the adversarial objectives: :math:`q_\\phi(y \\mid x)` and its reversal.

Hu et al. [1] write every adversarial model as variational EM over a domain indicator :math:`y`: :math:`y = 1`
marks the data distribution, :math:`y = 0` the model's (implicit) distribution, with

.. math::

    p_\\theta(x \\mid y) = \\begin{cases} p_{g_\\theta}(x) & y = 0 \\\\
                                         p_\\text{data}(x) & y = 1, \\end{cases}
    \\qquad p(y) = \\mathrm{Bernoulli}(\\tfrac12).

The discriminator is the *inference model* :math:`q_\\phi(y \\mid x)`, :math:`q_\\phi(y = 1 \\mid x) =
\\sigma(D_\\phi(x))` with :math:`D_\\phi` the network's logit, and the generator maximises the likelihood of the
*reversed* posterior :math:`q^r_\\phi(y \\mid x) = q_\\phi(1 - y \\mid x)`:

.. math::

    \\max_\\phi\\; \\mathbb E_{p_\\theta(x \\mid y) p(y)}\\big[\\log q_\\phi(y \\mid x)\\big],
    \\qquad
    \\max_\\theta\\; \\mathbb E_{p_\\theta(x \\mid y) p(y)}\\big[\\log q^r_\\phi(y \\mid x)\\big].

:class:`AdversarialObjective` holds a generator and a discriminator, checks at construction that their shapes
agree, and gives :meth:`~AdversarialObjective.log_q` and :meth:`~AdversarialObjective.log_qr`; every objective
of :mod:`hybridpgm.infer.adversarial` is written through those two, and they through
:mod:`~hybridpgm.infer.adversarial.domain_log_q` (in at least float32 under :func:`torch.autocast`).

References:

1. Z. Hu, Z. Yang, R. Salakhutdinov, E. P. Xing, *On Unifying Deep Generative Models*, ICLR 2018.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch
from torch import nn

from hybridpgm.checks import (as_integer, check_player, generator_or_none, name_list, positive_real, sample_count,
                              shown_items)
from hybridpgm.data.validation import as_model_dtype, defer_finite
from hybridpgm.errors import ConfigError, DataError, ModelSpecError, ObjectiveError
# log q from logits (in at least float32 under autocast): split off, still importable from here
from hybridpgm.infer.adversarial.domain_log_q import exact_label, log_q_from_logits, weighted_mean
from hybridpgm.infer.adversarial.dry_run import _dry_run, _dtype_reference, dry_run_discriminator, floating_like
from hybridpgm.infer.particle_probe import keeping_module_state
from hybridpgm.keyword_alias import renamed_keyword
from hybridpgm.network_checks import check_network, check_output
from hybridpgm.options import Option
from hybridpgm.rng_scope import seeded_globally_from
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["AdversarialGame", "AdversarialObjective", "adversarial_optim", "check_k", "dry_run_discriminator",
           "log_q_from_logits", "weighted_mean"]


def check_k(k: Any, name: str = "k") -> int:
    """``k`` as a positive integer, else :class:`~hybridpgm.errors.ConfigError`."""
    n = as_integer(k)  # integer scalars (NumPy's) pass; bool and floats do not
    if n is None or n < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {k!r}")
    return n


#: the longest ``repr`` of one value that :meth:`AdversarialGame.__repr__` shows whole
_REPR_VALUE_CHARS = 40


def _short_repr(value: Any) -> str:
    """``repr(value)``, cut to :data:`_REPR_VALUE_CHARS` characters (ending in ``...``) when longer."""
    text = repr(value)
    return text if len(text) <= _REPR_VALUE_CHARS else text[:_REPR_VALUE_CHARS - 3] + "..."


def _unique(params) -> list[nn.Parameter]:
    """The trainable ``params``, each once (by identity), in the order first met."""
    return list({id(p): p for p in params if p.requires_grad}.values())  # a key met again keeps its first place


class AdversarialGame:
    """Players ``"discriminator"`` (stepped ``k`` times per step) and ``"generator"`` around a discriminator
    :math:`q_\\phi(y \\mid x)`.

    :param module: a :class:`torch.nn.ModuleDict` holding every network; the one named ``"discriminator"`` gives
        the logits of :math:`q_\\phi`.
    :param k: discriminator steps per generator step (``>= 1``).
    :param discriminator_modules: the names in ``module`` trained by the discriminator player (``"discriminator"``
        and these); the others are the generator player's.
    :raises ConfigError: ``k < 1``, also assigned later (``k = 0`` would not train); a bare string as the names.
    :raises ModelSpecError: ``module`` has no ``"discriminator"`` entry, or no entry of a name in
        ``discriminator_modules`` (naming the missing names and those it has).
    """

    def __init__(self, module: nn.ModuleDict, *, k: int = 1, discriminator_modules: Sequence[str] = ()):
        self.k = k
        names = ("discriminator", *name_list(discriminator_modules, f"{type(self).__name__} discriminator_modules"))
        if missing := [name for name in names if name not in module]:
            raise ModelSpecError(f"{type(self).__name__}: its module has no network named {shown_items(missing)} "
                                 f"(it holds {shown_items(list(module))}): 'discriminator' gives the logits of "
                                 f"q(y | x), discriminator_modules names the discriminator player's other networks")
        self.module, self.discriminator, self._discriminator_modules = module, module["discriminator"], names

    #: discriminator steps per generator step, checked when assigned (:mod:`hybridpgm.options`)
    k = Option(lambda self, value: check_k(value))
    #: the attributes, beyond ``k``, that define a game of this class (:meth:`settings`)
    _SETTINGS: tuple[str, ...] = ()
    #: the attributes, beyond :meth:`settings`, that ``repr`` shows (the shapes the networks were checked for)
    _REPR_EXTRAS: tuple[str, ...] = ()

    def __repr__(self) -> str:
        """``GAN(k=1, noise_dim=8, event_shape=(2,))``: the class, ``k``, the class's settings (:meth:`settings`)
        and shapes, each value's repr cut to 40 characters; the networks are left out (``repr(game.module)``
        shows them)."""
        names = ("k", *self._SETTINGS, *self._REPR_EXTRAS)
        fields = ", ".join(f"{name}={_short_repr(getattr(self, name, '?'))}" for name in names)
        return f"{type(self).__name__}({fields})"

    # -- the training contract ----------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """What defines the game beyond its parameters, compared when ``fit`` resumes a checkpoint: ``k`` and the
        class's own weights and switches (``num_samples``, ``info_weight``...)."""
        return {"k": self.k, **{name: getattr(self, name) for name in self._SETTINGS}}

    @property
    def schedule(self) -> list[str]:
        return ["discriminator"] * self.k + ["generator"]

    def players(self) -> dict[str, list[nn.Parameter]]:
        """``"discriminator"``: the trainable parameters of the discriminator's modules; ``"generator"``: those
        of the others.  A parameter that several modules of one player share (InfoGAN's code posterior on the
        discriminator's body [1 of :mod:`~hybridpgm.infer.adversarial.infogan`]) is listed once, in the order
        first met, so that the player's optimizer steps it once.

        :raises ConfigError: a parameter belongs to modules of both players: the generator's step would move
            :math:`q_\\phi` itself, which the reversed objective holds fixed."""
        disc = _unique(p for n in self._discriminator_modules for p in self.module[n].parameters())
        gen = _unique(p for n, m in self.module.items() if n not in self._discriminator_modules
                      for p in m.parameters())
        shared = {id(p) for p in disc} & {id(p) for p in gen}
        if shared:
            names = [name for name, p in self.module.named_parameters(remove_duplicate=False) if id(p) in shared]
            raise ConfigError(f"{type(self).__name__}: {len(shared)} parameter(s) belong to both the "
                              f"'discriminator' and the 'generator' players ({', '.join(names[:4])}"
                              f"{', ...' if len(names) > 4 else ''}); the discriminator player's modules "
                              f"{list(self._discriminator_modules)} may share parameters among themselves, not with "
                              f"the generator's")
        return {"discriminator": disc, "generator": gen}

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """The 0-d loss of one player's step: :meth:`discriminator_step_loss` or :meth:`generator_step_loss`.

        :param str player: ``"discriminator"`` or ``"generator"`` (another name raises :class:`ConfigError`).
        :param batch: a batch of real data (a tensor, or a tuple whose first item is the data)."""
        if player == "discriminator":
            return self.discriminator_step_loss(batch)
        if player == "generator":
            return self.generator_step_loss(batch)
        check_player(player, ("discriminator", "generator"), type(self).__name__)

    def discriminator_step_loss(self, batch: Any) -> torch.Tensor:
        """The 0-d loss of the discriminator player on ``batch`` (each subclass defines it).

        :param batch: a batch of real data, as for :meth:`loss`."""
        raise NotImplementedError

    def generator_step_loss(self, batch: Any) -> torch.Tensor:
        """The 0-d loss of the generator player on ``batch`` (each subclass defines it).

        :param batch: a batch of real data, as for :meth:`loss`."""
        raise NotImplementedError

    def checked_data(self, x: torch.Tensor, what: str | None = None) -> torch.Tensor:
        """A batch's data refused when empty, in the dtype of the network that takes the data (the discriminator's,
        or that of the first network of :meth:`data_networks` holding a floating parameter, or else a floating
        buffer: :func:`~hybridpgm.infer.adversarial.dry_run.floating_like`; the rule of
        :func:`hybridpgm.data.validation.as_model_dtype`), and checked for NaN/inf (inside :func:`hybridpgm.fit` in
        the step's one host read, :func:`~hybridpgm.data.validation.defer_finite`).

        :param x: ``batch x event_shape`` data, its shape already checked by the objective.
        :param what: the data, as messages name it (default ``"<class name> data"``).
        :raises DataError: an empty batch, a dtype the networks do not convert exactly, or NaN/inf values."""
        what = f"{type(self).__name__} data" if what is None else what
        if x.shape[0] == 0:
            raise DataError(f"{type(self).__name__} got an empty batch (shape {tuple(x.shape)}); give {what} at "
                            f"least one row")
        ref = _dtype_reference(*self.data_networks())
        x = x if ref is None else as_model_dtype(x, ref.dtype, what)
        return defer_finite(x, what)

    def data_networks(self) -> tuple[nn.Module, ...]:
        """The networks that take the data, in order: the first with a floating parameter (or, parameter-free,
        a floating buffer) gives the data's dtype
        (:meth:`checked_data`).  The discriminator here; ADA's feature extractor comes first."""
        return (self.discriminator,)

    # -- q_phi(y|x) and its reversal ------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``batch`` logits :math:`D_\\phi(x)` of :math:`q_\\phi(y = 1 \\mid x)`.

        :param x: ``batch x event_shape`` inputs of the discriminator.
        :raises DataError: ``x`` is one example without its batch dimension (its shape is the game's
            ``event_shape``), before the discriminator runs.
        :raises ObjectiveError: the discriminator does not return one logit per example (a scalar logit: the
            message says that ``x`` may be one example without its batch dimension).
        :raises ModelSpecError: it returns no single tensor (a tuple, as in training mode only some do)."""
        one = "give one example x as x[None] (x.unsqueeze(0))"
        if tuple(x.shape) == tuple(getattr(self, "event_shape", None) or (None,)):
            expected = ", ".join(map(str, x.shape))
            raise DataError(f"{type(self).__name__}.logits: x of shape {tuple(x.shape)} is one example without its "
                            f"batch dimension (the inputs are (batch, {expected})); {one}")
        out = check_output(self.discriminator(x), "the discriminator")
        if out.dim() == 2 and out.shape[-1] == 1:
            out = out.squeeze(-1)
        if out.shape != x.shape[:1]:
            hint = f"; if x (shape {tuple(x.shape)}) is one example, its batch dimension is missing: {one}"
            raise ObjectiveError(f"discriminator returned shape {tuple(out.shape)} for a batch of {x.shape[0]}; "
                                 f"expected one logit per example{hint if out.dim() == 0 else ''}")
        return out

    def log_q(self, x: torch.Tensor, y: float | torch.Tensor) -> torch.Tensor:
        """``batch`` values of :math:`\\log q_\\phi(y \\mid x)`.

        :param x: ``batch x event_shape``.
        :param y: the domain label, ``1`` (data) or ``0`` (model), or a ``batch`` tensor of them."""
        return log_q_from_logits(self.logits(x), y)

    def log_qr(self, x: torch.Tensor, y: float | torch.Tensor) -> torch.Tensor:
        """``batch`` values of the reversed :math:`\\log q^r_\\phi(y \\mid x) = \\log q_\\phi(1 - y \\mid x)`.

        :param x: ``batch x event_shape``.
        :param y: the domain label, as for :meth:`log_q`."""
        flipped = 1 - y if exact_label(y) else 1 - torch.as_tensor(y, dtype=x.dtype, device=x.device)
        return log_q_from_logits(self.logits(x), flipped)

    def discrimination_loss(self, x_real: torch.Tensor, x_fake: torch.Tensor,
                            fake_weights: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`-\\mathbb E_{p_\\theta(x \\mid y) p(y)} \\log q_\\phi(y \\mid x)` with :math:`p(y) = \\tfrac12` (0-d).

        :param x_real: real data ``batch x event_shape`` (:math:`y = 1`).
        :param x_fake: model samples ``batch' x event_shape`` (:math:`y = 0`).
        :param fake_weights: optional ``batch'`` weights of the samples, summing to one (``None``: the plain mean)."""
        return -0.5 * (self.log_q(x_real, 1).mean() + weighted_mean(self.log_q(x_fake, 0), fake_weights))


class AdversarialObjective(AdversarialGame):
    """An :class:`AdversarialGame` whose generator is an implicit model :math:`x = G_\\theta(z)`,
    :math:`z \\sim \\mathcal N(0, I)`.

    :param generator: maps noise ``batch x input_dim`` to samples ``batch x event_shape``.
    :param discriminator: maps ``batch x event_shape`` to logits ``batch`` (or ``batch x 1``) of
        :math:`q_\\phi(y = 1 \\mid x)`.
    :param k: discriminator steps per generator step (``>= 1``).
    :param noise_dim: dimension of the standard normal noise; read from ``generator.noise_dim`` when omitted.
    :param modules: further named modules of the objective (they join ``module``).
    :param discriminator_modules: names among ``modules`` trained by the discriminator player.
    :raises ConfigError: ``k < 1``.
    :raises ModelSpecError: the generator's output shape is not the discriminator's input shape."""

    _REPR_EXTRAS = ("noise_dim", "event_shape")

    def __init__(self, generator: nn.Module, discriminator: nn.Module, *, k: int = 1, noise_dim: int | None = None,
                 modules: dict[str, nn.Module] | None = None, discriminator_modules: Sequence[str] = ()):
        check_k(k)
        check_network(generator, "the generator")
        check_network(discriminator, "the discriminator")
        noise_dim = getattr(generator, "noise_dim", None) if noise_dim is None else noise_dim
        if as_integer(noise_dim) is None or as_integer(noise_dim) < 1:
            raise ModelSpecError(f"noise_dim must be a positive integer (pass noise_dim= or give the generator "
                                 f"a noise_dim attribute), got {noise_dim!r}")
        self.noise_dim = as_integer(noise_dim)
        self.generator = generator
        self.event_shape = _dry_run(generator, discriminator, self.noise_dim)
        module = nn.ModuleDict({"generator": generator, "discriminator": discriminator, **(modules or {})})
        super().__init__(module, k=k, discriminator_modules=discriminator_modules)

    # -- sampling and data ---------------------------------------------------------
    @renamed_keyword(n="num_samples")
    def noise(self, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples x noise_dim`` standard normal noise in the generator's dtype and on its device: those of
        its first floating parameter, or, for a parameter-free generator, of its first floating buffer (a fixed
        float64 map draws float64 noise); the discriminator's for a generator with neither, torch's defaults for
        two such networks (:func:`~hybridpgm.infer.adversarial.dry_run.floating_like`, as the construction's dry
        run draws it).

        :param num_samples: the number of rows (the old keyword ``n=`` still works for one release, with a
            :class:`FutureWarning`: :func:`~hybridpgm.keyword_alias.renamed_keyword`).
        :param generator: the *random-number* generator, a :class:`torch.Generator` on any device; ``None`` draws
            from torch's global stream.  The noise is drawn with torch's global streams seeded from one draw of it
            and restored afterwards (:func:`~hybridpgm.rng_scope.seeded_globally_from`, :meth:`sample`'s scope): the
            noise is a function of its state, and the caller's streams do not move.
        :raises ConfigError: ``num_samples`` is not a non-negative integer, both it and ``n`` are given, or
            ``generator`` is not a :class:`torch.Generator` or ``None`` (the network passed by mistake)."""
        num_samples = sample_count(num_samples, f"{type(self).__name__}.noise num_samples")
        generator = generator_or_none(generator, f"{type(self).__name__}.noise generator (the random-number "
                                                 f"generator, not the network)")
        with seeded_globally_from(generator):  # no scope without one
            return torch.randn(num_samples, self.noise_dim, **floating_like(self.generator, self.discriminator))

    @renamed_keyword(n="num_samples")
    def generate(self, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples x event_shape`` samples :math:`x = G_\\theta(z)` of :math:`p_\\theta(x \\mid y = 0)` as
        the training losses draw them: differentiable in :math:`\\theta`, and a generator in training mode counts
        them as a training batch (a batch norm's running statistics move).

        :param num_samples: the number of samples (the old keyword ``n=`` still works for one release, with a
            :class:`FutureWarning`: :func:`~hybridpgm.keyword_alias.renamed_keyword`).
        :param generator: the *random-number* generator, a :class:`torch.Generator` on any device; ``None`` draws
            from torch's global stream.  :meth:`noise` and the network (its dropout) run with torch's global
            streams seeded from one draw of it and restored afterwards
            (:func:`~hybridpgm.rng_scope.seeded_globally_from`), as in :meth:`sample`, whose samples these are
            for the same generator state (with gradients, and the network's buffers updated in training mode).
        :raises ConfigError: ``num_samples`` is not a non-negative integer, both it and ``n`` are given, or
            ``generator`` is not a :class:`torch.Generator` or ``None`` (the network passed by mistake)."""
        num_samples = sample_count(num_samples, f"{type(self).__name__}.generate num_samples")
        generator = generator_or_none(generator, f"{type(self).__name__}.generate generator (the random-number "
                                                 f"generator, not the network)")
        with seeded_globally_from(generator):  # no scope without one; noise by position: a subclass's noise(n)
            return self.generator(self.noise(num_samples))

    @renamed_keyword(n="num_samples")
    @torch.no_grad()
    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples x event_shape`` samples :math:`x = G_\\theta(z)` of :math:`p_\\theta(x \\mid y = 0)` to look
        at or score, without gradients.  The generator runs in the mode it is in (in training mode, the mode
        :func:`hybridpgm.fit` hands it back in, a batch norm normalises by the batch's statistics) and its
        buffers are left as they were (:func:`~hybridpgm.infer.particle_probe.keeping_module_state`: the running
        statistics training gathered do not move, as for :meth:`hybridpgm.VAE.sample`); :meth:`generate` is the
        training losses' draw.

        :param num_samples: the number of samples (the old keyword ``n=`` still works for one release, with a
            :class:`FutureWarning`: :func:`~hybridpgm.keyword_alias.renamed_keyword`).
        :param generator: the *random-number* generator, a :class:`torch.Generator` for the draws (torch's
            spelling, as in every sampler of the package; the network is :attr:`generator`); ``None`` draws from
            torch's global stream.  :meth:`generate` (a subclass's own included) and the network run with torch's
            global streams seeded from one draw of it and restored afterwards
            (:func:`~hybridpgm.rng_scope.seeded_globally_from`): the samples are a function of
            its state, and the caller's streams do not move.
        :raises ConfigError: ``num_samples`` is not a non-negative integer, both it and ``n`` are given, or
            ``generator`` is not a :class:`torch.Generator` or ``None`` (the network passed by mistake)."""
        # named for this call, not generate's
        num_samples = sample_count(num_samples, f"{type(self).__name__}.sample num_samples")
        generator = generator_or_none(generator, f"{type(self).__name__}.sample generator (the random-number "
                                                 f"generator, not the network)")
        with keeping_module_state(self.generator), seeded_globally_from(generator):  # no scope without one
            return self.generate(num_samples)  # by position: a subclass's generate(self, n) still works

    def real(self, batch: Any) -> torch.Tensor:
        """The data of a batch, shape-checked and in the discriminator's dtype (the rule of
        :func:`hybridpgm.data.validation.as_model_dtype`: bool and integers exactly, float64 for float32 refused).

        :param batch: a tensor ``batch x event_shape``, or a tuple (or list) whose first item is one.
        :raises DataError: no tensor of shape ``(batch, *event_shape)``, an empty batch, or NaN/inf values."""
        x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
        if not (isinstance(x, (tuple, list)) and not x):  # an empty tuple is told the shape expected below
            require_tensor(x, f"{type(self).__name__} data", arg="x")
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or tuple(x.shape[1:]) != self.event_shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else f"an empty {type(x).__name__}"
            expected = ", ".join(map(str, self.event_shape))
            raise DataError(f"{type(self).__name__} expects data of shape (batch, {expected}) like the generator's "
                            f"output, got {shape}")
        return self.checked_data(x)


def adversarial_optim(lr: float = 1e-3, beta1: float = 0.5, beta2: float = 0.999):
    """The usual optimizer factory of adversarial training for :func:`hybridpgm.fit`:
    Adam with :math:`\\beta_1 = 0.5` [1 of :mod:`~hybridpgm.generative.gan`], one per player.

    >>> opt = adversarial_optim(lr=2e-4)

    :param float lr: the learning rate (default ``1e-3``).
    :param float beta1: Adam's first-moment decay :math:`\\beta_1` (default ``0.5``).
    :param float beta2: Adam's second-moment decay :math:`\\beta_2` (default ``0.999``).
    :returns: ``params -> torch.optim.Adam``, a :func:`functools.partial` with ``lr`` and ``betas`` set.
    :raises ConfigError: ``lr`` is not a finite positive number, or ``beta1`` / ``beta2`` not in ``[0, 1)``.
    """
    lr = positive_real(lr, "adversarial_optim lr")
    for name, beta in (("beta1", beta1), ("beta2", beta2)):
        if positive_real(beta, f"adversarial_optim {name}", allow_zero=True) >= 1:
            raise ConfigError(f"adversarial_optim {name} must be in [0, 1), got {beta!r}")
    return functools.partial(torch.optim.Adam, lr=lr, betas=(beta1, beta2))
