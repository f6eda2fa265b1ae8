r"""A Pyro optimizer that keeps *one* torch optimizer for all parameters.

:class:`pyro.optim.PyroOptim` (what ``pyro.optim.Adam(...)`` returns) creates
one torch optimizer per parameter, the first time :class:`pyro.infer.SVI`
hands it that parameter, so that parameters created on the fly get an
optimizer too.  Each step then calls ``step()`` on every one of them, and
:class:`~pyro.infer.SVI` afterwards replaces every gradient by a freshly
allocated zero tensor, into which the next backward pass accumulates.  For a
network with a few large weight matrices on a CPU that costs about a tenth of
a training step (a VAE 784-400-50, batch 128: 1.12-1.24x a hand-written step
against 1.04-1.09x with this class, ``benchmarks/vae_step.py``).

:class:`GroupedOptim` is a :class:`~pyro.optim.PyroOptim` that adds each new
parameter to a single torch optimizer instead, in the parameter group of its
hyperparameters (parameters with equal ``optim_args`` share one group, so the
optimizer's multi-tensor paths apply), and after the step sets the stepped
parameters' gradients to ``None`` -- what ``optimizer.zero_grad()`` does by
default in torch, and what leaves :class:`~pyro.infer.SVI`'s zeroing nothing to
allocate.  The update of every parameter is the one its own torch optimizer
would make: Adam, SGD, ... update each element from its own gradient and
state, so the trajectories equal ``pyro.optim``'s.

Differences from :class:`~pyro.optim.PyroOptim`, by design:

* after :meth:`__call__` the stepped parameters' ``.grad`` is ``None``, not a
  zero tensor;
* ``optim_args`` is a dict, or a callable of the parameter's name (one
  argument); ``clip_args`` and learning-rate schedulers are not supported
  (use :class:`pyro.optim.ClippedAdam` or :class:`pyro.optim.PyroLRScheduler`).

:meth:`get_state` writes, and :meth:`set_state` reads, the per-parameter
format of :meth:`pyro.optim.PyroOptim.get_state` (``{param name: torch
optimizer state dict}``), so a state saved by either class resumes in the
other; the hyperparameters come from the constructor, the moment estimates
and step counts from the state.

>>> import pyro, torch, hybridpgm
>>> vae = hybridpgm.VAE(784, 50)
>>> svi = pyro.infer.SVI(vae.model, vae.guide, hybridpgm.infer.GroupedAdam({"lr": 1e-3}),
...                      loss=hybridpgm.infer.DirectTrace_ELBO())
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

import pyro
import torch
from pyro.optim import PyroOptim

from hybridpgm.errors import ConfigError

__all__ = ["GroupedAdam", "GroupedOptim"]


class GroupedOptim(PyroOptim):
    """One ``optim_constructor`` optimizer over every parameter :class:`~pyro.infer.SVI` steps.

    :param optim_constructor: a :class:`torch.optim.Optimizer` class (``torch.optim.Adam``).
    :param optim_args: its keyword arguments: a dict, or a callable of the
        parameter's name returning one (per-parameter hyperparameters).
    :raises ConfigError: ``optim_constructor`` is not callable, or ``optim_args`` is neither a dict nor
        a callable of one argument.
    """

    def __init__(self, optim_constructor: type[torch.optim.Optimizer], optim_args: dict | Callable[[str], dict]):
        if not callable(optim_constructor):
            raise ConfigError(f"GroupedOptim optim_constructor must be a torch.optim.Optimizer class, "
                              f"got {optim_constructor!r}")
        if not (isinstance(optim_args, dict) or callable(optim_args)):
            raise ConfigError(f"GroupedOptim optim_args must be a dict or a callable of the parameter name, "
                              f"got {type(optim_args).__name__}")
        if callable(optim_args) and not isinstance(optim_args, dict) and \
                len(inspect.signature(optim_args).parameters) != 1:
            raise ConfigError("GroupedOptim optim_args as a callable takes one argument, the parameter name")
        super().__init__(optim_constructor, optim_args)
        self.optimizer: torch.optim.Optimizer | None = None
        self._group_of: dict[torch.Tensor, dict] = {}
        self._last: frozenset | None = None

    # -- the step -------------------------------------------------------------------
    def __call__(self, params: Iterable[torch.Tensor], *args: Any, **kwargs: Any) -> None:
        """One optimizer step of ``params`` (new ones join the optimizer first); their
        gradients are ``None`` afterwards."""
        params = list(params)
        called = frozenset(params)
        if called != self._last:
            self._join(params)
            self._last = called
        hidden = [(p, p.grad) for p in self._group_of if p.grad is not None and p not in called]
        for p, _ in hidden:  # a PyroOptim steps only the parameters it is given
            p.grad = None
        try:
            self.optimizer.step(*args, **kwargs)
        finally:
            for p, grad in hidden:
                p.grad = grad
        for p in params:
            p.grad = None

    def _join(self, params: list[torch.Tensor]) -> None:
        """Parameters the param store replaced leave the optimizer, new ones join it, and every parameter in
        ``params`` whose name has a state waiting (from :meth:`set_state`) takes it."""
        self._drop_replaced()
        store = pyro.get_param_store()
        for p in params:
            if p not in self._group_of:
                self._add(p)
            if self._state_waiting_to_be_consumed:
                saved = self._state_waiting_to_be_consumed.pop(store.param_name(p), None)
                if saved is not None:
                    self._load_param_state(p, saved)

    def _drop_replaced(self) -> None:
        """Forget (group membership and state) every tensor whose name the param store now gives to another
        tensor -- what ``pyro.get_param_store().load(...)`` or ``.set_state(...)`` does to every parameter.
        A tensor the store has no name for (cleared, deleted, outside a ``scope``, or never a Pyro parameter)
        is kept, as :class:`~pyro.optim.PyroOptim` keeps it."""
        store = pyro.get_param_store()
        held = dict(store.named_parameters())
        replaced = [p for p in self._group_of
                    if (name := store.param_name(p)) is not None and held.get(name) is not p]
        for p in replaced:
            group = self._group_of.pop(p)
            group["params"] = [q for q in group["params"] if q is not p]  # by identity: tensor == is elementwise
            self.optimizer.state.pop(p, None)
            if not group["params"]:
                self.optimizer.param_groups = [g for g in self.optimizer.param_groups if g is not group]

    def _args_for(self, p: torch.Tensor) -> dict:
        if isinstance(self.pt_optim_args, dict):
            return dict(self.pt_optim_args)
        args = self.pt_optim_args(pyro.get_param_store().param_name(p))
        if not isinstance(args, dict):
            raise ConfigError(f"GroupedOptim optim_args returned a {type(args).__name__} for parameter "
                              f"{pyro.get_param_store().param_name(p)!r}, expected a dict")
        return args

    def _add(self, p: torch.Tensor) -> None:
        hyper = self._hyperparameters(self._args_for(p))
        if self.optimizer is None:
            self.optimizer = self.pt_optim_constructor([p], **hyper)
            group = self.optimizer.param_groups[0]
        else:
            group = next((g for g in self.optimizer.param_groups
                          if {k: v for k, v in g.items() if k != "params"} == hyper), None)
            if group is None:  # every hyperparameter given: add_param_group would fill gaps from the first group's
                self.optimizer.add_param_group({"params": [p], **hyper})
                group = self.optimizer.param_groups[-1]
            else:
                group["params"].append(p)
        self._group_of[p] = group

    def _hyperparameters(self, args: dict) -> dict:
        """``args`` with the constructor's defaults filled in: what a one-parameter
        optimizer built with ``args`` (as :class:`~pyro.optim.PyroOptim` builds them) would use."""
        signature = inspect.signature(self.pt_optim_constructor)
        defaults = {k: v.default for k, v in signature.parameters.items()
                    if k != "params" and v.default is not inspect.Parameter.empty}
        return {**defaults, **args}

    # -- state in PyroOptim's per-parameter format ----------------------------------------
    def get_state(self) -> dict:
        """``{param name: state dict of a one-parameter torch optimizer}``, as
        :meth:`pyro.optim.PyroOptim.get_state` writes it; a state :meth:`set_state` gave that no step has taken
        yet is written as it was given (so a save right after a load writes what was loaded)."""
        store = pyro.get_param_store()
        state = {}
        for p, group in self._group_of.items():
            hyper = {k: v for k, v in group.items() if k != "params"}
            own = self.optimizer.state.get(p, {})
            state[store.param_name(p)] = {"state": {0: dict(own)} if own else {},
                                          "param_groups": [{**hyper, "params": [0]}]}
        state.update(self._state_waiting_to_be_consumed)
        return state

    def set_state(self, state_dict: dict) -> None:
        """Resume from :meth:`get_state` (of this class or of :class:`~pyro.optim.PyroOptim`): each
        parameter's moments and step count are restored at the next step that steps it, into the tensor the
        param store then holds under its name.  As in :class:`~pyro.optim.PyroOptim`, the parameter store and
        the optimizer may be loaded in either order (``pyro.get_param_store().load(...)``, ``optim.load(...)``):
        the tensors the store replaced leave the optimizer, and the new ones take the loaded state.  Unlike
        :class:`~pyro.optim.PyroOptim`, a parameter already stepped that the store still holds takes it too.

        :param dict state_dict: parameter name -> its saved state, as :meth:`get_state` returns.
        :raises ConfigError: a saved state holds a learning-rate scheduler's (nothing is loaded then)."""
        for name, saved in state_dict.items():
            if isinstance(saved, dict) and "scheduler" in saved:
                raise ConfigError(f"GroupedOptim cannot resume a learning-rate scheduler's state (parameter {name!r})")
        self._state_waiting_to_be_consumed.update(state_dict)
        self._last = None  # the next step looks for new and replaced tensors and waiting states

    def _load_param_state(self, p: torch.Tensor, saved: dict) -> None:
        own = saved.get("state", {}).get(0)
        if own is None:
            self.optimizer.state.pop(p, None)
            return
        self.optimizer.state[p] = {k: v.to(p.device) if torch.is_tensor(v) and k != "step" else v
                                   for k, v in own.items()}


def GroupedAdam(optim_args: dict | Callable[[str], dict]) -> GroupedOptim:
    """:class:`GroupedOptim` of :class:`torch.optim.Adam`: ``pyro.optim.Adam``'s
    drop-in replacement for :class:`pyro.infer.SVI`.

    :param optim_args: Adam's keyword arguments (``{"lr": 1e-3}``): a dict, or a callable of the parameter's name
        returning one."""
    return GroupedOptim(torch.optim.Adam, optim_args)
