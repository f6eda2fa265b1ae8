"""Data on the ``meta`` device: one refusal, by name, before anything reads a value.

A tensor on the meta device has a shape and a dtype but no values (``torch.set_default_device('meta')`` or a
``torch.device('meta')`` block puts there every tensor made without a device).  Data there reached torch's raw
errors from deep inside a call (``Tensor.item() cannot be called on meta tensors``, ``Cannot copy out of meta
tensor``); the models that compare the data's device with their parameters' (RBM, DBM, SBN, VAE:
:func:`~hybridpgm.checks.check_device`) already said :class:`~hybridpgm.errors.DeviceError`.  :func:`refuse_meta`
says it where no parameter is compared: :func:`hybridpgm.fit`'s data, a :class:`~hybridpgm.graphs.BayesNet`'s
evidence, a :class:`~hybridpgm.graphs.MarkovNet`'s evidence and values, a validating
:class:`~hybridpgm.graphs.LinearChainCRF`'s potentials.
"""

from __future__ import annotations

from typing import Any

import torch

from hybridpgm.errors import DeviceError

__all__ = ["META_ORIGIN", "refuse_meta"]

#: how a tensor gets to the meta device without being asked, and the way back
META_ORIGIN = ("torch.set_default_device('meta') or a torch.device('meta') block puts there a tensor made without a "
               "device; torch.set_default_device(None) restores the CPU")


def refuse_meta(x: Any, what: str, fix: str | None = None) -> None:
    """Raise :class:`~hybridpgm.errors.DeviceError` if ``x`` is a tensor on the meta device (no host read).

    :param what: the data, as the message names it (``"fit data"``, ``"evidence for 'b'"``).
    :param fix: what to do instead (default: make the data on a device that holds values).
    :raises DeviceError: ``x`` is on the meta device, naming ``what``, its shape and the fix."""
    if isinstance(x, torch.Tensor) and x.is_meta:
        raise DeviceError(f"{what} (shape {tuple(x.shape)}) is on device meta, whose tensors hold no values to read; "
                          f"{fix or 'make it on a device that holds data (' + META_ORIGIN + ')'}")
