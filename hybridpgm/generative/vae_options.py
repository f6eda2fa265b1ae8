"""The :class:`~hybridpgm.generative.vae.VAE`'s constructor options as attributes.

Two kinds (:class:`hybridpgm.options.Option`):

* read at each call, so they may be changed after construction: ``min_scale`` (the floor of the guide's standard
  deviations) and ``checkpoint_activations``.  Assigning one runs the constructor's check (a refused value raises
  the constructor's exception and leaves the old value) and records the value, so that :func:`hybridpgm.save`
  writes it and :func:`hybridpgm.load` rebuilds the VAE with it;
* deciding which parameters exist and their shapes, so fixed once the VAE is built: ``x_dim``, ``z_dim``,
  ``likelihood`` (a Gaussian likelihood owns ``log_scale``) and ``batch_norm`` (the networks' layers).  Assigning
  one raises :class:`~hybridpgm.errors.FixedOptionError` (an :class:`AttributeError` and a
  :class:`~hybridpgm.errors.ConfigError`): build a new VAE instead.

The networks ``encoder`` and ``decoder`` are read through :func:`~hybridpgm.module_registration.frozen_aware_module`
(registered with Pyro as ``pyro.module`` registers them, without its warning of a frozen part at every step).
"""

from __future__ import annotations

from hybridpgm.checks import flag, positive_real
from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.module_registration import frozen_aware_module
from hybridpgm.nn import checkpointing_saves_memory
from hybridpgm.options import PARAMETERS_BUILT, Option

__all__ = ["VAEOptions"]


def _min_scale(vae: VAEOptions, value: object) -> float:
    return positive_real(value, "VAE min_scale", error=ModelSpecError, allow_zero=True)


def _checkpoint_activations(vae: VAEOptions, value: object) -> bool:
    value = flag(value, "VAE checkpoint_activations", error=ModelSpecError)
    nets = [vae._modules.get(role) for role in ("encoder", "decoder")]  # not there yet inside the constructor
    if value and None not in nets and not any(map(checkpointing_saves_memory, nets)):
        raise ConfigError("VAE(checkpoint_activations=True) saves no memory without hidden layers: each network "
                          "is one Linear layer, which keeps only its input, as checkpointing would; "
                          "drop the option or give hidden widths")
    return value


class VAEOptions:
    """The options of a :class:`~hybridpgm.generative.vae.VAE` kept as attributes (a mixin; see the module
    docstring)."""

    encoder = frozen_aware_module("encoder", """The recognition network, ``[..., D] -> [..., 2 * z_dim]`` (the
        guide's means and raw scales); a part frozen by ``requires_grad_(False)`` is left out of Pyro's param store
        without a warning (:func:`~hybridpgm.module_registration.frozen_aware_module`).""")
    decoder = frozen_aware_module("decoder", """The generative network, ``[..., z_dim] -> [..., D]`` (the likelihood's
        logits or means); frozen parts as for ``encoder``.""")
    x_dim = Option(fixed=PARAMETERS_BUILT, doc="""Data dimension :math:`D` (fixed: it decides the networks' shapes).""")
    z_dim = Option(fixed=PARAMETERS_BUILT, doc="""Latent dimension (fixed: it decides the networks' shapes).""")
    likelihood = Option(fixed=PARAMETERS_BUILT, doc="""``"bernoulli"`` or ``"gaussian"`` (fixed: a Gaussian
        likelihood owns the parameter ``log_scale``).""")
    batch_norm = Option(fixed=PARAMETERS_BUILT, doc="""Whether the hidden layers are batch-normalised (fixed: it decides
        the networks' layers; ``False`` without hidden layers, whatever the constructor was given).""")
    min_scale = Option(_min_scale, """Floor of the guide's standard deviations, read at
        each call.  Assigning checks the value as the constructor does and :func:`hybridpgm.save` records it.

        :raises ModelSpecError: (on assignment) a value that is not a finite non-negative number.""")
    checkpoint_activations = Option(_checkpoint_activations, """Whether the
        encoder's and decoder's activations are recomputed in the backward pass, read at each call.  Assigning
        checks the value as the constructor does and :func:`hybridpgm.save` records it.

        :raises ModelSpecError: (on assignment) a value that is not ``True`` or ``False``.
        :raises ConfigError: (on assignment) ``True`` for networks without hidden layers (it saves no memory).""")
