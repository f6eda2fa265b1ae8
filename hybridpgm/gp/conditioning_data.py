"""The data a :class:`~hybridpgm.gp.DeepKernelGP` conditions on: set, read, and lost to the meta device.

The training inputs and targets (``train_x``, ``N x ...``, and ``train_y``, ``N``) are non-persistent buffers:
the model's state is its parameters and the grid scaling, not its data, so they are not in the ``state_dict``.
:class:`ConditioningData` replaces them (:meth:`~ConditioningData.set_train_data`, checked as at construction),
hands them out (:meth:`~ConditioningData.training_data`), and records a move to the meta device, after which
they hold no values (``model.to("meta")``, then ``to_empty``, which ``load_state_dict`` does not repair): from
then until they are set again they are refused, and :func:`hybridpgm.save` refuses the model, whose file would
rebuild it from them.  A model converted to 16 bits after it was built (``model.to(torch.bfloat16)``,
``model.half()``: its data with it) is refused likewise, as the constructor refuses 16-bit data: the GP's
Cholesky factors need float32 or float64 (before, torch's raw "cholesky_cpu not implemented for 'BFloat16'", and
a file ``load`` refused).
"""

from __future__ import annotations

import torch

from hybridpgm.errors import DataError
from hybridpgm.gp.feature_gp import check_gp_dtype, check_inputs, check_targets

__all__ = ["ConditioningData"]


class ConditioningData(torch.nn.Module):
    """Mixin of :class:`~hybridpgm.gp.DeepKernelGP` holding its training data: the buffers ``train_x`` and
    ``train_y``, the flag ``_train_data_lost`` and the ``example_shape`` the inputs are checked against, all set
    by the model's constructor."""

    def training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The data the GP conditions on, ``(train_x, train_y)`` (``N x ...`` and ``N``).

        The data are buffers outside the ``state_dict`` (non-persistent: the model's state is its parameters and
        the grid scaling, not its data).  ``model.to("meta")`` keeps their shapes only, and a later
        ``model.to_empty(device=...)`` gives them storage but no values, which ``load_state_dict`` does not
        bring back: from the move to the meta device until :meth:`set_train_data` the data are refused here, and
        :func:`hybridpgm.save` refuses the model (its file would rebuild it from them).  The state survives
        ``copy.deepcopy``; ``load_state_dict`` does not clear it.  The features :meth:`condition` gave the GP
        are refused likewise (:class:`~hybridpgm.gp.feature_gp.FeatureGP`) until :meth:`condition` runs again.

        :raises DataError: the training data went to the meta device and were not set again since, or to a 16-bit
            float dtype (the model converted after it was built)."""
        if getattr(self, "_train_data_lost", False):
            raise DataError(self._lost_data_reason(""))
        check_gp_dtype(self.train_y.dtype, self._converted_what(), DataError)
        return self.train_x, self.train_y

    def _converted_what(self) -> str:
        """The model's training data, as a 16-bit refusal names them."""
        return (f"{type(self).__name__}'s training data (converted with the model after it was built, which rounded "
                "them: model.float(), then model.set_train_data(x, y) with the float32 data)")

    def _lost_data_reason(self, when: str) -> str:
        """What :meth:`training_data` and :func:`hybridpgm.save` (``when``: ``" before saving it"``) say of
        training data lost to the meta device."""
        return (f"{type(self).__name__}'s training data (train_x, train_y) were moved to the meta device, which "
                f"holds no values, and are not part of the state dict, so to_empty and load_state_dict do not bring "
                f"them back; give them again with model.set_train_data(x, y){when} (they had shapes "
                f"{tuple(self.train_x.shape)} and {tuple(self.train_y.shape)})")

    def _hybridpgm_save_refusal(self) -> str | None:
        """Why :func:`hybridpgm.save` must not write this model, or ``None``: a model file rebuilds the model from
        its training data (constructor arguments), and training data lost to the meta device hold whatever memory
        ``to_empty`` handed out, so the file would load as a model conditioned on garbage."""
        if getattr(self, "_train_data_lost", False):
            return self._lost_data_reason(" before saving it")
        try:
            check_gp_dtype(self.train_y.dtype, self._converted_what(), DataError)
        except DataError as refused:  # load would refuse the file: its data rebuild the model in 16 bits
            return str(refused)
        return None

    def _apply(self, fn, recurse=True):
        """:meth:`torch.nn.Module._apply` (``to``, ``to_empty``, ``float``, ...), recording a move of the training
        data to the meta device: they have no values from then on (see :meth:`training_data`)."""
        super()._apply(fn, recurse)
        self._prediction_cache = None  # built from the tensors before the move
        if self.train_x.is_meta or self.train_y.is_meta:
            self._train_data_lost = True
        return self

    def set_train_data(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Replace the data the GP conditions on (``N x ...`` and ``N``, ``N >= 1``, of the current
        training data's dtype and device).  The kernel is unchanged: under KISS-GP the grid scaling stays
        the one recorded in training, and features of ``x`` outside its range are clamped to it.

        :param torch.Tensor x: the new ``train_x``, ``N x example_shape`` (the example shape of the constructor's
            ``train_x``), finite where floating; kept as given, not copied.
        :param torch.Tensor y: the new ``train_y``, a floating ``[N]`` vector, finite; kept as given.
        :raises DataError: a wrong shape or dtype, no examples, or NaN/inf values.
        :raises DeviceError: ``x`` or ``y`` is not on the model's device.
        """
        check_inputs(x, self.example_shape, "train_x", dtype=self.train_x.dtype, device=self.train_x.device)
        if x.shape[0] == 0:
            raise DataError(f"train_x has shape {tuple(x.shape)}: no training examples (the GP needs at least one)")
        check_targets(y, x.shape[0], "train_y", dtype=self.train_y.dtype, device=self.train_x.device)
        self.train_x, self.train_y = x, y
        self._train_data_lost = False
        self._prediction_cache = None  # the kept prediction strategy conditions on the former data
