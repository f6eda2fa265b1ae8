"""The checks of an :class:`~hybridpgm.energy.rbm.RBM`'s parameters and of the states it is given.

:class:`RBMChecks` (a mixin of the RBM) validates what enters the maths: the parameters and the Gaussian units'
``sigma`` buffer (:meth:`~RBMChecks.check_parameters`), visible data and hidden states (shape, device, dtype and
values: :meth:`~RBMChecks.check_visible`, :meth:`~RBMChecks.check_hidden`) and the chain states of contrastive
divergence (:meth:`~RBMChecks._in_dtype`).  Dtypes follow :func:`hybridpgm.data.validation.as_model_dtype`: ``bool``
and integers are converted exactly, a float wider than the model's is refused, nothing is silently rounded.
"""

from __future__ import annotations

import torch

from hybridpgm.autograd_scope import usable_with_grad
from hybridpgm.checks import check_device
from hybridpgm.data.validation import as_model_dtype, check_unit_values
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["RBMChecks"]


class RBMChecks:
    """The checks of an RBM (a mixin of :class:`~hybridpgm.energy.rbm.RBM`; see the module docstring).  Uses the
    RBM's ``weight``, ``sigma``, ``num_visible``, ``num_hidden``, ``gaussian`` and ``probabilities``."""

    def check_parameters(self) -> None:
        """Raise :class:`ModelSpecError` naming the first parameter holding NaN/inf, or a Gaussian RBM's ``sigma``
        buffer holding an entry that is not a finite positive number (loaded by ``load_state_dict``: the
        constructor checks its own)."""
        for name, param in self.named_parameters():
            if not bool(torch.isfinite(param).all()):
                raise ModelSpecError(f"RBM parameter {name!r} (shape {tuple(param.shape)}) has non-finite entries")
        if self.gaussian and not bool(((self.sigma > 0) & torch.isfinite(self.sigma)).all()):
            raise ModelSpecError(f"RBM buffer 'sigma' (the Gaussian units' standard deviations) must hold finite "
                                 f"positive numbers, got {self.sigma.tolist()[:8]}")

    def check_visible(self, v: torch.Tensor, name: str = "v") -> torch.Tensor:
        """Validate visible data ``batch x V``; returns it in the model's dtype, converted
        by the rule of :func:`hybridpgm.data.validation.as_model_dtype` (bool and
        integers exactly; float64 data for a float32 model are refused).

        :param v: ``batch x V`` visible data.
        :param str name: what the error messages call ``v`` (default ``"v"``).
        :raises DataError: wrong last dimension, NaN/inf, or non-binary values for
            Bernoulli units (values outside ``[0, 1]`` when ``probabilities=True``);
            inside :func:`hybridpgm.fit`'s step the value check is raised at the
            step's host read (:mod:`hybridpgm.train.deferred_checks`).
        :raises DeviceError: ``v`` is not on the device of the parameters.
        """
        require_tensor(v, f"RBM visible data {name!r}", arg=name)
        if v.dim() < 1 or v.shape[-1] != self.num_visible:
            raise DataError(f"RBM visible data {name!r} must have shape (..., {self.num_visible}), "
                            f"got {tuple(v.shape)}")
        check_device(v, self.weight, f"RBM visible data {name!r}")
        what = f"RBM visible data {name!r}"
        binary = v.dtype == torch.bool  # exactly 0/1: nothing to read
        v = as_model_dtype(v, self.weight.dtype, what)
        if not binary:
            check_unit_values(v, what, gaussian=self.gaussian, probabilities=self.probabilities, model="RBM")
        return usable_with_grad(v)  # made under inference_mode, queried with grad on: a clone autograd can save

    def check_hidden(self, h: torch.Tensor, name: str = "h") -> torch.Tensor:
        """Validate hidden states ``batch x H`` (values in ``[0, 1]``); returns them in the model's dtype
        (the rule of :func:`hybridpgm.data.validation.as_model_dtype`, as for visible data).

        :param h: ``batch x H`` hidden states.
        :param str name: what the error messages call ``h`` (default ``"h"``).
        :raises DataError: wrong last dimension, dtype, or values outside ``[0, 1]`` (NaN included).
        :raises DeviceError: ``h`` is not on the device of the parameters.
        """
        require_tensor(h, f"RBM hidden states {name!r}", arg=name)
        if h.dim() < 1 or h.shape[-1] != self.num_hidden:
            raise DataError(f"RBM hidden states {name!r} must have shape (..., {self.num_hidden}), "
                            f"got {tuple(h.shape)}")
        check_device(h, self.weight, f"RBM hidden states {name!r}")
        h = as_model_dtype(h, self.weight.dtype, f"RBM hidden states {name!r}")
        if not bool(((h >= 0) & (h <= 1)).all()):
            raise DataError(f"RBM hidden states {name!r} must lie in [0, 1]")
        return usable_with_grad(h)

    def _in_dtype(self, x: torch.Tensor | None, what: str = "RBM chain state") -> torch.Tensor | None:
        """``x`` in the parameters' dtype, for the chain protocol (:meth:`positive_phase`, :meth:`clamped_state`,
        :meth:`contrastive_gap`, ...).  A half-precision ``x`` (what autocast makes) is converted as it is (up,
        exactly for 0/1 states); any other dtype by :func:`~hybridpgm.data.validation.as_model_dtype`, the rule
        of :meth:`check_visible`: ``bool`` and integer states exactly, a wider float refused.

        :raises DataError: for a dtype that rule refuses (``float64`` states for a ``float32`` model, integers
            beyond the dtype's exact range, complex), naming ``what``."""
        if x is None or x.dtype == self.weight.dtype:
            return x
        if x.dtype in (torch.float16, torch.bfloat16):
            return x.to(self.weight.dtype)
        return as_model_dtype(x, self.weight.dtype, what)
