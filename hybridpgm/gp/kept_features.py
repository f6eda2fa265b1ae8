"""Training features computed once for both players of a semi-stochastic step.

Each step of :class:`~hybridpgm.gp.SemiStochasticObjective` needs the features :math:`H = g_w(X)` of all
``N`` training inputs twice, without gradients: the ``"gp"`` player's full-data loss, and the ``"network"``
player's :math:`G = \\partial \\ell / \\partial H` after the hyperparameters' update.  Between the two only the
GP's hyperparameters move, so the second pass (``O(N T)`` LSTM cells for windows of length ``T``) would give the
first one's features again -- when the feature extractor is a *deterministic* function of its weights and input
that changes nothing when it runs.  :func:`deterministic` decides that conservatively, module by module:

* always: containers, linear, convolution and embedding layers, layer/group norms, the activations other than
  :class:`~torch.nn.RReLU`, and the types a caller names (:class:`~hybridpgm.gp.LSTMFeatures`);
* recurrent layers (:class:`~torch.nn.LSTM`, :class:`~torch.nn.GRU`, :class:`~torch.nn.RNN`) in eval mode or
  without dropout between layers;
* dropout and batch norms only in eval mode: in train mode a dropout draws a new mask (from, and advancing, the
  global stream) and a batch norm updates its running statistics on every call, so two passes differ, or leave
  another state, by design;
* anything else (a module type it does not know, e.g. one that samples its weights) is taken to be random.

:class:`KeptFeatures` holds the features with the state they were computed in (:func:`~hybridpgm.gp.prediction_cache
.state_key` of the extractor: every parameter and buffer by weak reference, version counter, storage and layout,
the modules' modes, autocast and the default dtype; and the training inputs by weak reference and
:func:`~hybridpgm.tensor_tracking.value_key`, their storage held); they are used again only while that state is
unchanged.  An optimizer step, ``load_state_dict``, an in-place edit, ``train()``/``eval()``,
:meth:`~hybridpgm.gp.DeepKernelGP.set_train_data` or ``model.train_x.data = other`` all change it.  Writes that
move no version counter nor data pointer (a *fused* optimizer's step, an in-place write through ``tensor.data``)
are not seen: so the objective reuses features only within a step -- the ``"gp"`` player computes them, the
``"network"`` player after it reads them -- and its ``train_step_end`` (run by :func:`hybridpgm.fit` after every
step) drops them.

:class:`KeptGradient` holds the ``"network"`` player's full-data loss and :math:`G` with what they were computed
under, so that the micro-batches of one update share them and an update at other weights computes them anew: inside
:func:`hybridpgm.fit` the update (:func:`~hybridpgm.train.update_scope.current_update`: a token per optimizer update
of a player, and a fresh one for each further evaluation of an L-BFGS closure), outside it the model's weights
(:func:`weights_key`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn

from hybridpgm.gp.prediction_cache import StateKey, _tensor_meta, settings_snapshot, state_key
from hybridpgm.tensor_tracking import HeldStorages, held_storages, value_key
from hybridpgm.train.update_scope import current_update

__all__ = ["KeptFeatures", "KeptGradient", "deterministic", "weights_key"]

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish,
                nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus, nn.Softsign,
                nn.Tanhshrink, nn.LogSigmoid, nn.Softmax, nn.LogSoftmax)
#: deterministic and without side effects in either mode
_ALWAYS = frozenset((nn.Identity, nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.Linear, nn.Bilinear, nn.Flatten,
                     nn.Unflatten, nn.LayerNorm, nn.GroupNorm, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                     *_ACTIVATIONS))
#: deterministic and without side effects in eval mode only
_EVAL_ONLY = frozenset((nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                        nn.FeatureAlphaDropout, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))
_RECURRENT = frozenset((nn.LSTM, nn.GRU, nn.RNN))


def deterministic(module: nn.Module, known: tuple[type, ...] = ()) -> bool:
    """Whether running ``module`` (in the modes its sub-modules are in now) twice on the same input gives the
    same output and leaves the same state (see the module's docstring).  ``known``: further module types whose
    *own* computation is deterministic (their sub-modules are checked too).  Types are matched exactly: a
    subclass may override ``forward``.  A forward hook (a module's own, or torch's global ones) may do anything
    when the module runs (``nn.utils.spectral_norm`` advances its power iteration in a pre-hook): a module that
    has one is taken to be random."""
    from torch.nn.modules import module as module_hooks

    if module_hooks._global_forward_hooks or module_hooks._global_forward_pre_hooks:
        return False
    for sub in module.modules():
        if sub._forward_hooks or sub._forward_pre_hooks:
            return False
        kind = type(sub)
        if kind in _ALWAYS or kind in known:
            continue
        if kind in _EVAL_ONLY and not sub.training:
            continue
        if kind in _RECURRENT and (not sub.training or sub.dropout == 0 or sub.num_layers == 1):
            continue
        return False
    return True


@dataclass(eq=False)
class KeptFeatures:
    """Features ``h`` of the inputs ``x`` by ``extractor``, with the state they were computed in.

    The inputs and the features are keyed on :func:`~hybridpgm.tensor_tracking.value_key` (version counter, data
    pointer, shape, strides, dtype), the entry holding their storages
    (:func:`~hybridpgm.tensor_tracking.held_storages`): ``model.train_x.data = other`` (or ``kept.features.data =
    other``) moves no version counter but the data pointer, and the held storage keeps another tensor from being
    allocated at the old address."""

    key: StateKey
    inputs: weakref.ref
    values: tuple[tuple, tuple]  # value_key of the inputs and of the features (in-place writes, ``.data =``)
    features: torch.Tensor
    storages: HeldStorages  # of the inputs and the features, whose data pointers ``values`` holds

    @classmethod
    def of(cls, extractor: nn.Module, x: torch.Tensor, h: torch.Tensor) -> KeptFeatures:
        return cls(state_key(extractor), weakref.ref(x), (value_key(x), value_key(h)), h, held_storages((x, h)))

    def valid_for(self, extractor: nn.Module, x: torch.Tensor) -> bool:
        """Whether :attr:`features` are what ``extractor`` gives on ``x`` now: the same tensors in the same state."""
        return (self.inputs() is x and (value_key(x), value_key(self.features)) == self.values
                and self.key.same_tensors(state_key(extractor)))


def weights_key(model: nn.Module, data: tuple[torch.Tensor, ...]) -> StateKey:
    """The key of what a full-data quantity of ``model`` on ``data`` depends on and an optimizer or an edit moves:
    every parameter and every tensor of ``data`` (by weak reference, version counter, storage and layout), the
    modules' modes and the settings (:func:`~hybridpgm.gp.prediction_cache.settings_snapshot`).

    The buffers are left out: a batch norm in train mode moves its running statistics at every pass (a mini-batch's
    too) without changing what a train-mode pass gives, and ``load_state_dict`` writes the parameters as well."""
    tensors = [*model.named_parameters(), *((f"data.{i}", t) for i, t in enumerate(data))]
    return StateKey(tuple(name for name, _ in tensors), tuple(weakref.ref(t) for _, t in tensors),
                    (tuple(_tensor_meta(t) for _, t in tensors), tuple(m.training for m in model.modules()),
                     settings_snapshot()))


@dataclass(eq=False)
class KeptGradient:
    """A full-data ``loss`` and :math:`G = \\partial \\ell / \\partial H` (``N x F``), with the
    :func:`hybridpgm.fit` update they were computed in (``None`` outside ``fit``) and, outside ``fit``, the
    :func:`weights_key` of the model and its training data then."""

    loss: torch.Tensor
    grad: torch.Tensor
    update: object | None  # held (not its id): a live token is never another update's
    key: StateKey | None

    @classmethod
    def of(cls, model: nn.Module, data: tuple[torch.Tensor, ...], loss: torch.Tensor,
           grad: torch.Tensor) -> KeptGradient:
        update = current_update()
        return cls(loss, grad, update, weights_key(model, data) if update is None else None)

    def valid_for(self, model: nn.Module, data: tuple[torch.Tensor, ...]) -> bool:
        """Whether :attr:`loss` and :attr:`grad` are still those at ``model``'s state on ``data``.

        Inside ``fit``: only within the update they were computed in -- its micro-batches run at the same weights
        (the optimizer steps after them), and every other update, an L-BFGS closure's further evaluations
        included, runs at weights moved by any optimizer, a fused one too (whose step moves no version counter).
        Outside ``fit``: while :func:`weights_key` is unchanged; a write that moves no version counter (through
        ``tensor.data``, a fused optimizer's step) is not seen there."""
        update = current_update()
        if update is not self.update:
            return False
        return update is not None or self.key.same_tensors(weights_key(model, data))
