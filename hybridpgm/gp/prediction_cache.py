"""GPyTorch's prediction strategy of a :class:`~hybridpgm.gp.DeepKernelGP`, kept between calls while nothing it
depends on changed.

Conditioning an exact GP on ``n`` training points builds a prediction strategy: the training solve
:math:`(K + \\sigma^2 I)^{-1}(y - m)` (the mean cache, ``O(n)`` conjugate-gradient iterations or an ``O(n^3)``
Cholesky factor) and, under ``gpytorch.settings.fast_pred_var``, the LOVE variance cache.  Predicting ``b`` new
points from it costs ``O(b)`` under KISS-GP.  :meth:`DeepKernelGP.predict <hybridpgm.gp.DeepKernelGP.predict>`
and :meth:`~hybridpgm.gp.DeepKernelGP.posterior` without gradients keep that strategy (:class:`PredictionCache`)
and use it again while the :func:`state_key` of the call is the one it was built under; otherwise they condition
anew.  The key holds everything the strategy depends on:

* every parameter and buffer of the model (the training data ``train_x``/``train_y`` among its buffers, the feature
  extractor's weights and batch-norm statistics, the kernel, mean and likelihood hyperparameters, the grid scaling):
  the *object* (held by a weak reference, so a freed tensor whose id is reused does not match), its version counter
  (bumped by every in-place write through torch: ``y.sub_(...)``, an optimizer step, ``load_state_dict``), its
  storage pointer (the key holding the storage: :func:`~hybridpgm.tensor_tracking.held_storages`), shape, strides,
  offset, dtype and device, and its *values*, compared with a copy taken when the strategy was kept.  The values
  are compared, not only the version counter: GPyTorch's own setters (``likelihood.noise = 0.5``,
  ``kernel.lengthscale = 0.3``, ``module.initialize(...)``) and any write through ``tensor.data`` change a tensor
  without moving its version counter.  That copy doubles the memory of the model's
  tensors while a strategy is kept, and the comparison is one pass over them per call (``O(n d)`` for the training
  data, against the ``O(n)`` solves it saves);
* each sub-module's class and ``training`` flag, its forward hooks and forward pre-hooks (their handles' ids,
  which torch never reuses), and torch's global forward hooks (``register_module_forward_hook``): a hook changes
  what the module computes;
* every GPyTorch and ``linear_operator`` setting (:func:`settings_snapshot`: ``fast_pred_var``,
  ``skip_posterior_variances``, ``max_cholesky_size``, the CG tolerances, ...), autocast, inference mode, the
  default dtype and the float32 matmul precision;
* where GPyTorch's random probes come from (``predict``'s generator seeded with 0, or the caller's streams).

What the key cannot see is not tracked: a plain attribute of a module that changes its output (a batch norm's
``eps``), a hook whose output changes while it stays registered, an extractor that is random in eval mode.  After
such a change :meth:`DeepKernelGP.condition <hybridpgm.gp.DeepKernelGP.condition>` drops the kept strategy (as do
``set_train_data``, ``train()``, ``load_state_dict`` and moves with ``to``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import gpytorch
import linear_operator
import torch
from gpytorch.utils.memoize import clear_cache_hook
from torch.nn.modules import module as module_hooks

from hybridpgm.tensor_tracking import held_storages

__all__ = ["PredictionCache", "StateKey", "clear_gpytorch_caches", "release_test_caches", "settings_snapshot",
           "state_key"]

_SETTING_ATTRIBUTES = ("_state", "_global_value", "_global_float_value", "_global_double_value",
                       "_global_half_value")
_setting_classes: list[type] | None = None


def _settings() -> list[type]:
    """The setting classes of :mod:`gpytorch.settings` and :mod:`linear_operator.settings` (found once)."""
    global _setting_classes
    if _setting_classes is None:
        found: dict[int, type] = {}
        for module in (gpytorch.settings, linear_operator.settings):
            for name in sorted(vars(module)):
                obj = getattr(module, name)
                if isinstance(obj, type) and any(hasattr(obj, a) for a in _SETTING_ATTRIBUTES):
                    found.setdefault(id(obj), obj)
        _setting_classes = list(found.values())
    return _setting_classes


def settings_snapshot() -> tuple:
    """The value of every GPyTorch and ``linear_operator`` setting in force (their context managers set class
    attributes), with torch's autocast, inference mode, default dtype and float32 matmul precision."""
    values = tuple(tuple(getattr(cls, a, None) for a in _SETTING_ATTRIBUTES) for cls in _settings())
    autocast = tuple((device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
                     for device in ("cpu", "cuda"))
    return (values, autocast, torch.is_inference_mode_enabled(), torch.get_default_dtype(),
            torch.get_float32_matmul_precision())


def _tensor_meta(t: torch.Tensor) -> tuple:
    strided = t.layout == torch.strided
    return (t._version, t.data_ptr() if strided and not t.is_meta else None, tuple(t.shape),
            t.stride() if strided else None, t.storage_offset() if strided else None, t.dtype, t.device)


@dataclass(eq=False)
class StateKey:
    """What a prediction strategy was built from (see the module's docstring); :meth:`matches` compares it with
    the state now.

    The key holds the tensors' storages when it was taken (:attr:`storages`): while it lives no other data can be
    allocated at the storage pointers of its :attr:`meta`, so a tensor whose data was replaced (``p.data = new``,
    which moves no version counter) cannot match it again by landing where the old data was -- a key compared by
    :meth:`same_tensors` alone (:class:`~hybridpgm.gp.kept_features.KeptFeatures`) would take it for the same
    state."""

    names: tuple[str, ...]
    refs: tuple[weakref.ref, ...]
    meta: tuple
    #: the tensors' values when the key was taken (``None`` in a key taken only to be compared, :meth:`matches`)
    values: tuple[torch.Tensor, ...] | None = None
    #: the tensors' storages when the key was taken (:func:`~hybridpgm.tensor_tracking.held_storages`)
    storages: tuple = ()

    def __post_init__(self) -> None:
        if not self.storages:
            self.storages = held_storages(ref() for ref in self.refs)

    def same_tensors(self, other: StateKey) -> bool:
        """The same tensor objects, each with the same version counter, storage and layout, and the same modes
        and settings (the values are not compared)."""
        if self.names != other.names or self.meta != other.meta:
            return False
        return all(mine() is not None and mine() is theirs() for mine, theirs in zip(self.refs, other.refs))

    def matches(self, other: StateKey) -> bool:
        """:meth:`same_tensors`, and each tensor holds the values this key copied (NaN equal to NaN): a write
        that moves no version counter (GPyTorch's setters, ``tensor.data``) is seen too."""
        if self.values is None or not self.same_tensors(other):
            return False
        pairs = [(then, ref().detach()) for then, ref in zip(self.values, other.refs)]
        try:
            if all(now.device.type == "cpu" and now.layout == torch.strided for _, now in pairs):
                # torch.equal reads no temporaries; only a tensor holding NaN takes the second comparison
                return all(torch.equal(then, now) or bool(_same_values(then, now)) for then, now in pairs)
            # one host read for all the tensors (a sync per tensor on CUDA otherwise)
            same = [_same_values(then, now) for then, now in pairs]
            return not same or bool(torch.stack([s.to(same[0].device) for s in same]).all())
        except (NotImplementedError, RuntimeError):  # no such comparison for this layout: condition anew
            return False


def _same_values(then: torch.Tensor, now: torch.Tensor) -> torch.Tensor:
    """A 0-d bool tensor (no host read): whether ``now`` holds ``then``'s values, NaN where NaN (a sparse tensor
    compared densely)."""
    if then.layout != torch.strided:
        then, now = then.to_dense(), now.to_dense()
    equal = then == now
    if then.is_floating_point() or then.is_complex():
        equal = equal | (then.isnan() & now.isnan())
    return equal.all()


def state_key(model: torch.nn.Module, extra: Any = None, values: bool = False) -> StateKey:
    """The key of ``model``'s state now: its parameters and buffers, its modules' classes, modes and forward hooks
    (a hook registered on the feature extractor changes the features), torch's global forward hooks, the settings, and
    ``extra`` (anything else the strategy depends on, compared with ``==``); with ``values``, a copy of every
    tensor's values (the key a strategy is kept under)."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    names = tuple(name for name, _ in tensors)
    refs = tuple(weakref.ref(t) for _, t in tensors)
    # a module's class, mode and forward hooks (handle ids, never reused), and torch's global forward hooks
    modules = tuple((type(m), m.training, tuple(m._forward_hooks), tuple(m._forward_pre_hooks))
                    for m in model.modules())
    hooks = (tuple(module_hooks._global_forward_hooks), tuple(module_hooks._global_forward_pre_hooks))
    meta = (tuple(_tensor_meta(t) for _, t in tensors), modules, hooks, settings_snapshot(), extra)
    copies = tuple(t.detach().clone() for _, t in tensors) if values else None
    return StateKey(names, refs, meta, copies)


@dataclass(eq=False)
class PredictionCache:
    """A prediction strategy of an exact GP and the training data it conditions on, built under ``key``."""

    key: StateKey
    inputs: torch.Tensor
    targets: torch.Tensor
    strategy: Any

    @classmethod
    def of(cls, gp: gpytorch.models.ExactGP, key: StateKey) -> PredictionCache | None:
        """``gp``'s strategy and data now (``None`` if it has no strategy)."""
        if gp.prediction_strategy is None or gp.train_inputs is None:
            return None
        return cls(key, gp.train_inputs[0], gp.train_targets, gp.prediction_strategy)

    def under(self, key: StateKey) -> PredictionCache:
        """The same strategy and data, kept under ``key``."""
        return PredictionCache(key, self.inputs, self.targets, self.strategy)

    def install(self, gp: gpytorch.models.ExactGP) -> None:
        """Give ``gp`` back the data and the strategy: what conditioning it anew would give, without the solves."""
        gp.set_train_data(self.inputs, self.targets, strict=False)
        gp.prediction_strategy = self.strategy


def clear_gpytorch_caches(*parts: torch.nn.Module) -> None:
    """Drop the memos GPyTorch keeps on the :class:`gpytorch.Module` s in ``parts`` and below (a grid kernel's
    covariance matrix in eval mode, a variational strategy's :math:`p(u)`, :math:`q(u)` and Cholesky factor), which
    it drops only on a mode change: a query after a parameter changed in eval mode answers from the current values
    and not from a previous call's (nor through its already back-propagated graph).

    :param parts: the modules to walk."""
    for part in parts:
        for module in part.modules():
            if isinstance(module, gpytorch.Module):
                module._clear_cache()


def release_test_caches(gp: gpytorch.models.ExactGP) -> None:
    """Empty the memo cache of ``gp``'s prediction strategy (if any).  Under ``detach_test_caches(False)`` GPyTorch
    hooks ``partial(clear_cache_hook, strategy)`` on the ``grad_fn`` of the cached ``O(n^2)`` training-covariance
    factors: *strategy -> cache -> grad_fn -> hook -> strategy*, a cycle through a C++ autograd node that :mod:`gc`
    cannot collect, one per call kept for good.  Returned distributions keep their own tensors and graph."""
    strategy = getattr(gp, "prediction_strategy", None)
    if strategy is not None:
        clear_cache_hook(strategy)
