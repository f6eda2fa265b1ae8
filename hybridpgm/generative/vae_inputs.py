"""The :class:`~hybridpgm.generative.vae.VAE`'s input checks: its arguments ``x`` and ``num_data``, the data plate,
and the refusal of a batch of several fields (the per-feature tensors that torch's
:func:`~torch.utils.data.default_collate` makes of a :class:`~torch.utils.data.Dataset` whose ``__getitem__``
returns a list or tuple of numbers, or an ``(x, labels)`` batch).

:class:`VAEInputs` is a base class of :class:`~hybridpgm.generative.vae.VAE` (a mixin reading its networks and
options); :meth:`VAE.model <hybridpgm.generative.vae.VAE.model>`, :meth:`~hybridpgm.generative.vae.VAE.guide`,
:meth:`~hybridpgm.generative.vae.VAE.direct_elbo_loss` and the evaluation methods call it.
"""

from __future__ import annotations

import itertools
import reprlib
from typing import Any

import pyro
import torch

from hybridpgm.batch_shapes import as_given, refuse_one_example
from hybridpgm.checks import check_device
from hybridpgm.data.validation import (check_finite, check_model_input, check_no_extra_arguments, check_num_data,
                                       defer_finite, describe_origin)
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.plate_dims import refuse_caller_plate
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["VAEInputs"]

#: the methods that take one example ``[D]`` (and any batch shape ``[..., D]``), named by the training programs'
#: refusal of one example
_EVALUATION = "log_likelihood, elbo, log_weights and reconstruct"


def _per_feature(x: Any, num_data: Any, extra: tuple, x_dim: int) -> int:
    """How many per-feature tensors the positional arguments ``(x, num_data, *extra)`` are, or 0: ``x_dim``
    1-d tensors of one length, as :func:`~torch.utils.data.default_collate` makes of examples that are lists or
    tuples of ``x_dim`` numbers (``x`` alone of shape ``(1,)`` for ``x_dim = 1`` is one example, not this)."""
    fields = [x, *([] if num_data is None else [num_data]), *extra]
    if len(fields) != x_dim or not all(isinstance(t, torch.Tensor) and t.dim() == 1 for t in fields):
        return 0
    if len({t.shape[0] for t in fields}) != 1 or (x_dim == 1 and x.shape[0] == 1):
        return 0
    return len(fields)


def _values(num_data: Any) -> bool:
    """Whether ``num_data`` is a batch of values (a tensor or NumPy array with a dimension: the labels of an
    ``(x, labels)`` batch in ``num_data``'s place) rather than a data size, valid or not (a number, ``None``, a
    0-d tensor: :func:`~hybridpgm.data.validation.check_num_data` judges it)."""
    return (isinstance(num_data, torch.Tensor) or type(num_data).__module__ == "numpy") and \
        len(getattr(num_data, "shape", ())) > 0


