"""The construction dry runs of the adversarial objectives: each network run once on a batch of two.

Running the generator on two noise vectors and the discriminator on its output when an objective is built finds
the event shape of the data, checks that the two networks fit each other and return what the losses read (one
tensor of samples, one logit per example), and initialises a lazy module (``nn.LazyLinear``) before the optimizers
are made.  Each network runs in eval mode, without gradients, and every sub-module's own mode is put back after
(:func:`~hybridpgm.module_modes.keeping_modes`).
"""

from __future__ import annotations

import torch
from torch import nn

from hybridpgm.checks import type_name
from hybridpgm.errors import ModelSpecError
from hybridpgm.module_modes import keeping_modes
from hybridpgm.network_checks import check_output
from hybridpgm.tensor_arguments import described_value

__all__ = ["declared_shape", "dry_run_discriminator", "floating_like"]


def _dtype_reference(*modules: nn.Module) -> torch.Tensor | None:
    """The tensor whose dtype and device a network's inputs take: of the first of ``modules`` that holds a
    floating tensor, its first floating parameter, else its first floating buffer (a parameter-free network
    computing with fixed float64 weights takes float64); ``None`` when none of them holds one.

    The one rule of the adversarial objectives: the noise follows the generator (then the discriminator), the
    data the networks that take them (:meth:`~hybridpgm.infer.adversarial.base.AdversarialGame.checked_data`)."""
    for module in modules:
        for tensors in (module.parameters(), module.buffers()):
            ref = next((t for t in tensors if t.is_floating_point()), None)
            if ref is not None:
                return ref
    return None


def floating_like(*modules: nn.Module) -> dict:
    """``{"device": ..., "dtype": ...}`` of :func:`_dtype_reference` of ``modules``; ``{}`` (torch's defaults)
    when none holds a floating tensor."""
    ref = _dtype_reference(*modules)
    return {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}


def declared_shape(net: nn.Module, attribute: str, what: str) -> tuple[int, ...] | None:
    """The shape a network declares in ``attribute`` (``in_shape``), as a tuple: an int is a 1-tuple, as the
    package's own networks take it (:mod:`hybridpgm.generative.gan`); ``None`` when it declares none.

    :raises ModelSpecError: a value that is not a positive integer or a non-empty sequence of them."""
    from hybridpgm.generative.gan import _shape  # the package's networks' rule for an event shape

    value = getattr(net, attribute, None)
    return None if value is None else _shape(value, f"{what}'s {attribute}")


def _dry_run(generator: nn.Module, discriminator: nn.Module, noise_dim: int) -> tuple[int, ...]:
    """Run both networks on two noise vectors; returns the generator's output shape.

    :raises ModelSpecError: the generator cannot take the noise or does not return one tensor, its output shape is
        not the discriminator's ``in_shape``, or the discriminator refuses it (:func:`dry_run_discriminator`)."""
    kwargs = floating_like(generator, discriminator)  # the noise's, as AdversarialObjective.noise draws it
    with keeping_modes(generator, discriminator), torch.no_grad():  # each sub-module's own mode after
        generator.eval(), discriminator.eval()
        try:
            x = generator(torch.zeros(2, noise_dim, **kwargs))
        except (RuntimeError, ValueError) as e:
            raise ModelSpecError(f"the generator cannot take noise of shape (batch, {noise_dim}): {e}") from e
        shape = tuple(check_output(x, "the generator").shape[1:])
        in_shape = declared_shape(discriminator, "in_shape", "the discriminator")
        if in_shape is not None and in_shape != shape:
            raise ModelSpecError(f"generator output shape {shape} does not match the discriminator's "
                                 f"input shape {in_shape}")
        dry_run_discriminator(discriminator, x, "the generator's output")
    return shape


def dry_run_discriminator(discriminator: nn.Module, x: torch.Tensor, source: str) -> None:
    """Run ``discriminator`` on the ``2 x event_shape`` batch ``x`` (in eval mode, each sub-module's own mode
    put back after, without gradients) and check that it gives one logit per example.

    :param source: what ``x`` stands for, as the message names it (``"the generator's output"``).
    :raises ModelSpecError: the discriminator fails on ``x`` (naming its shape and dtype) or does not return
        two logits (naming what it returned: a tensor's shape; a tuple's, list's or dict's items, by
        :func:`_described_output`)."""
    shape = tuple(x.shape[1:])
    with keeping_modes(discriminator), torch.no_grad():
        discriminator.eval()
        try:
            logits = discriminator(x)
        except (RuntimeError, ValueError) as e:
            raise ModelSpecError(f"the discriminator cannot take {source} of shape {shape} and dtype {x.dtype}: "
                                 f"{e}") from e
    if isinstance(logits, torch.Tensor) and logits.numel() != 2:
        raise ModelSpecError(f"the discriminator must return one logit per example (shape (batch,) or "
                             f"(batch, 1)), got {tuple(logits.shape)} for a batch of 2")
    if not isinstance(logits, torch.Tensor):
        pick = ""
        if isinstance(logits, (tuple, list, dict)) and len(logits):
            first = f"out[{next(iter(logits))!r}]" if isinstance(logits, dict) else "out[0]"
            pick = f" (wrap the network in a module whose forward returns the logits alone, e.g. {first})"
        raise ModelSpecError(f"the discriminator must return one tensor of logits, one per example (shape (batch,) "
                             f"or (batch, 1): (2,) or (2, 1) for {source} of shape {(2, *shape)}), got "
                             f"{_described_output(logits)}{pick}")


def _described_output(out) -> str:
    """What a network returned, short, for a message: ``"a tuple of 2 (Tensor (2,), Tensor (2, 3))"``, ``"a dict
    of 2 ('logits': Tensor (2,), 'features': Tensor (2, 3))"`` (the first four items), ``"a float"``, ``"None"``."""
    if not isinstance(out, (tuple, list, dict)):
        return described_value(out)
    items = list(out.items()) if isinstance(out, dict) else [(None, v) for v in out]

    def item(v) -> str:
        return f"Tensor {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type_name(v)

    shown = [("" if k is None else f"{k!r}: ") + item(v) for k, v in items[:4]]
    return f"a {type(out).__name__} of {len(items)} ({', '.join(shown + ['...'] * (len(items) > 4))})"
