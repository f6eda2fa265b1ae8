r"""The standard deviations :math:`\sigma` of a Gaussian RBM's visible units: a buffer that follows the module's dtype
at the precision it was asked for.

The energy of Gaussian visible units (:mod:`hybridpgm.energy.rbm`) is
:math:`\sum_i (v_i - b_i)^2 / 2\sigma_i^2 - (v/\sigma)^\top W h - c^\top h`, with :math:`\sigma` fixed at
construction (``RBM(V, H, visible="gaussian", sigma=0.3)``; [Hinton 2010], section 13.2).  It is held in the
buffer ``sigma`` (``V`` entries, saved in the state dict), made in torch's default dtype like the parameters.

A buffer converted by ``.double()`` / ``.to(torch.float64)`` keeps the value it held: built in float32, ``0.3``
would be ``0.30000001192092896`` in the float64 model, whose :math:`\log Z`, free energies, conditionals
:math:`\mathcal N(b + \sigma W h, \sigma^2)` and likelihoods would then be those of another model (a relative
error of about :math:`4 \cdot 10^{-8}` per use of :math:`\sigma`).  So :class:`GaussianSigma` keeps the number
the constructor was given (a Python float) and, when a conversion changes the buffer's dtype (any
:meth:`torch.nn.Module._apply`: ``.double()``, ``.half()``, ``.to(dtype)``, ``.to(device, dtype)``), refills the
converted buffer with that number rounded once, to the new dtype, **if and only if the buffer still held that
number rounded to its old dtype** (every entry).  A ``sigma`` loaded by ``load_state_dict`` /
:func:`hybridpgm.load` or edited by the user to another value is converted as torch converts any buffer, never
overwritten, and so is it at every later conversion (the first conversion that finds another value forgets the
number asked: ``0.3 + 1e-12`` set in float64, then ``.float().double()``, stays the float32 rounding widened,
as for any buffer).  A value equal to the constructor's at the buffer's precision is that value, whatever wrote it
(a float32 file of a model built with the same ``sigma``).  A buffer that did not change dtype (``.to(device)``,
``.float()`` of a float32 model) is left to torch.

A state dict is read at its own precision, so that loading and converting commute: a ``sigma`` of the state dict
that is the constructor's number rounded to the state dict's dtype (a float32 file of ``sigma=0.3``) loads as that
number at the buffer's precision (``0.3`` in a float64 model: ``.double()`` then ``load_state_dict`` gives what
``load_state_dict`` then ``.double()`` gives); any other value is copied as torch copies it, and the number asked is
forgotten (a float64 file holding ``0.30000001192092896`` keeps it in a float32 model then ``.double()``, as in a
float64 model).

>>> import torch
>>> from hybridpgm.energy import RBM
>>> RBM(3, 2, visible="gaussian", sigma=0.3).double().sigma[0].item()
0.3
>>> RBM(3, 2, visible="gaussian", sigma=0.3).sigma.dtype  # float32 users: the same buffer as before
torch.float32
>>> float32_file = RBM(3, 2, visible="gaussian", sigma=0.3).state_dict()
>>> rbm = RBM(3, 2, visible="gaussian", sigma=0.3).double()
>>> rbm.load_state_dict(float32_file)
<All keys matched successfully>
>>> rbm.sigma[0].item()
0.3

References: G. E. Hinton, "A practical guide to training restricted Boltzmann machines", UTML TR 2010-003, 2010.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["GaussianSigma"]


class GaussianSigma:
    """The ``sigma`` buffer of an RBM (a mixin of :class:`~hybridpgm.energy.rbm.RBM` before
    :class:`torch.nn.Module`; see the module docstring)."""

    def _register_sigma(self, num_visible: int, sigma: float) -> None:
        """Register the buffer ``sigma``: ``num_visible`` entries of the (checked) ``sigma``, in torch's default
        dtype, and keep ``sigma`` as the Python float a change of dtype refills it from.

        :param int num_visible: ``V``.
        :param float sigma: the standard deviation asked for, already checked finite and positive."""
        self._sigma_asked = float(sigma)
        self.register_buffer("sigma", torch.full((num_visible,), self._sigma_asked))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True):
        """:meth:`torch.nn.Module._apply`, then, where it changed the dtype of a ``sigma`` buffer that held the
        constructor's value at its old precision, that value at the new precision (see the module docstring)."""
        old = self._buffers.get("sigma")
        result = super()._apply(fn, recurse)
        new = self._buffers.get("sigma")
        asked = getattr(self, "_sigma_asked", None)  # None: given up, or unpickled from a release without it
        if (asked is None or not isinstance(old, torch.Tensor) or not isinstance(new, torch.Tensor)
                or new.dtype == old.dtype or not (new.is_floating_point() and old.is_floating_point())
                or old.is_meta):
            return result
        if torch.equal(old, torch.full_like(old, asked)):
            self._buffers["sigma"] = torch.full_like(new, asked)
        else:  # loaded or edited: from now on an ordinary buffer (a later float32 rounding must not pass for it)
            self._sigma_asked = None
        return result

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """:meth:`torch.nn.Module._load_from_state_dict`, reading the state dict's ``sigma`` at its own precision:
        the constructor's number rounded to the state dict's dtype loads as that number at the buffer's dtype, any
        other value as torch loads it, forgetting the number (see the module docstring)."""
        incoming = state_dict.get(prefix + "sigma")
        errors = len(error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        asked, buffer = getattr(self, "_sigma_asked", None), self._buffers.get("sigma")
        if asked is None or not torch.is_tensor(incoming) or not torch.is_tensor(buffer) or len(error_msgs) > errors:
            return
        if not (incoming.is_floating_point() and buffer.is_floating_point()) or incoming.is_meta or buffer.is_meta:
            self._sigma_asked = None
        elif not torch.equal(incoming, torch.full_like(incoming, asked)):
            self._sigma_asked = None  # another value (or the number's rounding at another precision): the file's
        elif buffer.dtype != incoming.dtype:  # the number asked, at the file's precision: at the buffer's
            with torch.no_grad():
                buffer.fill_(asked)