class VAEInputs:
    """The input checks of a :class:`~hybridpgm.generative.vae.VAE` (a mixin; see the module docstring)."""

    def _arguments(self, x: Any, num_data: Any, extra: tuple, method: str) -> None:
        """Refuse positional arguments that are a batch of several fields rather than ``x`` (and ``num_data``).

        ``fit`` and :class:`~pyro.infer.SVI` unpack a batch that is a list or tuple into the programs' positional
        arguments.  A :class:`~torch.utils.data.Dataset` whose ``__getitem__`` returns a list or tuple of ``D``
        numbers is collated (by ``fit`` as by a :class:`~torch.utils.data.DataLoader`) into ``D`` tensors of
        shape ``[batch]``, one per feature; an ``(x, labels)`` batch puts the labels in ``num_data``.

        :param method: ``"model"``, ``"guide"`` or ``"direct_elbo_loss"``, for the message.
        :raises DataError: ``D`` one-dimensional tensors of one length (the message names the per-feature
            batch and its fix: ``__getitem__`` returning one tensor of shape ``(D,)``), positional arguments
            after ``num_data``, or a ``num_data`` that is a tensor with elements
            (:func:`~hybridpgm.data.validation.check_num_data`)."""
        count = _per_feature(x, num_data, extra, self.x_dim)
        if count:
            raise DataError(
                f"VAE.{method} got {count} tensor(s) of shape {tuple(x.shape)} as its positional arguments"
                f"{describe_origin()}, one per feature: the batch of a Dataset whose __getitem__ returns a list or "
                "tuple of numbers, which torch's default_collate (as fit and a DataLoader collate) turns into one "
                "tensor per number; return one tensor per example from __getitem__ (torch.tensor(values, "
                f"dtype=torch.float32), of shape ({self.x_dim},)) or give fit the data as one tensor "
                f"(batch, {self.x_dim})")
        if extra and not _values(num_data):  # a num_data (valid or not), then more: named after num_data
            check_no_extra_arguments(extra, model="VAE", method=method, keywords="prefix=...",
                                     takes="x, num_data", after=f"num_data={reprlib.repr(num_data)}")
        if extra:  # the labels of an (x, labels) batch in num_data's place
            check_no_extra_arguments((num_data, *extra), model="VAE", method=method,
                                     keywords="num_data=..., prefix=...")

    def _reference(self, role: str) -> torch.Tensor:
        """The tensor whose dtype and device the VAE computes in: the first floating-point parameter of the
        ``role`` network (``"encoder"`` or ``"decoder"``, whatever module replaced it: a custom
        :class:`torch.nn.Module`, a ``Sequential`` starting with ``Dropout``), else the first of the VAE's
        (a parameter-free network).  Read past :class:`~pyro.nn.PyroModule` (``_modules``), so no
        ``pyro.module`` is announced.

        :raises ModelSpecError: the VAE has no floating-point parameter at all."""
        own = torch.nn.Module.parameters(self)
        like = next((p for p in itertools.chain(self._modules[role].parameters(), own) if p.is_floating_point()),
                    None)
        if like is None:
            raise ModelSpecError(f"VAE: the {role} ({type(self._modules[role]).__name__}) and the rest of the VAE "
                                 "have no floating-point parameter to take the dtype and device from")
        return like

    def _check(self, x: torch.Tensor, values: bool = True, leading_dims: bool = False) -> torch.Tensor:
        """``x`` checked (shape, NaN/inf) and in the model's dtype, converted by the rule of
        :func:`hybridpgm.data.validation.as_model_dtype` (bool and exactly representable integers are converted;
        float64 data for a float32 model are refused).  The value check (binary, or finite; finite only with
        ``values=False``, as the guide asks) waits for the training step's one host read inside
        :func:`hybridpgm.fit` (:func:`~hybridpgm.train.deferred_checks.check_or_defer`).  ``leading_dims``
        accepts ``[..., batch, D]`` (the guide, given dreamed particles) besides ``batch x D``; one example ``[D]``
        is refused, saying that the batch dimension is missing (the evaluation methods flatten any batch shape
        into rows before they get here: :func:`~hybridpgm.batch_shapes.over_batch_shape`)."""
        weight = self._reference("encoder")
        refuse_one_example(x, self.x_dim, "VAE argument 'x'", _EVALUATION)
        if isinstance(x, torch.Tensor):
            check_device(x, weight, f"VAE argument 'x'{describe_origin()}")
        x = check_model_input(x, features=self.x_dim, dtype=weight.dtype, model="VAE", finite=False,
                              leading_dims=leading_dims)
        origin = describe_origin()
        if not x.numel():
            return x
        shown = as_given(x)  # the caller's shape, for the messages (a view: the checks read the same data)
        if self.likelihood == "bernoulli" and values:  # a binary check implies a finite one

            def not_binary() -> Exception:
                check_finite(shown, f"VAE argument 'x'{origin}")  # NaN/inf named as such
                return DataError(f"VAE with a Bernoulli likelihood needs binary data (0/1){origin}; binarize it "
                                 "(hybridpgm.data binarize='static'|'dynamic') or use likelihood='gaussian'")

            # x - x^2 vanishes exactly at 0 and 1 (in floating point too: a value beside 0 or 1 leaves a
            # representable difference) and is NaN at NaN/inf; one fused pass, then |.| in place and the max
            check_or_defer(torch.addcmul(x, x, x, value=-1).abs_().amax() == 0, not_binary, "VAE data 'x' is not 0/1")
        else:
            defer_finite(shown, f"VAE argument 'x'{origin}")
        return x

    def _plate(self, x: torch.Tensor, num_data: int | None, prefix: str = "", what: str = "VAE.model"):
        """The data plate ``prefix + "data"`` at dim ``-1``, scaled by ``num_data / batch`` where given.

        :raises ModelSpecError: inside a caller's plate at dim ``-1`` (see :mod:`hybridpgm.plate_dims`)."""
        batch = x.shape[-2]
        if not x.numel():
            raise DataError(f"VAE argument 'x'{describe_origin()} is an empty batch (shape {tuple(x.shape)}): a "
                            "Pyro plate needs at least one row")
        refuse_caller_plate(what, prefix + "data")
        if num_data is None:
            return pyro.plate(prefix + "data", batch, dim=-1)
        num_data = check_num_data(num_data, batch, model="VAE")
        return pyro.plate(prefix + "data", num_data, subsample=torch.arange(batch, device=x.device), dim=-1)
